/**
 * Messages between `openDetector` (main thread) and its worker thread, and the worker's side of them. Frames
 * travel as transferred ArrayBuffers (moved, not copied) and come back with the result, so the main thread
 * reuses a few buffers instead of allocating one per frame.
 */
import type { MessagePort } from 'node:worker_threads';
import { openInlineDetector, type DetectorOptions, type DetectTiming } from './detector.js';
import { ModelError } from './manifest.js';
import type { Detection } from './types.js';

/** What the worker is started with (`workerData`); plain data, as structured clone requires. */
export type WorkerInit = Omit<DetectorOptions, 'timeoutMs' | 'onWorkerExit' | 'workerUrl'>;

export type ToWorker =
  | { type: 'detect'; id: number; width: number; height: number; ts: number; buffer: ArrayBuffer; length: number }
  | { type: 'close' };

export type FromWorker =
  | { type: 'ready'; name: string; sha256: string }
  | { type: 'init-failed'; message: string; modelError: boolean; file?: string }
  | { type: 'result'; id: number; detections: Detection[]; timing: DetectTiming; buffer: ArrayBuffer }
  | { type: 'failed'; id: number; message: string; errorName: string; buffer: ArrayBuffer };

/** Runs an inline detector on this (worker) thread and answers `port`, one frame at a time, in arrival order. */
export async function serveDetector(port: MessagePort, init: WorkerInit): Promise<void> {
  const post = (msg: FromWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(msg, transfer);
  let detector;
  try {
    detector = await openInlineDetector(init);
  } catch (err) {
    const e = err as Error;
    post({ type: 'init-failed', message: e.message, modelError: e instanceof ModelError, ...(e instanceof ModelError && e.file !== undefined && { file: e.file }) });
    port.close();
    return;
  }
  const d = detector;
  port.on('message', (msg: ToWorker) => {
    if (msg.type === 'close') {
      port.removeAllListeners('message');
      void d.close().finally(() => port.close());
      return;
    }
    const data = Buffer.from(msg.buffer, 0, msg.length);
    const timing: DetectTiming = { preprocessMs: 0, inferenceMs: 0, postMs: 0 };
    d.detect({ width: msg.width, height: msg.height, ts: msg.ts, data }, timing).then(
      (detections) => post({ type: 'result', id: msg.id, detections, timing, buffer: msg.buffer }, [msg.buffer]),
      (err: Error) => post({ type: 'failed', id: msg.id, message: err.message, errorName: err.name, buffer: msg.buffer }, [msg.buffer]),
    );
  });
  post({ type: 'ready', name: d.model.name, sha256: d.model.sha256 });
}
