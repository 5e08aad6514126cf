import { spawn } from 'node:child_process';
import type { RgbFrame } from '../common/frame.js';
import { parseInput, scrubCredentials, StderrTail } from './ffmpeg.js';

export interface GrabOptions {
  cameraId: string;
  /** rtsp://…, rtsps://…, or a video file: usually a camera's main stream. */
  url: string;
  /** Give up (and kill ffmpeg) after this long. Default 8000. */
  timeoutMs?: number;
  ffmpegPath?: string;
}

/** Largest frame accepted (8K RGB): bounds memory whatever the stream claims. */
const MAX_BYTES = 7680 * 4320 * 3 + 64;

/**
 * One frame of a stream at its native size, e.g. a camera's main stream for an evidence image while the
 * detector watches the sub-stream. A short-lived ffmpeg (argument vector, no shell, dies with this process
 * through setpriv like FrameSource's) writes it as PPM, whose header carries the size.
 */
export function grabFrame(opts: GrabOptions): Promise<RgbFrame> {
  const input = parseInput(opts.cameraId, opts.url);
  const inputArgs =
    input.kind === 'rtsp'
      ? ['-rtsp_transport', 'tcp', '-timeout', '5000000', '-analyzeduration', '500000', '-probesize', '100000', '-i', input.url]
      : ['-i', `file:${input.path}`];
  const args = [
    '-hide_banner',
    '-nostats',
    '-loglevel',
    'error',
    '-nostdin',
    ...inputArgs,
    '-an',
    '-sn',
    '-dn',
    '-frames:v',
    '1',
    '-f',
    'image2pipe',
    '-c:v',
    'ppm',
    '-pix_fmt',
    'rgb24',
    'pipe:1',
  ];
  const timeoutMs = opts.timeoutMs ?? 8000;
  const what = `camera ${opts.cameraId}: grabbing a frame from ${input.kind === 'rtsp' ? scrubCredentials(input.url) : input.path}`;
  return new Promise((resolve, reject) => {
    const ts = Date.now();
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', opts.ffmpegPath ?? 'ffmpeg', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const chunks: Buffer[] = [];
    let bytes = 0;
    let failure: string | undefined;
    const tail = new StderrTail();
    const timer = setTimeout(() => {
      failure = `no frame within ${timeoutMs} ms`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (b: Buffer) => {
      bytes += b.length;
      if (bytes > MAX_BYTES) {
        failure = 'frame larger than 8K';
        child.kill('SIGKILL');
        return;
      }
      chunks.push(b);
    });
    child.stderr.on('data', (b: Buffer) => tail.push(b));
    child.on('error', (err) => {
      failure = `cannot run setpriv: ${err.message}`;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (failure) return reject(new Error(`${what}: ${failure}`));
      const frame = code === 0 ? parsePpm(Buffer.concat(chunks), ts) : undefined;
      if (!frame)
        return reject(
          new Error(`${what}: ${tail.reason(input) ?? (signal ? `ffmpeg killed by ${signal}` : `ffmpeg exited with code ${code}`)}`),
        );
      resolve(frame);
    });
  });
}

/** A binary PPM (P6, maxval 255) as an RgbFrame, or undefined if it is not one. */
export function parsePpm(buf: Buffer, ts: number): RgbFrame | undefined {
  const header = /^P6\s+(\d+)\s+(\d+)\s+255\s/.exec(buf.subarray(0, 64).toString('latin1'));
  if (!header) return undefined;
  const width = Number(header[1]);
  const height = Number(header[2]);
  const start = header[0].length;
  if (buf.length - start < width * height * 3) return undefined;
  return { width, height, data: buf.subarray(start, start + width * height * 3), ts };
}
