/** Frames of a clip decoded as the agent gets them, for the benches. */
import { spawnSync } from 'node:child_process';
import { scaleFilter } from '../src/ingest/ffmpeg.js';
import type { YuvFrame } from '../src/vision/types.js';
import { i420Layout } from '../src/vision/yuv.js';

/** A clip's frames at `fps`, width×height, as the cameras' frame sources deliver them (src/ingest/ffmpeg.ts). */
export function yuvFrames(file: string, fps: number, width: number, height: number): YuvFrame[] {
  const bytes = i420Layout(width, height).bytes;
  const r = spawnSync(
    'ffmpeg',
    [
      '-hide_banner',
      '-loglevel',
      'error',
      '-nostdin',
      '-i',
      file,
      '-an',
      '-vf',
      `fps=${fps},${scaleFilter({ width, height, pixelFormat: 'yuv420p' })}`,
      '-pix_fmt',
      'yuv420p',
      '-f',
      'rawvideo',
      'pipe:1',
    ],
    { maxBuffer: 1 << 30 },
  );
  if (r.status !== 0 || r.stdout.length % bytes !== 0)
    throw new Error(`ffmpeg could not read ${file}: ${r.stderr.toString().trim().split('\n').pop()}`);
  return Array.from({ length: r.stdout.length / bytes }, (_, i) => ({
    width,
    height,
    data: r.stdout.subarray(i * bytes, (i + 1) * bytes),
    ts: (i * 1000) / fps,
    format: 'yuv420p' as const,
  }));
}
