/**
 * Decodes frames of a video file with Debian's ffmpeg, scaled (stretched) to width×height: packed RGB24, or
 * YUV 4:2:0 in limited range as the cameras' frame sources ask ffmpeg for it (src/ingest/ffmpeg.ts).
 * `times` picks one frame at each of those seconds; `count` takes the first count frames.
 */
import { spawn } from 'node:child_process';
import { scaleFilter } from '../../src/ingest/ffmpeg.js';
import { frameBytes as bytesOf } from '../../src/vision/yuv.js';

export interface ReadFramesOptions {
  width: number;
  height: number;
  times?: number[];
  count?: number;
  /** rgb24 (default) or yuv420p. */
  pixelFormat?: 'rgb24' | 'yuv420p';
}

function ffmpeg(args: string[], expectedBytes: number, what: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('ffmpeg', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => {
      err = (err + b.toString('utf8')).slice(-2000);
    });
    child.once('error', (e) => reject(new Error(`${what}: cannot start ffmpeg: ${e.message}; run scripts/setup.sh`)));
    child.once('close', (code, signal) => {
      const data = Buffer.concat(out);
      if (code !== 0)
        return reject(new Error(`${what}: ffmpeg failed (${signal ?? `exit ${code}`}): ${err.trim().split('\n').pop() ?? ''}`));
      if (data.length !== expectedBytes) return reject(new Error(`${what}: ffmpeg gave ${data.length} bytes, expected ${expectedBytes}`));
      resolve(data);
    });
  });
}

export async function readFrames(file: string, opts: ReadFramesOptions): Promise<Buffer[]> {
  const format = opts.pixelFormat ?? 'rgb24';
  const frameBytes = bytesOf(format, opts.width, opts.height);
  // The frame sources' own resize (zscale for YUV), except odd YUV sizes (layout tests), which zscale refuses.
  const odd = format === 'yuv420p' && (opts.width % 2 !== 0 || opts.height % 2 !== 0);
  const output = [
    '-vf',
    odd ? `scale=${opts.width}:${opts.height}` : scaleFilter({ ...opts, pixelFormat: format }),
    '-f',
    'rawvideo',
    '-pix_fmt',
    format,
    'pipe:1',
  ];
  const base = ['-hide_banner', '-loglevel', 'error', '-nostdin'];
  if (opts.times) {
    const frames: Buffer[] = [];
    for (const t of opts.times) {
      frames.push(await ffmpeg([...base, '-ss', String(t), '-i', file, '-frames:v', '1', ...output], frameBytes, `${file} at ${t} s`));
    }
    return frames;
  }
  const count = opts.count ?? 1;
  const all = await ffmpeg(
    [...base, '-i', file, '-frames:v', String(count), ...output],
    frameBytes * count,
    `${file}, first ${count} frames`,
  );
  return Array.from({ length: count }, (_, i) => all.subarray(i * frameBytes, (i + 1) * frameBytes));
}
