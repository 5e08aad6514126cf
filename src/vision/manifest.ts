import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

/** A model cannot be found, read, trusted or understood; the message names the file and what to do. */
export class ModelError extends Error {
  override name = 'ModelError';
  constructor(
    message: string,
    readonly file?: string,
  ) {
    super(message);
  }
}

const positiveInt = z.number().int().positive();
const triple = z.tuple([z.number(), z.number(), z.number()]);

export const PreprocessSchema = z.object({
  /**
   * `stretch`: resize to the input size (NanoDet is trained and run upstream that way); `letterbox`: keep the
   * aspect ratio, centre, fill the border with `pad` (what Ultralytics YOLO exports expect).
   */
  resize: z.enum(['stretch', 'letterbox']),
  /** Letterbox border value on the 0–255 scale (default 114, Ultralytics' grey). */
  pad: z.number().min(0).max(255).optional(),
  /** Channel order the model expects in its input planes. */
  channels: z.enum(['rgb', 'bgr']),
  /** Per input channel (in `channels` order), on the 0–255 scale: value = (pixel − mean) / std. */
  mean: triple,
  std: triple.refine((s) => s.every((v) => v !== 0), 'std must not contain 0'),
});
export type Preprocess = z.infer<typeof PreprocessSchema>;

/** How a uint8 model input encodes the normalised value: q = round_half_even(value / scale) + zeroPoint, clamped to 0–255. */
export const InputQuantizationSchema = z.object({
  scale: z.number().positive(),
  zeroPoint: z.number().int().min(0).max(255),
});
export type InputQuantization = z.infer<typeof InputQuantizationSchema>;

export const NanodetDecoderSchema = z.object({
  kind: z.literal('nanodet'),
  strides: z.array(positiveInt).min(1),
  regMax: positiveInt,
  numClasses: positiveInt,
});
export type NanodetDecoderSpec = z.infer<typeof NanodetDecoderSchema>;

/** YOLOv5 export: [1, N, 5 + C] = cx, cy, w, h (input pixels), objectness, C class scores; score = objectness × class. */
export const Yolov5DecoderSchema = z.object({ kind: z.literal('yolov5'), numClasses: positiveInt });
/** YOLOv8 / YOLO11 export: [1, 4 + C, N] = cx, cy, w, h (input pixels), then C class scores, channel-major. */
export const Yolov8DecoderSchema = z.object({ kind: z.literal('yolov8'), numClasses: positiveInt });
export const DecoderSchema = z.discriminatedUnion('kind', [NanodetDecoderSchema, Yolov5DecoderSchema, Yolov8DecoderSchema]);
export type DecoderSpec = z.infer<typeof DecoderSchema>;
export const DECODER_KINDS = ['nanodet', 'yolov5', 'yolov8'] as const;

/**
 * The output shape a decoder needs for an input of width × height, `null` where any size fits (a YOLO
 * export's box count depends on its anchors and strides), and how to say it to a person.
 */
export function expectedOutput(decoder: DecoderSpec, width: number, height: number): { shape: (number | null)[]; text: string } {
  switch (decoder.kind) {
    case 'nanodet': {
      const cells = decoder.strides.reduce((n, s) => n + Math.ceil(height / s) * Math.ceil(width / s), 0);
      const channels = decoder.numClasses + 4 * (decoder.regMax + 1);
      return {
        shape: [1, cells, channels],
        text:
          `[1,${cells},${channels}] (NanoDet: input ${width}x${height}, strides ${decoder.strides.join('/')}, ${decoder.numClasses} ` +
          `classes + 4x${decoder.regMax + 1} bins)`,
      };
    }
    case 'yolov5':
      return {
        shape: [1, null, 5 + decoder.numClasses],
        text: `[1,N,${5 + decoder.numClasses}] (YOLOv5: N boxes of 4 coordinates, objectness and ${decoder.numClasses} class scores)`,
      };
    case 'yolov8':
      return {
        shape: [1, 4 + decoder.numClasses, null],
        text: `[1,${4 + decoder.numClasses},N] (YOLOv8/YOLO11: 4 coordinates and ${decoder.numClasses} class scores for each of N boxes)`,
      };
  }
}

/** Whether `dims` is a shape the decoder can read (null in `expected` matches any positive size). */
export function outputFits(expected: readonly (number | null)[], dims: readonly number[]): boolean {
  return dims.length === expected.length && expected.every((e, i) => (e === null ? dims[i]! > 0 : dims[i] === e));
}

export const ModelSpecSchema = z
  .object({
    file: z.string().min(1),
    sha256: z.string().regex(/^[0-9a-f]{64}$/, 'sha256 must be 64 lowercase hex digits'),
    format: z.literal('onnx'),
    precision: z.string().min(1),
    input: z.object({
      name: z.string().min(1),
      shape: z.tuple([z.literal(1), z.literal(3), positiveInt, positiveInt]),
      layout: z.literal('NCHW'),
      /** Element type of the input tensor (default float32). `uint8` takes the normalised values already quantized. */
      type: z.enum(['float32', 'uint8']).optional(),
      /** For a `uint8` input: q = round(value / scale) + zeroPoint, clamped to 0–255 (ONNX QuantizeLinear). */
      quantization: InputQuantizationSchema.optional(),
    }),
    output: z.object({
      name: z.string().min(1),
      shape: z.tuple([z.literal(1), positiveInt, positiveInt]),
    }),
    preprocess: PreprocessSchema,
    decoder: DecoderSchema,
    classes: z.array(z.string().min(1)).min(1),
    licence: z.string().optional(),
    source: z.record(z.string(), z.unknown()).optional(),
    /** For a quantized model: its float source, the calibration set and method, the nodes kept float. */
    quantization: z.record(z.string(), z.unknown()).optional(),
  })
  .superRefine((m, ctx) => {
    const { decoder, classes, input, output } = m;
    if (classes.length !== decoder.numClasses) {
      ctx.addIssue({
        code: 'custom',
        path: ['classes'],
        message: `has ${classes.length} names but decoder.numClasses is ${decoder.numClasses}`,
      });
    }
    if ((input.type === 'uint8') !== (input.quantization !== undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['input', 'quantization'],
        message: input.type === 'uint8' ? 'is required for a uint8 input (its scale and zeroPoint)' : 'is only for an input of type uint8',
      });
    }
    const [, , height, width] = input.shape;
    const expected = expectedOutput(decoder, width, height);
    if (!outputFits(expected.shape, output.shape)) {
      ctx.addIssue({
        code: 'custom',
        path: ['output', 'shape'],
        message: `is [${output.shape.join(',')}] but the decoder needs ${expected.text}`,
      });
    }
  });
export type ModelSpec = z.infer<typeof ModelSpecSchema>;

export const ManifestSchema = z
  .object({
    schema: z.literal(1),
    default: z.string().min(1),
    models: z.record(z.string().min(1), ModelSpecSchema),
  })
  .superRefine((m, ctx) => {
    if (!(m.default in m.models)) {
      ctx.addIssue({ code: 'custom', path: ['default'], message: `names '${m.default}', which is not in models` });
    }
  });
export type Manifest = z.infer<typeof ManifestSchema>;

/** A validated manifest and where it was read from (model files are relative to `dir`). */
export interface LoadedManifest extends Manifest {
  dir: string;
  file: string;
}

/** A model picked from a manifest, with the absolute path of its file. */
export interface ResolvedModel {
  name: string;
  path: string;
  classes: string[];
  spec: ModelSpec;
}

const SETUP_HINT = 'run scripts/setup.sh (builds the default model)';

/** The repository's models/ folder, found from this module's location so it works from src/ and dist/. */
export function defaultModelsDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'models');
    const parent = dirname(dir);
    if (parent === dir) return resolve('models');
    dir = parent;
  }
}

/** Reads and validates `{modelsDir}/manifest.json`; synchronous because it runs once at start-up, before any frame. */
export function loadManifest(modelsDir: string = defaultModelsDir()): LoadedManifest {
  const dir = resolve(modelsDir);
  const file = join(dir, 'manifest.json');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ModelError(`model manifest ${file} is missing: ${SETUP_HINT}`, file);
    throw new ModelError(`cannot read model manifest ${file}: ${(err as Error).message}`, file);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ModelError(`model manifest ${file} is not valid JSON (${(err as Error).message}): rebuild it with scripts/setup.sh`, file);
  }
  const parsed = ManifestSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `  ${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('\n');
    throw new ModelError(`model manifest ${file} is invalid:\n${issues}\nrebuild it with scripts/setup.sh`, file);
  }
  return { ...parsed.data, dir, file };
}

/** Picks a model by name (the manifest's default when omitted). */
export function resolveModel(manifest: LoadedManifest, name?: string): ResolvedModel {
  const chosen = name ?? manifest.default;
  const spec = Object.hasOwn(manifest.models, chosen) ? manifest.models[chosen] : undefined;
  if (!spec) {
    const known = Object.keys(manifest.models).join(', ');
    throw new ModelError(`unknown model '${chosen}' in ${manifest.file}; known models: ${known}`, manifest.file);
  }
  return { name: chosen, path: resolve(manifest.dir, spec.file), classes: spec.classes, spec };
}

/**
 * Reads the model file and checks it against the manifest's sha256. Returns the bytes so the session
 * is created from exactly what was hashed (the file cannot change between check and load).
 */
export async function readVerifiedModel(model: ResolvedModel): Promise<Uint8Array> {
  let bytes: Buffer;
  try {
    bytes = await readFile(model.path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ModelError(`model file ${model.path} (model '${model.name}') is missing: ${SETUP_HINT}`, model.path);
    }
    throw new ModelError(`cannot read model file ${model.path}: ${(err as Error).message}`, model.path);
  }
  const found = createHash('sha256').update(bytes).digest('hex');
  if (found !== model.spec.sha256) {
    throw new ModelError(
      `model file ${model.path} does not match its manifest: sha256 expected ${model.spec.sha256}, found ${found}. ` +
        `Refusing to load it; rebuild it with scripts/setup.sh or restore the original file.`,
      model.path,
    );
  }
  return bytes;
}
