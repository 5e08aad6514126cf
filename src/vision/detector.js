import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { createDecoder } from './decoders.js';
import { expectedOutput, loadManifest, outputFits, readVerifiedModel, resolveModel, ModelError, } from './manifest.js';
import { Candidates, nms } from './nms.js';
import { Preprocessor } from './preprocess.js';
/** Resolves a model in a manifest, then loads it as `loadModelSession` does. */
export async function openModelSession(opts = {}) {
    return loadModelSession(resolveModel(loadManifest(opts.modelsDir), opts.model), opts.threads);
}
/**
 * Verifies the file's sha256, loads it, and runs one test inference, refusing (ModelError naming the file)
 * a model that does not load, lacks the declared input or output, or whose output does not fit its decoder.
 */
export async function loadModelSession(model, threads = 2) {
    const bytes = await readVerifiedModel(model);
    if (!Number.isInteger(threads) || threads < 1)
        throw new RangeError(`threads must be a positive integer, got ${threads}`);
    let session;
    try {
        session = await ort.InferenceSession.create(bytes, {
            executionProviders: ['cpu'],
            intraOpNumThreads: threads,
            interOpNumThreads: 1,
            executionMode: 'sequential',
            graphOptimizationLevel: 'all',
        });
    }
    catch (err) {
        throw new ModelError(`onnxruntime cannot load model file ${model.path}: ${err.message}; rebuild it with scripts/setup.sh`, model.path);
    }
    try {
        const { input, output, decoder } = model.spec;
        if (!session.inputNames.includes(input.name) || !session.outputNames.includes(output.name)) {
            throw new ModelError(`model file ${model.path} has inputs [${session.inputNames.join(', ')}] and outputs [${session.outputNames.join(', ')}], ` +
                `but its manifest names input '${input.name}' and output '${output.name}'; rebuild it with scripts/setup.sh`, model.path);
        }
        const [, , height, width] = input.shape;
        let dims;
        try {
            const zeros = new ort.Tensor('float32', new Float32Array(3 * width * height), [...input.shape]);
            const out = (await session.run({ [input.name]: zeros }, [output.name]))[output.name];
            if (out.type !== 'float32')
                throw new Error(`output '${output.name}' is ${out.type}, expected float32`);
            dims = out.dims.map(Number);
        }
        catch (err) {
            throw new ModelError(`model file ${model.path} failed its test inference on a ${width}x${height} input: ${err.message}`, model.path);
        }
        const expected = expectedOutput(decoder, width, height);
        if (!outputFits(expected.shape, dims) || dims.join() !== output.shape.join()) {
            throw new ModelError(`model file ${model.path} (model '${model.name}', decoder ${decoder.kind}) outputs '${output.name}' of shape [${dims.join(',')}]; ` +
                `its manifest declares [${output.shape.join(',')}] and the decoder expects ${expected.text}. ` +
                'Refusing to load it: add the model again with the decoder that matches its export (edgepatrol model add --decoder …).', model.path);
        }
        return { model, session, inputWidth: width, inputHeight: height, outputDims: dims, decode: createDecoder(decoder, width, height, dims) };
    }
    catch (err) {
        await session.release();
        throw err;
    }
}
export async function openInferenceCore(opts = {}) {
    const { model, session, inputWidth, inputHeight, decode } = await openModelSession(opts);
    const scoreThreshold = opts.scoreThreshold ?? 0.35;
    const iouThreshold = opts.iouThreshold ?? 0.5;
    const maxDetections = opts.maxDetections ?? 100;
    const { input, output } = model.spec;
    const inputLength = 3 * inputWidth * inputHeight;
    const candidates = new Candidates();
    const classes = model.classes;
    return {
        model,
        inputWidth,
        inputHeight,
        preprocess: opts.preprocess ?? model.spec.preprocess,
        async infer(data, frame, mapping, timing) {
            if (data.length !== inputLength)
                throw new RangeError(`model ${model.name}: input of ${data.length} floats, expected ${inputLength}`);
            const t1 = performance.now();
            const result = await session.run({ [input.name]: new ort.Tensor('float32', data, [...input.shape]) });
            const t2 = performance.now();
            const out = result[output.name];
            if (!out || out.type !== 'float32')
                throw new Error(`model ${model.name}: output '${output.name}' missing or not float32`);
            decode(out.data, scoreThreshold, candidates);
            const kept = nms(candidates, iouThreshold, maxDetections);
            const { scaleX, scaleY, padX, padY } = mapping;
            const clip = (v, max) => Math.min(max, Math.max(0, v));
            const b = candidates.boxes;
            const detections = kept.map((i) => {
                const classId = candidates.classIds[i];
                return {
                    class: classes[classId] ?? `class${classId}`,
                    classId,
                    score: candidates.scores[i],
                    box: [
                        clip((b[i * 4] - padX) / scaleX, frame.width), clip((b[i * 4 + 1] - padY) / scaleY, frame.height),
                        clip((b[i * 4 + 2] - padX) / scaleX, frame.width), clip((b[i * 4 + 3] - padY) / scaleY, frame.height),
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
export async function openInlineDetector(opts = {}) {
    const core = await openInferenceCore(opts);
    const { model } = core;
    const pre = new Preprocessor(core.inputWidth, core.inputHeight, core.preprocess, opts.resize ?? 'bilinear');
    async function detectNow(frame, timing) {
        const t0 = performance.now();
        pre.run(frame);
        if (timing)
            timing.preprocessMs = performance.now() - t0;
        return core.infer(pre.output, frame, pre.mapping, timing);
    }
    // One frame at a time: the input buffer and candidates are shared, and ORT is given all its threads.
    let queue = Promise.resolve();
    let closed = false;
    return {
        model: { name: model.name, sha256: model.spec.sha256 },
        detect(frame, timing) {
            if (closed)
                return Promise.reject(new Error(`detector for model ${model.name} is closed`));
            const next = queue.then(() => detectNow(frame, timing));
            queue = next.catch(() => undefined);
            return next;
        },
        async close() {
            if (closed)
                return;
            closed = true;
            await queue;
            await core.release();
        },
    };
}
/** After a worker failed to start, frames are refused with that error for this long before trying again. */
const RESPAWN_PAUSE_MS = 5000;
/** Transfer buffers kept for reuse: one per frame in flight is enough. */
const POOL_SIZE = 4;
/**
 * The model in a worker thread (node:worker_threads), so an inference never blocks the main thread's event
 * loop (ffmpeg pipes, motion gating, rules, MQTT). Frames are preprocessed here, on the calling thread, into
 * pooled ArrayBuffers that are transferred to the worker and back: with two frames in flight, the next frame's
 * resize overlaps this frame's inference instead of following it in the worker. A worker that crashes, exits or stops answering (`timeoutMs`) has its
 * frames rejected with an error naming the model, is reported to `onWorkerExit`, and is replaced on the next
 * frame; `close()` lets sent frames finish, then ends the worker.
 */
class WorkerDetector {
    opts;
    model = { name: '', sha256: '' };
    conn = null;
    nextId = 1;
    pool = [];
    /** Made when the first worker says what input its model takes. */
    pre;
    closed = false;
    spawnFailure;
    init;
    url;
    timeoutMs;
    constructor(opts) {
        this.opts = opts;
        const { timeoutMs, onWorkerExit, workerUrl, ...init } = opts;
        this.init = init;
        // Run from TypeScript sources (tests, benches) the worker is the .ts file next to this one, from dist/ the .js.
        this.url = workerUrl ?? new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);
        this.timeoutMs = timeoutMs ?? 60_000;
        if (!(this.timeoutMs > 0))
            throw new RangeError(`timeoutMs must be positive, got ${timeoutMs}`);
    }
    /** Starts a worker; resolves when its model is loaded, rejects with the worker's error (a ModelError for a bad model). */
    connect() {
        const worker = new Worker(this.url, { workerData: this.init });
        let crash;
        let settleReady;
        const conn = {
            worker,
            ready: new Promise((resolve, reject) => { settleReady = { resolve, reject }; }),
            failStart: (err) => settleReady.reject(err),
            isReady: false,
            pending: new Map(),
            last: Promise.resolve(),
            watchdog: undefined,
            dead: false,
        };
        // Nobody may await `ready` (a crash after start-up); its rejection is reported through the frames instead.
        conn.ready.catch(() => undefined);
        this.conn = conn;
        worker.on('message', (msg) => {
            switch (msg.type) {
                case 'ready':
                    this.model = { name: msg.name, sha256: msg.sha256 };
                    this.pre ??= new Preprocessor(msg.inputWidth, msg.inputHeight, msg.preprocess, this.opts.resize ?? 'bilinear');
                    conn.isReady = true;
                    settleReady.resolve();
                    return;
                case 'init-failed':
                    settleReady.reject(msg.modelError ? new ModelError(msg.message, msg.file) : new Error(msg.message));
                    return;
                case 'result':
                case 'failed': {
                    this.recycle(msg.buffer);
                    const p = conn.pending.get(msg.id);
                    if (!p)
                        return;
                    conn.pending.delete(msg.id);
                    this.arm(conn);
                    if (msg.type === 'result') {
                        if (p.timing)
                            Object.assign(p.timing, msg.timing, { preprocessMs: p.preprocessMs });
                        p.resolve(msg.detections);
                    }
                    else {
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
    bury(conn, err) {
        if (conn.dead)
            return;
        conn.dead = true;
        clearTimeout(conn.watchdog);
        if (this.conn === conn)
            this.conn = null;
        const wasReady = conn.isReady;
        conn.isReady = false;
        conn.failStart(err);
        for (const p of conn.pending.values())
            p.reject(err);
        conn.pending.clear();
        if (wasReady && !this.closed)
            this.opts.onWorkerExit?.(err);
        void conn.worker.terminate();
    }
    /** While frames wait, the worker must answer one within `timeoutMs` of the previous answer (or the send). */
    arm(conn) {
        clearTimeout(conn.watchdog);
        conn.watchdog = undefined;
        if (conn.pending.size === 0)
            return;
        conn.watchdog = setTimeout(() => {
            this.bury(conn, new Error(`the detector worker for model ${this.model.name} answered no frame for ${this.timeoutMs / 1000} s; it was ended and is restarted`));
        }, this.timeoutMs);
    }
    recycle(buffer) {
        if (this.pool.length < POOL_SIZE)
            this.pool.push(buffer);
    }
    detect(frame, timing) {
        if (this.closed)
            return Promise.reject(new Error(`detector for model ${this.model.name} is closed`));
        let conn = this.conn;
        if (!conn) {
            const failure = this.spawnFailure;
            if (failure && performance.now() - failure.at < RESPAWN_PAUSE_MS)
                return Promise.reject(failure.err);
            conn = this.connect();
            conn.ready.catch((err) => {
                this.spawnFailure = { at: performance.now(), err };
                this.bury(conn, err);
            });
        }
        const c = conn;
        const result = c.isReady ? this.send(c, frame, timing) : c.ready.then(() => this.send(c, frame, timing));
        c.last = result.catch(() => undefined);
        return result;
    }
    send(conn, frame, timing) {
        if (conn.dead)
            return Promise.reject(new Error(`the detector worker for model ${this.model.name} is gone; the next frame starts a new one`));
        const t0 = performance.now();
        let input;
        try {
            input = this.pre.run(frame);
        }
        catch (err) {
            return Promise.reject(err);
        }
        const length = input.length;
        let buffer = this.pool.pop();
        while (buffer && buffer.byteLength < input.byteLength)
            buffer = this.pool.pop();
        buffer ??= new ArrayBuffer(input.byteLength);
        new Float32Array(buffer, 0, length).set(input);
        const preprocessMs = performance.now() - t0;
        const id = this.nextId++;
        const { width, height } = frame;
        const mapping = this.pre.mapping;
        return new Promise((resolve, reject) => {
            conn.pending.set(id, { resolve, reject, timing, preprocessMs });
            if (conn.pending.size === 1)
                this.arm(conn);
            const msg = { type: 'detect', id, width, height, mapping, buffer, length };
            conn.worker.postMessage(msg, [buffer]);
        });
    }
    async close() {
        if (this.closed)
            return;
        this.closed = true;
        const conn = this.conn;
        if (!conn)
            return;
        await conn.ready.catch(() => undefined);
        await conn.last;
        if (conn.dead)
            return;
        const exited = new Promise((resolve) => conn.worker.once('exit', () => resolve()));
        conn.worker.postMessage({ type: 'close' });
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
export async function openDetector(opts = {}) {
    const detector = new WorkerDetector(opts);
    const conn = detector.connect();
    try {
        await conn.ready;
    }
    catch (err) {
        await conn.worker.terminate();
        throw err;
    }
    return detector;
}
