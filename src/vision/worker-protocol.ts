/**
 * Messages between `openDetector` (main thread) and its worker thread, and the worker's side of them. The main
 * thread preprocesses each frame into the model's input (float32, or uint8 for a quantized input) and sends that; the worker runs only the
 * inference core (session.run, decoding, NMS), so the next frame's preprocessing overlaps this frame's inference.
 * Inputs travel in a few SharedArrayBuffer slots that both threads keep: the main thread writes a slot, the
 * worker copies it into its own input buffer (onnxruntime-node refuses shared memory) and frees the slot with
 * the result. Transferred ArrayBuffers, used before, arrived in each thread as new external memory at every
 * frame, and V8 answered with a full garbage collection of the main thread about every 200 ms
 * (docs/decisions/0023-reused-frame-buffers-shared-inputs.md).
 */
import type { MessagePort } from 'node:worker_threads';
import { pinThisThread } from './affinity.js';
import { openInferenceCore, type DetectorOptions, type DetectTiming } from './inference.js';
import { ModelError, type InputQuantization, type Preprocess } from './manifest.js';
import { modelInput, type InputMapping } from './preprocess.js';
import type { Detection } from './types.js';

/** What the worker is started with (`workerData`); plain data, as structured clone requires. */
export type WorkerInit = Omit<DetectorOptions, 'timeoutMs' | 'onWorkerExit' | 'workerUrl'>;

export type ToWorker =
  /**
   * Slot `slot` holds `length` values of the model's input type: the preprocessed input; `width`/`height` are the frame's. `shared`
   * comes with the first use of a slot on this worker, which keeps it.
   */
  | {
      type: 'detect';
      id: number;
      width: number;
      height: number;
      mapping: InputMapping;
      slot: number;
      shared?: SharedArrayBuffer;
      length: number;
    }
  | { type: 'close' };

export type FromWorker =
  | {
      type: 'ready';
      name: string;
      sha256: string;
      inputWidth: number;
      inputHeight: number;
      preprocess: Preprocess;
      quantization: InputQuantization | undefined;
    }
  | { type: 'init-failed'; message: string; modelError: boolean; file?: string }
  | { type: 'result'; id: number; detections: Detection[]; timing: DetectTiming; slot: number }
  | { type: 'failed'; id: number; message: string; errorName: string; slot: number };

/** Runs the inference core on this (worker) thread and answers `port`, one input at a time, in arrival order. */
export async function serveDetector(port: MessagePort, init: WorkerInit): Promise<void> {
  const post = (msg: FromWorker): void => port.postMessage(msg);
  let core;
  try {
    // Before the session, so onnxruntime's own threads (model.threads > 1) inherit the CPUs. When it fails, the
    // agent finds no thread on the inference CPUs and says so.
    if (init.cpus) pinThisThread(init.cpus);
    core = await openInferenceCore(init);
  } catch (err) {
    const e = err as Error;
    post({
      type: 'init-failed',
      message: e.message,
      modelError: e instanceof ModelError,
      ...(e instanceof ModelError && e.file !== undefined && { file: e.file }),
    });
    port.close();
    return;
  }
  const c = core;
  // One input at a time: the core shares its candidates buffer, and onnxruntime-node starts each run from a
  // setImmediate, so two runs begun from two messages could otherwise interleave their decoding.
  let chain: Promise<unknown> = Promise.resolve();
  const slots = new Map<number, SharedArrayBuffer>();
  const quantized = c.quantization !== undefined;
  let input = modelInput(quantized, 0);
  port.on('message', (msg: ToWorker) => {
    if (msg.type === 'close') {
      port.removeAllListeners('message');
      void chain.then(() => c.release()).finally(() => port.close());
      return;
    }
    if (msg.shared) slots.set(msg.slot, msg.shared);
    const shared = slots.get(msg.slot);
    const timing: DetectTiming = { preprocessMs: 0, inferenceMs: 0, postMs: 0 };
    chain = chain
      .then(() => {
        if (!shared) throw new Error(`input slot ${msg.slot} was never sent to this worker`);
        // The slot stays the main thread's to overwrite only once the answer below has been posted.
        if (input.length !== msg.length) input = modelInput(quantized, msg.length);
        input.set(modelInput(quantized, msg.length, shared));
        return c.infer(input, msg, msg.mapping, timing);
      })
      .then(
        (detections) => post({ type: 'result', id: msg.id, detections, timing, slot: msg.slot }),
        (err: Error) => post({ type: 'failed', id: msg.id, message: err.message, errorName: err.name, slot: msg.slot }),
      );
  });
  post({
    type: 'ready',
    name: c.model.name,
    sha256: c.model.spec.sha256,
    inputWidth: c.inputWidth,
    inputHeight: c.inputHeight,
    preprocess: c.preprocess,
    quantization: c.quantization,
  });
}
