/**
 * Decodes frames of a video file to packed RGB24 with Debian's ffmpeg, scaled (stretched) to width×height.
 * `times` picks one frame at each of those seconds; `count` takes the first count frames.
 */
import { spawn } from 'node:child_process';

export interface ReadFramesOptions {
  width: number;
  height: number;
  times?: number[];
  count?: number;
}

function ffmpeg(args: string[], expectedBytes: number, what: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('ffmpeg', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => { err = (err + b.toString('utf8')).slice(-2000); });
    child.once('error', (e) => reject(new Error(`${what}: cannot start ffmpeg: ${e.message}; run scripts/setup.sh`)));
    child.once('close', (code, signal) => {
      const data = Buffer.concat(out);
      if (code !== 0) return reject(new Error(`${what}: ffmpeg failed (${signal ?? `exit ${code}`}): ${err.trim().split('\n').pop() ?? ''}`));
      if (data.length !== expectedBytes) return reject(new Error(`${what}: ffmpeg gave ${data.length} bytes, expected ${expectedBytes}`));
      resolve(data);
    });
  });
}

export async function readFrames(file: string, opts: ReadFramesOptions): Promise<Buffer[]> {
  const frameBytes = opts.width * opts.height * 3;
  const output = ['-vf', `scale=${opts.width}:${opts.height}`, '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'];
  const base = ['-hide_banner', '-loglevel', 'error', '-nostdin'];
  if (opts.times) {
    const frames: Buffer[] = [];
    for (const t of opts.times) {
      frames.push(await ffmpeg([...base, '-ss', String(t), '-i', file, '-frames:v', '1', ...output], frameBytes, `${file} at ${t} s`));
    }
    return frames;
  }
  const count = opts.count ?? 1;
  const all = await ffmpeg([...base, '-i', file, '-frames:v', String(count), ...output], frameBytes * count, `${file}, first ${count} frames`);
  return Array.from({ length: count }, (_, i) => all.subarray(i * frameBytes, (i + 1) * frameBytes));
}
