/**
 * Messages between `openDetector` (main thread) and its worker thread, and the worker's side of them. The main
 * thread preprocesses each frame into the model's float input and sends that; the worker runs only the
 * inference core (session.run, decoding, NMS), so the next frame's preprocessing overlaps this frame's inference.
 * Inputs travel as transferred ArrayBuffers (moved, not copied) and come back with the result, so the main
 * thread reuses a few buffers instead of allocating one per frame.
 */
import type { MessagePort } from 'node:worker_threads';
import { openInferenceCore, type DetectorOptions, type DetectTiming } from './detector.js';
import { ModelError, type Preprocess } from './manifest.js';
import type { InputMapping } from './preprocess.js';
import type { Detection } from './types.js';

/** What the worker is started with (`workerData`); plain data, as structured clone requires. */
export type WorkerInit = Omit<DetectorOptions, 'timeoutMs' | 'onWorkerExit' | 'workerUrl'>;

export type ToWorker =
  /** `buffer` holds `length` float32 values: the preprocessed input; `width`/`height` are the frame's. */
  | { type: 'detect'; id: number; width: number; height: number; mapping: InputMapping; buffer: ArrayBuffer; length: number }
  | { type: 'close' };

export type FromWorker =
  | { type: 'ready'; name: string; sha256: string; inputWidth: number; inputHeight: number; preprocess: Preprocess }
  | { type: 'init-failed'; message: string; modelError: boolean; file?: string }
  | { type: 'result'; id: number; detections: Detection[]; timing: DetectTiming; buffer: ArrayBuffer }
  | { type: 'failed'; id: number; message: string; errorName: string; buffer: ArrayBuffer };

/** Runs the inference core on this (worker) thread and answers `port`, one input at a time, in arrival order. */
export async function serveDetector(port: MessagePort, init: WorkerInit): Promise<void> {
  const post = (msg: FromWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(msg, transfer);
  let core;
  try {
    core = await openInferenceCore(init);
  } catch (err) {
    const e = err as Error;
    post({ type: 'init-failed', message: e.message, modelError: e instanceof ModelError, ...(e instanceof ModelError && e.file !== undefined && { file: e.file }) });
    port.close();
    return;
  }
  const c = core;
  // One input at a time: the core shares its candidates buffer, and onnxruntime-node starts each run from a
  // setImmediate, so two runs begun from two messages could otherwise interleave their decoding.
  let chain: Promise<unknown> = Promise.resolve();
  port.on('message', (msg: ToWorker) => {
    if (msg.type === 'close') {
      port.removeAllListeners('message');
      void chain.then(() => c.release()).finally(() => port.close());
      return;
    }
    const input = new Float32Array(msg.buffer, 0, msg.length);
    const timing: DetectTiming = { preprocessMs: 0, inferenceMs: 0, postMs: 0 };
    chain = chain.then(() => c.infer(input, msg, msg.mapping, timing)).then(
      (detections) => post({ type: 'result', id: msg.id, detections, timing, buffer: msg.buffer }, [msg.buffer]),
      (err: Error) => post({ type: 'failed', id: msg.id, message: err.message, errorName: err.name, buffer: msg.buffer }, [msg.buffer]),
    );
  });
  post({ type: 'ready', name: c.model.name, sha256: c.model.spec.sha256, inputWidth: c.inputWidth, inputHeight: c.inputHeight, preprocess: c.preprocess });
}
