import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

/** A model cannot be found, read, trusted or understood; the message names the file and what to do. */
export class ModelError extends Error {
  override name = 'ModelError';
  constructor(message: string, readonly file?: string) {
    super(message);
  }
}

const positiveInt = z.number().int().positive();
const triple = z.tuple([z.number(), z.number(), z.number()]);

export const PreprocessSchema = z.object({
  /** Only a stretch resize to the input size: NanoDet was trained and is run upstream without letterboxing. */
  resize: z.literal('stretch'),
  /** Channel order the model expects in its input planes. */
  channels: z.enum(['rgb', 'bgr']),
  /** Per input channel (in `channels` order), on the 0–255 scale: value = (pixel − mean) / std. */
  mean: triple,
  std: triple.refine((s) => s.every((v) => v !== 0), 'std must not contain 0'),
});
export type Preprocess = z.infer<typeof PreprocessSchema>;

export const NanodetDecoderSchema = z.object({
  kind: z.literal('nanodet'),
  strides: z.array(positiveInt).min(1),
  regMax: positiveInt,
  numClasses: positiveInt,
});
export type NanodetDecoderSpec = z.infer<typeof NanodetDecoderSchema>;

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
    }),
    output: z.object({
      name: z.string().min(1),
      shape: z.tuple([z.literal(1), positiveInt, positiveInt]),
    }),
    preprocess: PreprocessSchema,
    decoder: z.discriminatedUnion('kind', [NanodetDecoderSchema]),
    classes: z.array(z.string().min(1)).min(1),
    licence: z.string().optional(),
    source: z.record(z.string(), z.unknown()).optional(),
  })
  .superRefine((m, ctx) => {
    const { decoder, classes, input, output } = m;
    if (classes.length !== decoder.numClasses) {
      ctx.addIssue({ code: 'custom', path: ['classes'], message: `has ${classes.length} names but decoder.numClasses is ${decoder.numClasses}` });
    }
    const [, , height, width] = input.shape;
    const cells = decoder.strides.reduce((n, s) => n + Math.ceil(height / s) * Math.ceil(width / s), 0);
    const channels = decoder.numClasses + 4 * (decoder.regMax + 1);
    if (output.shape[1] !== cells || output.shape[2] !== channels) {
      ctx.addIssue({
        code: 'custom',
        path: ['output', 'shape'],
        message: `is [1,${output.shape[1]},${output.shape[2]}] but input ${width}x${height}, strides ${decoder.strides.join('/')} and ${decoder.numClasses} classes + 4x${decoder.regMax + 1} bins need [1,${cells},${channels}]`,
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
