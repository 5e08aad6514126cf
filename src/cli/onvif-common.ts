import { readFileSync, statSync } from 'node:fs';
import type { CameraConfig } from '../config/index.js';
import { OnvifDevice, OnvifError } from '../onvif/index.js';
import { EXIT, reportError, UsageError, type CommandIo } from './io.js';

/**
 * The password in `file`: its first line (a trailing newline, as editors write it, is not part of it). Refuses an
 * empty or unreadable file, naming it. Passwords come from files so they never appear in the shell's history or
 * in `ps`.
 */
export function readPasswordFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(
      `--password-file ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'not readable by this user' : (err as Error).message}; write the camera's password into it (one line, mode 600)`,
    );
  }
  const password = text.split(/\r?\n/)[0] ?? '';
  if (password === '') throw new UsageError(`--password-file ${file}: the first line is empty; write the camera's password into it`);
  return password;
}

/** Whether others than the owner may read `file` (a password file should be mode 600). */
export function readableByOthers(file: string): boolean {
  try {
    return (statSync(file).mode & 0o077) !== 0;
  } catch {
    return false;
  }
}

/** The ONVIF device of a configured camera; a camera without `onvif` is refused with what to do. */
export function deviceOf(camera: CameraConfig, configFile: string, timeoutMs: number): OnvifDevice {
  if (!camera.onvif)
    throw new UsageError(
      `camera '${camera.id}' in ${configFile} has no onvif section: it is not driven over ONVIF (add it with \`edgepatrol camera add\`, or add onvif: { url, user, password })`,
    );
  return new OnvifDevice({ address: camera.onvif.url, user: camera.onvif.user, password: camera.onvif.password, timeoutMs });
}

/** The camera of `id` in `cameras`, or a UsageError listing the ids there are. */
export function cameraById(cameras: readonly CameraConfig[], id: string, configFile: string): CameraConfig {
  const camera = cameras.find((c) => c.id === id);
  if (!camera) {
    const ids = cameras.map((c) => c.id).join(', ') || 'none';
    throw new UsageError(`no camera '${id}' in ${configFile} (cameras: ${ids})`);
  }
  return camera;
}

/** `uri` with the user and password in it, percent-encoded, as ffmpeg needs them for RTSP. */
export function withCredentials(uri: string, user: string | undefined, password: string | undefined): string {
  if (!user) return uri;
  const url = new URL(uri);
  url.username = encodeURIComponent(user);
  url.password = encodeURIComponent(password ?? '');
  return url.toString();
}

/**
 * reportError for the commands that talk to cameras: an OnvifError's message already names the camera and what to
 * do; auth failures exit 8, a camera that does not answer 9, other camera errors 1.
 */
export function reportCameraError(io: CommandIo, command: string, err: unknown, help: string): number {
  if (!(err instanceof OnvifError)) return reportError(io, command, err, help);
  io.stderr.write(`edgepatrol ${command}: ${err.message}\n`);
  if (err.kind === 'auth') return EXIT.cameraAuth;
  if (err.kind === 'timeout' || err.kind === 'unreachable') return EXIT.cameraUnreachable;
  return EXIT.failed;
}

/** Progress on stderr for steps that take a while; silent with --json (stderr is still for errors then). */
export function progress(io: CommandIo, quiet: boolean): (text: string) => void {
  return (text) => {
    if (!quiet) io.stderr.write(`${text}\n`);
  };
}

/**
 * The media profile to move the camera through: the configured detection profile when it has a PTZ configuration,
 * else the first profile that has one (cameras often attach PTZ to the main stream only). A camera without any
 * is refused, naming it.
 */
export async function ptzProfile(device: OnvifDevice, camera: CameraConfig): Promise<string> {
  const profiles = await device.getProfiles();
  const chosen = profiles.find((p) => p.ptz && p.token === camera.onvif?.profile) ?? profiles.find((p) => p.ptz);
  if (!chosen)
    throw new UsageError(
      `camera '${camera.id}' (${device.camera}) has no media profile with PTZ: it cannot be moved, so it has no presets`,
    );
  return chosen.token;
}

/** The positional arguments of a command, all required: `usage` names them ("<camera> <preset|home>"). */
export function positionalArgs(positionals: string[], count: number, usage: string): string[] {
  if (positionals.length < count) throw new UsageError(`expected ${usage}`);
  if (positionals.length > count) throw new UsageError(`unexpected argument '${positionals[count]}'`);
  return positionals;
}

/** A --seconds-like option: `dflt` when absent; above 0 and at most `max`, else a UsageError naming the option. */
export function secondsOption(value: string | undefined, name: string, dflt: number, max = Number.POSITIVE_INFINITY): number {
  if (value === undefined) return dflt;
  const n = Number(value);
  if (!(n > 0 && n <= max))
    throw new UsageError(`${name} must be a number of seconds above 0${Number.isFinite(max) ? ` and at most ${max}` : ''}, got '${value}'`);
  return n;
}
