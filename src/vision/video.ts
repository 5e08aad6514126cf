import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { RgbFrame } from './types.js';
import { runCommand, type CommandResult } from '../common/run.js';

/** A frame sampled from a video file, with its position in the sampled sequence and in the video. */
export interface VideoFrame extends RgbFrame {
  /** 0-based index among the sampled frames. */
  index: number;
  /** Seconds from the start of the video. */
  time: number;
}

export interface VideoInfo {
  width: number;
  height: number;
  /** Seconds, when the container states it. */
  duration?: number;
}

export class VideoError extends Error {
  override name = 'VideoError';
}

async function run(cmd: string, args: string[]): Promise<CommandResult> {
  try {
    return await runCommand(cmd, args, { startHint: "install Debian's ffmpeg (scripts/setup.sh)" });
  } catch (err) {
    throw new VideoError((err as Error).message);
  }
}

/** Width and height of the first video stream, from ffprobe (part of Debian's ffmpeg). */
export async function probeVideo(file: string): Promise<VideoInfo> {
  const { code, stdout, stderr } = await run('ffprobe', [
    '-v',
    'error',
    '-select_streams',
    'v:0',
    '-show_entries',
    'stream=width,height:format=duration',
    '-of',
    'json',
    file,
  ]);
  const info =
    code === 0 ? (JSON.parse(stdout) as { streams?: { width?: number; height?: number }[]; format?: { duration?: string } }) : undefined;
  const stream = info?.streams?.[0];
  if (!stream?.width || !stream.height) {
    throw new VideoError(`${file} is not a readable video${stderr.trim() ? `: ${stderr.trim().split('\n').pop()}` : ' (no video stream)'}`);
  }
  const duration = Number(info?.format?.duration);
  return { width: stream.width, height: stream.height, ...(duration > 0 ? { duration } : {}) };
}

export interface ReadVideoOptions {
  /** Sampled frames per second of video time. */
  fps: number;
  /** Stop after this many sampled frames. */
  maxFrames?: number;
  /** `ts` of the frame at time 0 (ms since the epoch); default: when reading starts. */
  startTs?: number;
  /** Read from this many seconds into the video (default 0); `time` still counts from the video's start. */
  start?: number;
  /** Stop at this many seconds into the video (default: its end). */
  end?: number;
}

/**
 * Decodes a video file with ffmpeg into RGB24 frames at its own size, sampled at `fps`. Each frame has
 * its own buffer (the caller may keep it). Leaving the loop early kills ffmpeg; a failing ffmpeg throws
 * with the last line it printed.
 */
export async function* readVideoFrames(file: string, opts: ReadVideoOptions): AsyncGenerator<VideoFrame> {
  if (!(opts.fps > 0)) throw new RangeError(`fps must be > 0, got ${opts.fps}`);
  const { width, height } = await probeVideo(file);
  const frameBytes = width * height * 3;
  const startTs = opts.startTs ?? Date.now();
  const start = opts.start ?? 0;
  if (!(start >= 0) || (opts.end !== undefined && !(opts.end > start)))
    throw new RangeError(`need 0 <= start < end, got start ${start}, end ${opts.end}`);
  // -ss before -i seeks by decoding from the previous keyframe, so the first frame is the one at `start`.
  const args = ['-hide_banner', '-loglevel', 'error', '-nostdin', '-ss', String(start), '-i', file, '-an', '-sn'];
  if (opts.end !== undefined) args.push('-t', String(opts.end - start));
  args.push('-vf', `fps=${opts.fps}`);
  if (opts.maxFrames !== undefined) args.push('-frames:v', String(opts.maxFrames));
  args.push('-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1');
  const child = spawn('ffmpeg', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-4000);
  });
  const spawnError = new Promise<never>((_, reject) => {
    child.once('error', (err) => reject(new VideoError(`cannot start ffmpeg: ${err.message}; install Debian's ffmpeg (scripts/setup.sh)`)));
  });
  spawnError.catch(() => undefined);
  const exited = once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]>;

  let frame = Buffer.allocUnsafe(frameBytes);
  let filled = 0;
  let index = 0;
  let finished = false;
  try {
    for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
      let off = 0;
      while (off < chunk.length) {
        const n = Math.min(frameBytes - filled, chunk.length - off);
        chunk.copy(frame, filled, off, off + n);
        filled += n;
        off += n;
        if (filled === frameBytes) {
          const time = start + index / opts.fps;
          yield { width, height, data: frame, ts: startTs + time * 1000, index, time };
          index++;
          frame = Buffer.allocUnsafe(frameBytes);
          filled = 0;
        }
      }
    }
    const [code, signal] = await Promise.race([exited, spawnError]);
    finished = true;
    if (code !== 0) {
      const last = stderr.trim().split('\n').pop();
      throw new VideoError(`ffmpeg failed on ${file} (${signal ?? `exit code ${code}`})${last ? `: ${last}` : ''}`);
    }
  } finally {
    if (!finished && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  }
}
