/**
 * Raw onnxruntime inference, the benchmarks' reference: session.run back to back on prepared inputs of vtest.avi
 * frames, after a second of warm-up, on the calling thread (`openRawLoop`, timed in windows; `rawInferences`, one
 * window in a new session) or in a fresh worker thread (`rawInWorker`, where the agent's detector runs it).
 */
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { inputTensor, openModelSession, Preprocessor } from '../src/vision/index.js';
import { readVideoFrames, type VideoFrame } from '../src/vision/video.js';
import { defaultClip } from '../test/helpers/rtsp.js';

export interface RawOptions {
  seconds: number;
  /** onnxruntime intra-op threads. */
  threads: number;
  /** The frames inferred on, in turn: vtest.avi sampled at `fps`, at most `maxFrames`. */
  fps: number;
  maxFrames: number;
  /** Called when the warm-up second is over and the timed loop starts (the malloc bench reads page faults then). */
  onTiming?: () => void;
}

/** A raw loop kept open: one session and its prepared inputs, timed in as many windows as asked. */
export interface RawLoop {
  /** session.run back to back for `seconds`; inferences per second, and how many ran. */
  run(seconds: number): Promise<{ rate: number; n: number }>;
  /** The decoded frames, which another loop may take instead of decoding them again. */
  frames: VideoFrame[];
  close(): Promise<void>;
}

/** Opens the raw loop on this thread and warms it up for a second (the first inferences of a new session ran 10–25 % slower). */
export async function openRawLoop(opts: Omit<RawOptions, 'seconds' | 'onTiming'>, frames?: VideoFrame[]): Promise<RawLoop> {
  if (!frames) {
    frames = [];
    for await (const f of readVideoFrames(defaultClip, { fps: opts.fps, maxFrames: opts.maxFrames })) frames.push(f);
  }
  const { model, session } = await openModelSession({ threads: opts.threads });
  const pre = Preprocessor.forModel(model.spec);
  const feeds = frames.map((f) => ({ [model.spec.input.name]: inputTensor(model.spec, pre.run(f).slice()) }));
  for (const end = performance.now() + 1000; performance.now() < end; ) await session.run(feeds[0]!);
  let next = 0;
  return {
    frames,
    async run(seconds) {
      let n = 0;
      const t0 = performance.now();
      while (performance.now() - t0 < seconds * 1000) {
        await session.run(feeds[next++ % feeds.length]!);
        n++;
      }
      return { rate: n / ((performance.now() - t0) / 1000), n };
    },
    close: () => session.release(),
  };
}

/** Inferences per second on this thread in a new session, how many ran, and the frames, which a later call may take instead of decoding them again. */
export async function rawInferences(opts: RawOptions, frames?: VideoFrame[]): Promise<{ rate: number; n: number; frames: VideoFrame[] }> {
  const loop = await openRawLoop(opts, frames);
  opts.onTiming?.();
  const { rate, n } = await loop.run(opts.seconds);
  await loop.close();
  return { rate, n, frames: loop.frames };
}

/** `rawInferences` in a fresh worker thread (bench/raw-worker.ts). */
export async function rawInWorker(opts: RawOptions): Promise<{ rate: number; n: number }> {
  const { onTiming, ...data } = opts;
  const worker = new Worker(new URL('./raw-worker.js', import.meta.url), { workerData: data });
  try {
    return await new Promise((resolve, reject) => {
      worker.on('message', (m: 'timing' | { rate: number; n: number }) => {
        if (m === 'timing') onTiming?.();
        else resolve(m);
      });
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`raw inference worker exited with code ${code}`)));
    });
  } finally {
    await worker.terminate();
  }
}
