import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { createDecoder, type OutputDecoder } from './decoders.js';
import {
  expectedOutput, loadManifest, outputFits, readVerifiedModel, resolveModel, ModelError, type InputQuantization, type ModelSpec, type Preprocess,
  type ResolvedModel,
} from './manifest.js';
import { tuneMalloc } from './malloc.js';
import { Candidates, nms } from './nms.js';
import { modelInput, Preprocessor, type InputMapping, type ModelInput, type ResizeFilter } from './preprocess.js';
import type { Detection, Frame } from './types.js';
import type { FromWorker, ToWorker, WorkerInit } from './worker-protocol.js';

export interface DetectorOptions {
  /** Model name in the manifest; default: the manifest's `default`. */
  model?: string;
  /** Folder holding manifest.json and the model files; default: the project's models/. */
  modelsDir?: string;
  /** ORT intra-op threads (fixed, so the detector's CPU share is predictable next to ffmpeg); default 1. */
  threads?: number;
  /** Minimum class score kept; default 0.35. */
  scoreThreshold?: number;
  /** Class-wise NMS IoU threshold; default 0.5. */
  iouThreshold?: number;
  /** At most this many detections per frame, best first; default 100. */
  maxDetections?: number;
  /** Overrides the manifest's preprocessing (used to measure alternatives, see bench/detect.ts). */
  preprocess?: Preprocess;
  /** How frames are resampled to the model input; default `bilinear` (docs/decisions.md: measured against `area`). */
  resize?: ResizeFilter;
  /** A worker that answers nothing for this long while frames wait is ended and restarted, ms; default 60,000. */
  timeoutMs?: number;
  /** Told when the worker thread died (crash, exit, timeout) while in use; the next frame starts a new one. */
  onWorkerExit?: (err: Error) => void;
  /** The worker thread's entry; default src/vision/worker. Tests substitute one that misbehaves. */
  workerUrl?: URL;
  /** The worker thread keeps itself (and the onnxruntime threads it starts) to these CPUs; default: where the kernel puts it. */
  cpus?: number[];
}

/** A verified model loaded into an onnxruntime CPU session, its output checked; the raw layer under `Detector`. */
export interface ModelSession {
  model: ResolvedModel;
  session: ort.InferenceSession;
  inputWidth: number;
  inputHeight: number;
  /** Output dims the test inference produced. */
  outputDims: number[];
  /** The manifest's decoder bound to this model's input size and output dims. */
  decode: OutputDecoder;
}

/** The model's input tensor over `data`, which must be of the element type the model takes (manifest `input.type`). */
export function inputTensor(spec: ModelSpec, data: ModelInput): ort.Tensor {
  const { name, type = 'float32', shape } = spec.input;
  if (!(type === 'uint8' ? data instanceof Uint8Array : data instanceof Float32Array)) {
    throw new TypeError(`model input '${name}' takes ${type}, got a ${data.constructor.name}`);
  }
  return new ort.Tensor(type, data, [...shape]);
}

/** A zeroed buffer of the model's input type and size. */
export function emptyInput(spec: ModelSpec): ModelInput {
  const [, , height, width] = spec.input.shape;
  return modelInput(spec.input.type === 'uint8', 3 * width * height);
}

/** Resolves a model in a manifest, then loads it as `loadModelSession` does. */
export async function openModelSession(opts: Pick<DetectorOptions, 'model' | 'modelsDir' | 'threads'> = {}): Promise<ModelSession> {
  return loadModelSession(resolveModel(loadManifest(opts.modelsDir), opts.model), opts.threads);
}

/**
 * Verifies the file's sha256, loads it, and runs one test inference, refusing (ModelError naming the file)
 * a model that does not load, lacks the declared input or output, or whose output does not fit its decoder.
 */
export async function loadModelSession(model: ResolvedModel, threads = 1): Promise<ModelSession> {
  // Process-wide and idempotent: before the first session, so every inference (worker or not) runs with it.
  tuneMalloc();
  const bytes = await readVerifiedModel(model);
  if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`threads must be a positive integer, got ${threads}`);
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes, {
      executionProviders: ['cpu'],
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    });
  } catch (err) {
    throw new ModelError(`onnxruntime cannot load model file ${model.path}: ${(err as Error).message}; rebuild it with scripts/setup.sh`, model.path);
  }
  try {
    const { input, output, decoder } = model.spec;
    if (!session.inputNames.includes(input.name) || !session.outputNames.includes(output.name)) {
      throw new ModelError(
        `model file ${model.path} has inputs [${session.inputNames.join(', ')}] and outputs [${session.outputNames.join(', ')}], ` +
          `but its manifest names input '${input.name}' and output '${output.name}'; rebuild it with scripts/setup.sh`,
        model.path,
      );
    }
    const [, , height, width] = input.shape;
    let dims: number[];
    try {
      const out = (await session.run({ [input.name]: inputTensor(model.spec, emptyInput(model.spec)) }, [output.name]))[output.name]!;
      if (out.type !== 'float32') throw new Error(`output '${output.name}' is ${out.type}, expected float32`);
      dims = out.dims.map(Number);
    } catch (err) {
      throw new ModelError(`model file ${model.path} failed its test inference on a ${width}x${height} input: ${(err as Error).message}`, model.path);
    }
    const expected = expectedOutput(decoder, width, height);
    if (!outputFits(expected.shape, dims) || dims.join() !== output.shape.join()) {
      throw new ModelError(
        `model file ${model.path} (model '${model.name}', decoder ${decoder.kind}) outputs '${output.name}' of shape [${dims.join(',')}]; ` +
          `its manifest declares [${output.shape.join(',')}] and the decoder expects ${expected.text}. ` +
          'Refusing to load it: add the model again with the decoder that matches its export (edgepatrol model add --decoder …).',
        model.path,
      );
    }
    return { model, session, inputWidth: width, inputHeight: height, outputDims: dims, decode: createDecoder(decoder, width, height, dims) };
  } catch (err) {
    await session.release();
    throw err;
  }
}


/** Filled by `detect` when given: where the time of one frame went, measured where the work ran. */
export interface DetectTiming {
  /** Resize + normalise into the input tensor, ms. */
  preprocessMs: number;
  /** onnxruntime session.run, ms. */
  inferenceMs: number;
  /** Decode + NMS + mapping boxes to the frame, ms. */
  postMs: number;
}

export interface Detector {
  model: { name: string; sha256: string };
  /**
   * Detections on one frame. Calls may overlap: frames are processed one at a time in call order, so results
   * resolve in call order too. Leave `frame.data` unchanged until the promise settles.
   */
  detect(frame: Frame, timing?: DetectTiming): Promise<Detection[]>;
  close(): Promise<void>;
}

/**
 * The model's half of a detection, on an input already preprocessed: session.run (which blocks the calling
 * thread for the whole inference: onnxruntime-node 1.30 runs it synchronously), decoding, NMS and boxes mapped
 * back to the frame. Kept apart from preprocessing so the worker thread runs only this while the main thread
 * preprocesses the next frame.
 */
export interface InferenceCore {
  model: ResolvedModel;
  inputWidth: number;
  inputHeight: number;
  /** The preprocessing the input must have had (the manifest's, or the override of the options). */
  preprocess: Preprocess;
  /** For a model with a uint8 input: how the preprocessed values are quantized into it. */
  quantization: InputQuantization | undefined;
  /** Detections on one preprocessed input; one call at a time (the candidates buffer is shared). */
  infer(input: ModelInput, frame: { width: number; height: number }, mapping: InputMapping, timing?: DetectTiming): Promise<Detection[]>;
  release(): Promise<void>;
}

export async function openInferenceCore(opts: DetectorOptions = {}): Promise<InferenceCore> {
  const { model, session, inputWidth, inputHeight, decode } = await openModelSession(opts);
  if (opts.preprocess && model.spec.input.quantization) {
    await session.release();
    throw new ModelError(`model ${model.name} takes a uint8 input quantized for its own preprocessing, so another preprocessing would be clipped to ` +
      `its range; compare preprocessings on a float-input model (its fp32 source: ${String((model.spec.quantization as { from?: string } | undefined)?.from ?? 'none recorded')})`, model.path);
  }
  const scoreThreshold = opts.scoreThreshold ?? 0.35;
  const iouThreshold = opts.iouThreshold ?? 0.5;
  const maxDetections = opts.maxDetections ?? 100;
  const { output } = model.spec;
  const inputLength = 3 * inputWidth * inputHeight;
  const candidates = new Candidates();
  const classes = model.classes;
  return {
    model,
    inputWidth,
    inputHeight,
    preprocess: opts.preprocess ?? model.spec.preprocess,
    quantization: model.spec.input.quantization,
    async infer(data, frame, mapping, timing) {
      if (data.length !== inputLength) throw new RangeError(`model ${model.name}: input of ${data.length} values, expected ${inputLength}`);
      const feed = { [model.spec.input.name]: inputTensor(model.spec, data) };
      const t1 = performance.now();
      const result = await session.run(feed);
      const t2 = performance.now();
      const out = result[output.name];
      if (!out || out.type !== 'float32') throw new Error(`model ${model.name}: output '${output.name}' missing or not float32`);
      decode(out.data as Float32Array, scoreThreshold, candidates);
      const kept = nms(candidates, iouThreshold, maxDetections);
      const { scaleX, scaleY, padX, padY } = mapping;
      const clip = (v: number, max: number): number => Math.min(max, Math.max(0, v));
      const b = candidates.boxes;
      const detections = kept.map((i): Detection => {
        const classId = candidates.classIds[i]!;
        return {
          class: classes[classId] ?? `class${classId}`,
          classId,
          score: candidates.scores[i]!,
          box: [
            clip((b[i * 4]! - padX) / scaleX, frame.width), clip((b[i * 4 + 1]! - padY) / scaleY, frame.height),
            clip((b[i * 4 + 2]! - padX) / scaleX, frame.width), clip((b[i * 4 + 3]! - padY) / scaleY, frame.height),
          ],
        };
      });
      if (timing) {
        timing.inferenceMs = t2 - t1;
        timing.postMs = performance.now() - t2;
      }
      return detections;
    },
    release: () => session.release(),
  };
}

/**
 * The model on the calling thread: preprocessing and the inference core one after the other. Benches and
 * tests use it to compare with the worker path of `openDetector`.
 */
export async function openInlineDetector(opts: DetectorOptions = {}): Promise<Detector> {
  const core = await openInferenceCore(opts);
  const { model } = core;
  const pre = new Preprocessor(core.inputWidth, core.inputHeight, core.preprocess, opts.resize ?? 'bilinear', true, core.quantization);

  async function detectNow(frame: Frame, timing?: DetectTiming): Promise<Detection[]> {
    const t0 = performance.now();
    pre.run(frame);
    if (timing) timing.preprocessMs = performance.now() - t0;
    return core.infer(pre.output, frame, pre.mapping, timing);
  }

  // One frame at a time: the input buffer and candidates are shared, and ORT is given all its threads.
  let queue: Promise<unknown> = Promise.resolve();
  let closed = false;
  return {
    model: { name: model.name, sha256: model.spec.sha256 },
    detect(frame, timing) {
      if (closed) return Promise.reject(new Error(`detector for model ${model.name} is closed`));
      const next = queue.then(() => detectNow(frame, timing));
      queue = next.catch(() => undefined);
      return next;
    },
    async close() {
      if (closed) return;
      closed = true;
      await queue;
      await core.release();
    },
  };
}

/** After a worker failed to start, frames are refused with that error for this long before trying again. */
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
      ready: new Promise<void>((resolve, reject) => { settleReady = { resolve, reject }; }),
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
          this.pre ??= new Preprocessor(msg.inputWidth, msg.inputHeight, msg.preprocess, this.opts.resize ?? 'bilinear', true, msg.quantization);
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
    worker.on('error', (err) => { crash = err; });
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
      this.bury(conn, new Error(`the detector worker for model ${this.model.name} answered no frame for ${this.timeoutMs / 1000} s; it was ended and is restarted`));
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
    if (conn.dead) return Promise.reject(new Error(`the detector worker for model ${this.model.name} is gone; the next frame starts a new one`));
    const t0 = performance.now();
    const pre = this.pre!;
    const length = pre.output.length;
    const slot = this.takeSlot(pre.output);
    if (slot === undefined) return Promise.reject(new Error(`detector for model ${this.model.name}: more than ${MAX_SLOTS} frames in flight`));
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
      const msg: ToWorker = { type: 'detect', id, width, height, mapping, slot, length, ...(first && { shared: shared.buffer as SharedArrayBuffer }) };
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
