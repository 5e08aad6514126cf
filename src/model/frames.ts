import { readdir, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { decodeImage } from '../common/jpeg.js';
import type { RgbImage } from '../vision/preprocess.js';
import { probeVideo, readVideoFrames } from '../vision/video.js';

export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.tif', '.tiff', '.bmp', '.gif', '.avif']);

/** Real frames for calibration or evaluation: a folder of images or a stretch of a video. */
export interface FrameSet {
  /** A folder of images (read in name order) or a video file. */
  path: string;
  /** How many frames, spread evenly over the folder or the stretch of video. */
  frames: number;
  /** Video only: seconds from the start where the stretch begins (default 0). */
  start?: number;
  /** Video only: seconds from the start where the stretch ends (default: the end of the video). */
  end?: number;
}

/** The frame set as the manifest records it: what was read, so a reader can tell calibration from test frames. */
export function describeFrameSet(set: FrameSet): Record<string, unknown> {
  return {
    path: set.path,
    frames: set.frames,
    ...(set.start !== undefined ? { start: set.start } : {}),
    ...(set.end !== undefined ? { end: set.end } : {}),
  };
}

/** Images of the set, one at a time, each in its own buffer. Errors name the path and what is wrong with it. */
export async function* readFrameSet(set: FrameSet): AsyncGenerator<RgbImage & { label: string }> {
  if (!Number.isInteger(set.frames) || set.frames < 1) throw new RangeError(`frames must be a positive integer, got ${set.frames}`);
  let isDir: boolean;
  try {
    isDir = (await stat(set.path)).isDirectory();
  } catch {
    throw new Error(`frames source ${set.path} does not exist: give a folder of images or a video file`);
  }
  if (isDir) {
    const files = (await readdir(set.path)).filter((f) => IMAGE_EXTENSIONS.has(extname(f).toLowerCase())).sort();
    if (files.length === 0) throw new Error(`folder ${set.path} holds no images (${[...IMAGE_EXTENSIONS].join(' ')})`);
    const n = Math.min(set.frames, files.length);
    for (let i = 0; i < n; i++) {
      const file = join(set.path, files[Math.floor((i * files.length) / n)]!);
      let img;
      try {
        img = await decodeImage(file);
      } catch (err) {
        throw new Error(`cannot decode image ${file}: ${(err as Error).message}`);
      }
      yield { ...img, label: file };
    }
    return;
  }
  const info = await probeVideo(set.path);
  const start = set.start ?? 0;
  const end = set.end ?? info.duration;
  if (end === undefined) throw new Error(`${set.path} does not state its duration; give --end in seconds`);
  if (!(end > start)) throw new RangeError(`video stretch ${start}..${end} s of ${set.path} is empty`);
  const fps = set.frames / (end - start);
  for await (const f of readVideoFrames(set.path, { fps, start, end, maxFrames: set.frames })) {
    yield { width: f.width, height: f.height, data: f.data, label: `${set.path}@${f.time.toFixed(2)}s` };
  }
}
