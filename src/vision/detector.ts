/** The agent's detector: a worker thread running the inference core (inference.ts), restarted when it dies or hangs. */
import { Worker } from 'node:worker_threads';
import { ModelError } from './manifest.js';
import type { DetectTiming, Detector, DetectorOptions } from './inference.js';
import { modelInput, Preprocessor, type ModelInput } from './preprocess.js';
import type { Detection, Frame } from './types.js';
import type { FromWorker, ToWorker, WorkerInit } from './worker-protocol.js';

const RESPAWN_PAUSE_MS = 5000;
/** Input slots made at most (shared memory, one model input each): one per frame in flight, and spares. */
const MAX_SLOTS = 8;

interface Pending {
  resolve: (d: Detection[]) => void;
  reject: (err: Error) => void;
  timing: DetectTiming | undefined;
  preprocessMs: number;
  slot: number;
}

/** One worker thread and the frames sent to it; replaced as a whole when the worker dies. */
interface Connection {
  worker: Worker;
  ready: Promise<void>;
  isReady: boolean;
  pending: Map<number, Pending>;
  /** Settles after the newest frame sent; `close` waits for it. */
  last: Promise<unknown>;
  watchdog: NodeJS.Timeout | undefined;
  /** Set once the worker is gone or given up on; its frames have been rejected. */
  dead: boolean;
  /** Input slots this worker has been sent (it keeps them). */
  slotsSent: Set<number>;
  /** Rejects `ready` (no effect once it settled). */
  failStart: (err: Error) => void;
}

/**
 * The model in a worker thread (node:worker_threads), so an inference never blocks the main thread's event
 * loop (ffmpeg pipes, motion gating, rules, MQTT). Frames are preprocessed here, on the calling thread, into
 * shared input slots (see worker-protocol.ts): with several frames in flight, the next frame's resize overlaps
 * this frame's inference instead of following it in the worker. A worker that crashes, exits or stops answering
 * (`timeoutMs`) has its frames rejected with an error naming the model, is reported to `onWorkerExit`, and is
 * replaced on the next frame; `close()` lets sent frames finish, then ends the worker.
 */
class WorkerDetector implements Detector {
  model = { name: '', sha256: '' };
  private conn: Connection | null = null;
  private nextId = 1;
  /** Shared input buffers (see worker-protocol.ts), by slot number, and the numbers of those not in use. */
  private readonly slots: ModelInput[] = [];
  private readonly freeSlots: number[] = [];
  /** Made when the first worker says what input its model takes. */
  private pre: Preprocessor | undefined;
  private closed = false;
  private spawnFailure: { at: number; err: Error } | undefined;
  private readonly init: WorkerInit;
  private readonly url: URL;
  private readonly timeoutMs: number;

  constructor(private readonly opts: DetectorOptions) {
    const { timeoutMs, onWorkerExit, workerUrl, ...init } = opts;
    this.init = init;
    // Run from TypeScript sources (tests, benches) the worker is the .ts file next to this one, from dist/ the .js.
    this.url = workerUrl ?? new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);
    this.timeoutMs = timeoutMs ?? 60_000;
    if (!(this.timeoutMs > 0)) throw new RangeError(`timeoutMs must be positive, got ${timeoutMs}`);
  }

  /** Starts a worker; resolves when its model is loaded, rejects with the worker's error (a ModelError for a bad model). */
  connect(): Connection {
    const worker = new Worker(this.url, { workerData: this.init });
    let crash: Error | undefined;
    let settleReady: { resolve: () => void; reject: (e: Error) => void } | undefined;
    const conn: Connection = {
      worker,
      ready: new Promise<void>((resolve, reject) => {
        settleReady = { resolve, reject };
      }),
      failStart: (err) => settleReady!.reject(err),
      isReady: false,
      pending: new Map(),
      last: Promise.resolve(),
      watchdog: undefined,
      dead: false,
      slotsSent: new Set(),
    };
    // Nobody may await `ready` (a crash after start-up); its rejection is reported through the frames instead.
    conn.ready.catch(() => undefined);
    this.conn = conn;
    worker.on('message', (msg: FromWorker) => {
      switch (msg.type) {
        case 'ready':
          this.model = { name: msg.name, sha256: msg.sha256 };
          this.pre ??= new Preprocessor(
            msg.inputWidth,
            msg.inputHeight,
            msg.preprocess,
            this.opts.resize ?? 'bilinear',
            true,
            msg.quantization,
          );
          conn.isReady = true;
          settleReady!.resolve();
          return;
        case 'init-failed':
          settleReady!.reject(msg.modelError ? new ModelError(msg.message, msg.file) : new Error(msg.message));
          return;
        case 'result':
        case 'failed': {
          this.freeSlots.push(msg.slot);
          const p = conn.pending.get(msg.id);
          if (!p) return;
          conn.pending.delete(msg.id);
          this.arm(conn);
          if (msg.type === 'result') {
            if (p.timing) Object.assign(p.timing, msg.timing, { preprocessMs: p.preprocessMs });
            p.resolve(msg.detections);
          } else {
            const err = new Error(msg.message);
            err.name = msg.errorName;
            p.reject(err);
          }
        }
      }
    });
    worker.on('error', (err) => {
      crash = err;
    });
    worker.on('exit', (code) => {
      const what = crash ? `crashed: ${crash.message}` : `exited with code ${code}`;
      this.bury(conn, new Error(`the detector worker for model ${this.opts.model ?? '(default)'} ${what}`));
    });
    return conn;
  }

  /** Rejects a dead connection's frames (and its start-up), detaches it, and reports it unless we closed it. */
  private bury(conn: Connection, err: Error): void {
    if (conn.dead) return;
    conn.dead = true;
    clearTimeout(conn.watchdog);
    if (this.conn === conn) this.conn = null;
    const wasReady = conn.isReady;
    conn.isReady = false;
    conn.failStart(err);
    for (const p of conn.pending.values()) {
      // Its worker is gone: nothing reads the slot any more.
      this.freeSlots.push(p.slot);
      p.reject(err);
    }
    conn.pending.clear();
    if (wasReady && !this.closed) this.opts.onWorkerExit?.(err);
    void conn.worker.terminate();
  }

  /** While frames wait, the worker must answer one within `timeoutMs` of the previous answer (or the send). */
  private arm(conn: Connection): void {
    clearTimeout(conn.watchdog);
    conn.watchdog = undefined;
    if (conn.pending.size === 0) return;
    conn.watchdog = setTimeout(() => {
      this.bury(
        conn,
        new Error(
          `the detector worker for model ${this.model.name} answered no frame for ${this.timeoutMs / 1000} s; it was ended and is restarted`,
        ),
      );
    }, this.timeoutMs);
  }

  /** A free input slot like `like` (type and length), made if none is free; undefined when MAX_SLOTS are all in use. */
  private takeSlot(like: ModelInput): number | undefined {
    const free = this.freeSlots.pop();
    if (free !== undefined) return free;
    if (this.slots.length >= MAX_SLOTS) return undefined;
    this.slots.push(modelInput(like instanceof Uint8Array, like.length, new SharedArrayBuffer(like.byteLength)));
    return this.slots.length - 1;
  }

  detect(frame: Frame, timing?: DetectTiming): Promise<Detection[]> {
    if (this.closed) return Promise.reject(new Error(`detector for model ${this.model.name} is closed`));
    let conn = this.conn;
    if (!conn) {
      const failure = this.spawnFailure;
      if (failure && performance.now() - failure.at < RESPAWN_PAUSE_MS) return Promise.reject(failure.err);
      conn = this.connect();
      conn.ready.catch((err: Error) => {
        this.spawnFailure = { at: performance.now(), err };
        this.bury(conn!, err);
      });
    }
    const c = conn;
    const result = c.isReady ? this.send(c, frame, timing) : c.ready.then(() => this.send(c, frame, timing));
    c.last = result.catch(() => undefined);
    return result;
  }

  private send(conn: Connection, frame: Frame, timing: DetectTiming | undefined): Promise<Detection[]> {
    if (conn.dead)
      return Promise.reject(new Error(`the detector worker for model ${this.model.name} is gone; the next frame starts a new one`));
    const t0 = performance.now();
    const pre = this.pre!;
    const length = pre.output.length;
    const slot = this.takeSlot(pre.output);
    if (slot === undefined)
      return Promise.reject(new Error(`detector for model ${this.model.name}: more than ${MAX_SLOTS} frames in flight`));
    const shared = this.slots[slot]!;
    try {
      // The slot itself, not a view of it: the preprocessor fills a letterbox border once per buffer it knows.
      pre.run(frame, shared);
    } catch (err) {
      this.freeSlots.push(slot);
      return Promise.reject(err as Error);
    }
    const preprocessMs = performance.now() - t0;
    const id = this.nextId++;
    const { width, height } = frame;
    const mapping = pre.mapping;
    return new Promise<Detection[]>((resolve, reject) => {
      conn.pending.set(id, { resolve, reject, timing, preprocessMs, slot });
      if (conn.pending.size === 1) this.arm(conn);
      const first = !conn.slotsSent.has(slot);
      conn.slotsSent.add(slot);
      const msg: ToWorker = {
        type: 'detect',
        id,
        width,
        height,
        mapping,
        slot,
        length,
        ...(first && { shared: shared.buffer as SharedArrayBuffer }),
      };
      conn.worker.postMessage(msg);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const conn = this.conn;
    if (!conn) return;
    await conn.ready.catch(() => undefined);
    await conn.last;
    if (conn.dead) return;
    const exited = new Promise<void>((resolve) => conn.worker.once('exit', () => resolve()));
    conn.worker.postMessage({ type: 'close' } satisfies ToWorker);
    // The worker ends by itself once its session is released; one that does not within 5 s is terminated.
    const timer = setTimeout(() => void conn.worker.terminate(), 5000);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * Opens the model in a worker thread (see WorkerDetector); resolves once it is loaded and has passed its test
 * inference, rejects with the ModelError that names the file otherwise.
 */
export async function openDetector(opts: DetectorOptions = {}): Promise<Detector> {
  const detector = new WorkerDetector(opts);
  const conn = detector.connect();
  try {
    await conn.ready;
  } catch (err) {
    await conn.worker.terminate();
    throw err;
  }
  return detector;
}
