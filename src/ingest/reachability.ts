/**
 * Whether a camera's input is there, checked without ffmpeg: a local file that cannot be read fails at once
 * (retrying would not help), and during a backoff an RTSP camera's port is probed so that a retry starts as soon
 * as the camera (or the network) is back, however long the backoff had grown.
 */
import { constants, promises as fs } from 'node:fs';
import { connect } from 'node:net';

const PROBE_INTERVAL_MS = 500;
/** A camera that takes longer to accept a TCP connection counts as unreachable for the probe. */
const PROBE_TIMEOUT_MS = 2000;

/** Host and port of an RTSP URL (default ports 554 / 322 for rtsps), or undefined when it does not parse. */
export function rtspAddress(url: string): { host: string; port: number } | undefined {
  try {
    const u = new URL(url);
    const host = u.hostname.replace(/^\[|\]$/g, '');
    return { host, port: u.port ? Number(u.port) : u.protocol === 'rtsps:' ? 322 : 554 };
  } catch {
    return undefined;
  }
}

/** Why a local file cannot be read, or undefined if it can. */
export async function unreadableFile(path: string): Promise<string | undefined> {
  try {
    const st = await fs.stat(path);
    if (!st.isFile()) return 'not a regular file';
    await fs.access(path, constants.R_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'no such file (check the camera url in the config)';
    if (code === 'EACCES') return 'permission denied (the agent user cannot read it)';
    return (err as Error).message;
  }
}

/**
 * One TCP connect to host:port, closed at once: undefined when it was accepted, else why not (refused, timed out,
 * the resolver's error).
 */
export function probeTcp(host: string, port: number, timeoutMs = PROBE_TIMEOUT_MS): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (why: string | undefined): void => {
      clearTimeout(timeout);
      socket.destroy();
      resolve(why);
    };
    const timeout = setTimeout(() => done(`no answer within ${timeoutMs} ms`), timeoutMs);
    socket.once('connect', () => done(undefined));
    socket.once('error', (err: NodeJS.ErrnoException) =>
      done(err.code === 'ECONNREFUSED' ? 'connection refused' : (err.code ?? err.message)),
    );
  });
}

/**
 * Checks every PROBE_INTERVAL_MS whether the camera's RTSP port accepts TCP connections (no ffmpeg, a few
 * syscalls), and calls `back` once it accepts after having refused or timed out. A camera that accepts
 * connections but fails otherwise (401, 404) never turns from unreachable to reachable, so `back` is not called.
 * `wanted` is asked after each probe (false: stop probing); the returned function stops probing too.
 */
export function probeUntilBack(url: string, wanted: () => boolean, back: () => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  const stop = (): void => {
    clearTimeout(timer);
    timer = undefined;
  };
  const target = rtspAddress(url);
  if (!target) return stop;
  let wasDown = false;
  const probe = (): void => {
    timer = setTimeout(() => {
      void probeTcp(target.host, target.port).then((why) => {
        if (!wanted()) return;
        const up = why === undefined;
        if (up && wasDown) return back();
        wasDown ||= !up;
        probe();
      });
    }, PROBE_INTERVAL_MS);
  };
  probe();
  return stop;
}
