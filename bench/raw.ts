/**
 * Raw onnxruntime inference, the benchmarks' reference: session.run back to back on prepared inputs, in a fresh
 * worker thread, as the agent's detector runs it. On the bench's main thread, which also holds the agent, its
 * frames and their garbage, the same loop ran 10–30 % slower in 4 of 5 alternating rounds, which flattered every
 * ratio against it (docs/decisions.md, "The raw reference in a worker thread").
 */
import { Worker } from 'node:worker_threads';

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

/** Inferences per second and how many ran. */
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
