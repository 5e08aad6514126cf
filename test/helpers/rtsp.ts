import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';

// The repository root holds package.json; this file runs from test/helpers/ or, compiled for a bench, dist/test/helpers/.
let repoRoot = dirname(fileURLToPath(import.meta.url));
while (!existsSync(join(repoRoot, 'package.json')) && dirname(repoRoot) !== repoRoot) repoRoot = dirname(repoRoot);
const here = join(repoRoot, 'test', 'helpers');
export const defaultClip = join(repoRoot, 'assets', 'vtest.avi');

export interface RtspServer {
  /** The port it listens on (127.0.0.1); kept across restart(). */
  readonly port: number;
  /** The running server's pid. */
  readonly pid: number;
  url(mount: string): string;
  /** Kills the server like a crash (SIGKILL) and waits until it has exited. */
  stop(): Promise<void>;
  /** stop(), then the same mounts on the same port, each playing the clip it last played. */
  restart(): Promise<void>;
  /**
   * The mount plays `clip` (H.264 in Matroska like h264Clip()'s, of the same size and encoding as before) from its start; clients
   * stay connected. Resolves once the server has switched.
   */
  switch(mount: string, clip: string): Promise<void>;
}

export interface RtspServerOptions {
  /** 0 or absent: the kernel picks a free port. */
  port?: number;
  mounts: string[];
  /** Any clip ffmpeg reads; transcoded to H.264 once and cached. Default: assets/vtest.avi. */
  file?: string;
}

type ServerChild = ChildProcessByStdio<Writable, Readable, Readable>;

interface Launched {
  process: ServerChild;
  port: number;
  /** Waiting switch() calls, answered in order by the server's SWITCHED/ERROR lines. */
  answers: Array<(line: string) => void>;
}

/** ffmpeg output options of every clip the server plays: no audio, H.264 baseline, a key frame every 10 frames, no B-frames, Matroska. */
export const H264_ARGS = [
  '-an',
  '-c:v',
  'libx264',
  '-preset',
  'veryfast',
  '-profile:v',
  'baseline',
  '-pix_fmt',
  'yuv420p',
  '-g',
  '10',
  '-bf',
  '0',
  '-f',
  'matroska',
];

/**
 * The clip as H.264 baseline (key frame every 10 frames, no B-frames) in Matroska, made once by ffmpeg and
 * cached under .cache/rtsp/ keyed by the source's name, size and mtime. Written to a temporary name first,
 * so test files running in parallel never read a half-written cache entry.
 */
export function h264Clip(file: string): string {
  const st = statSync(file);
  const out = join(repoRoot, '.cache', 'rtsp', `${basename(file)}-${st.size}-${Math.floor(st.mtimeMs)}.h264.mkv`);
  try {
    statSync(out);
    return out;
  } catch {
    mkdirSync(dirname(out), { recursive: true });
    const tmp = `${out}.${process.pid}.tmp.mkv`;
    const r = spawnSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y', '-i', file, ...H264_ARGS, tmp], {
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`transcoding ${file} for the RTSP server failed: ${r.stderr || r.error?.message}`);
    renameSync(tmp, out);
    return out;
  }
}

/** Starts test/helpers/rtsp-server.py (GStreamer RTSP server) and resolves once it listens. */
export async function startRtspServer(opts: RtspServerOptions): Promise<RtspServer> {
  const clip = h264Clip(opts.file ?? defaultClip);
  let child = await launch(opts.port ?? 0, clip, opts.mounts);
  const port = child.port;
  const playing = new Map<string, string>();
  const send = (to: Launched, mount: string, file: string): Promise<void> =>
    new Promise((resolve, reject) => {
      to.answers.push((line) => {
        if (line.startsWith('SWITCHED ')) resolve();
        else reject(new Error(`RTSP server cannot switch mount ${mount} to ${file}: ${line}`));
      });
      to.process.stdin.write(`SWITCH ${mount} ${file}\n`);
    });
  const server: RtspServer = {
    port,
    get pid() {
      return child.process.pid ?? -1;
    },
    url: (mount) => `rtsp://127.0.0.1:${port}/${mount}`,
    stop: () => kill(child.process),
    async restart() {
      await kill(child.process);
      child = await launch(port, clip, opts.mounts);
      for (const [mount, file] of playing) await send(child, mount, file);
    },
    async switch(mount, file) {
      if (!opts.mounts.includes(mount)) throw new Error(`RTSP server has no mount ${mount} (mounts: ${opts.mounts.join(', ')})`);
      if (/[\n\r]/.test(file)) throw new Error(`RTSP clip path must be one line: ${JSON.stringify(file)}`);
      if (child.process.exitCode !== null || child.process.signalCode !== null) throw new Error('RTSP server is not running');
      await send(child, mount, file);
      playing.set(mount, file);
    },
  };
  return server;
}

async function launch(port: number, clip: string, mounts: string[]): Promise<Launched> {
  // stdin stays an open pipe that is never written: the server quits at its EOF, i.e. when this process dies.
  const proc: ServerChild = spawn('/usr/bin/python3', [join(here, 'rtsp-server.py'), '--port', String(port), '--file', clip, ...mounts], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  // RTSP_SERVER_LOG=DIR keeps each server's whole stderr (GST_DEBUG=2 for GStreamer's warnings) for a failure's post-mortem.
  const log = process.env.RTSP_SERVER_LOG ? createWriteStream(join(process.env.RTSP_SERVER_LOG, `rtsp-server-${proc.pid}.log`)) : undefined;
  proc.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
    log?.write(d);
  });
  // A switch() racing the server's death must not crash the test with EPIPE: the exit handler below answers it.
  proc.stdin.on('error', () => {});
  const answers: Launched['answers'] = [];
  let rest = '';
  proc.stdout.on('data', (d: Buffer) => {
    const lines = (rest + d.toString()).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) if (line.startsWith('SWITCHED ') || line.startsWith('ERROR ')) answers.shift()?.(line);
  });
  proc.once('exit', (code, signal) => {
    for (const answer of answers.splice(0)) answer(`exited (${code ?? signal})`);
  });
  const bound = await new Promise<number>((resolve, reject) => {
    let stdout = '';
    const onExit = (code: number | null, signal: string | null): void =>
      fail(new Error(`RTSP server exited (${code ?? signal}) before it was ready: ${stderr}`));
    const timer = setTimeout(() => fail(new Error(`RTSP server not ready after 20 s: ${stderr}`)), 20_000);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      proc.kill('SIGKILL');
      reject(err);
    };
    proc.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      const m = /READY port=(\d+)/.exec(stdout);
      if (m?.[1]) {
        clearTimeout(timer);
        proc.off('exit', onExit);
        resolve(Number(m[1]));
      }
    });
    proc.once('exit', onExit);
  });
  return { process: proc, port: bound, answers };
}

function kill(proc: ServerChild): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    proc.once('exit', () => resolve());
    proc.kill('SIGKILL');
  });
}
