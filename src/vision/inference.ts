/**
 * The inference core: a verified model in an onnxruntime session, its input tensor and output decoding. The worker
 * thread (worker-protocol.ts) runs it; `openInlineDetector` runs it on the calling thread (tools, benches, tests).
 */
import * as ort from 'onnxruntime-node';
import { createDecoder, type OutputDecoder } from './decoders.js';
import {
  expectedOutput,
  loadManifest,
  outputFits,
  readVerifiedModel,
  resolveModel,
  ModelError,
  type InputQuantization,
  type ModelSpec,
  type Preprocess,
  type ResolvedModel,
} from './manifest.js';
import { tuneMalloc } from './malloc.js';
import { Candidates, nms } from './nms.js';
import { modelInput, Preprocessor, type InputMapping, type ModelInput, type ResizeFilter } from './preprocess.js';
import type { Detection, Frame } from './types.js';

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
  /** How frames are resampled to the model input; default `bilinear` (docs/decisions/0018-bilinear-resize.md: measured against `area`). */
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
    throw new ModelError(
      `onnxruntime cannot load model file ${model.path}: ${(err as Error).message}; rebuild it with scripts/setup.sh`,
      model.path,
    );
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
      throw new ModelError(
        `model file ${model.path} failed its test inference on a ${width}x${height} input: ${(err as Error).message}`,
        model.path,
      );
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
    return {
      model,
      session,
      inputWidth: width,
      inputHeight: height,
      outputDims: dims,
      decode: createDecoder(decoder, width, height, dims),
    };
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
    throw new ModelError(
      `model ${model.name} takes a uint8 input quantized for its own preprocessing, so another preprocessing would be clipped to ` +
        `its range; compare preprocessings on a float-input model (its fp32 source: ` +
        `${String((model.spec.quantization as { from?: string } | undefined)?.from ?? 'none recorded')})`,
      model.path,
    );
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
      if (out?.type !== 'float32') throw new Error(`model ${model.name}: output '${output.name}' missing or not float32`);
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
            clip((b[i * 4]! - padX) / scaleX, frame.width),
            clip((b[i * 4 + 1]! - padY) / scaleY, frame.height),
            clip((b[i * 4 + 2]! - padX) / scaleX, frame.width),
            clip((b[i * 4 + 3]! - padY) / scaleY, frame.height),
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
