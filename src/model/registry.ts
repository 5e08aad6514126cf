import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { loadModelSession } from '../vision/inference.js';
import { ModelError, ModelSpecSchema, type ModelSpec } from '../vision/manifest.js';
import { readManifestFile, setManifestDefault, writeManifestEntry } from './manifest-file.js';
import { decodeModel } from './onnx.js';

/** What an ONNX file says about itself: its input and output shapes (symbolic sizes as null) and metadata. */
export interface OnnxInfo {
  inputs: { name: string; dims: (number | null)[] }[];
  outputs: { name: string; dims: (number | null)[] }[];
  opset: number | undefined;
  metadata: Record<string, string>;
}

export function onnxInfo(bytes: Uint8Array): OnnxInfo {
  const model = decodeModel(bytes);
  const graph = model.graph;
  const inits = new Set((graph?.initializer ?? []).map((t) => t.name));
  const dimsOf = (v: {
    type?: { tensorType?: { shape?: { dim?: { dimValue?: unknown }[] | null } | null } | null } | null;
  }): (number | null)[] =>
    (v.type?.tensorType?.shape?.dim ?? []).map((d) =>
      d.dimValue !== undefined && d.dimValue !== null && Number(d.dimValue) > 0 ? Number(d.dimValue) : null,
    );
  return {
    inputs: (graph?.input ?? []).filter((i) => !inits.has(i.name)).map((i) => ({ name: i.name ?? '', dims: dimsOf(i) })),
    outputs: (graph?.output ?? []).map((o) => ({ name: o.name ?? '', dims: dimsOf(o) })),
    opset: (() => {
      const v = (model.opsetImport ?? []).find((o) => !o.domain)?.version;
      return v === undefined || v === null ? undefined : Number(v);
    })(),
    metadata: Object.fromEntries((model.metadataProps ?? []).map((p) => [p.key ?? '', p.value ?? ''])),
  };
}

/**
 * Class names from Ultralytics' `names` metadata, a Python dict literal such as {0: 'person', 1: 'bicycle'}.
 * Returns undefined when absent or when the indices are not 0..n-1.
 */
export function classNamesFromMetadata(metadata: Record<string, string>): string[] | undefined {
  const text = metadata.names;
  if (!text) return undefined;
  const names: string[] = [];
  const re = /(\d+)\s*:\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")/g;
  for (let m = re.exec(text); m; m = re.exec(text)) names[Number(m[1])] = (m[2] ?? m[3] ?? '').replace(/\\(.)/g, '$1');
  if (names.length === 0 || names.some((n) => n === undefined || n === '') || names.length !== Object.keys(names).length) return undefined;
  return names;
}

export interface InstallOptions {
  modelsDir: string;
  name: string;
  bytes: Uint8Array;
  /** The manifest entry without `file` and `sha256`, which are filled in here. */
  entry: Omit<ModelSpec, 'file' | 'sha256'> & Record<string, unknown>;
  /** Make it the manifest's default once installed. */
  makeDefault?: boolean;
}

/**
 * Puts a model into a models folder so that a working model is never replaced by a broken one: the bytes go
 * to a temporary file first, which must pass the manifest schema, the sha256 check, loading in onnxruntime and
 * a test inference whose output fits the decoder; only then is the file moved in and the manifest entry written.
 * An update of an existing name gets a new file name (name-<sha256 prefix>.onnx), and the old file is removed
 * only after the manifest points at the new one.
 */
export async function installModel(opts: InstallOptions): Promise<{ file: string; sha256: string; path: string }> {
  const dir = resolve(opts.modelsDir);
  const manifestPath = join(dir, 'manifest.json');
  const manifest = await readManifestFile(manifestPath);
  const old = manifest?.models[opts.name];
  const sha256 = createHash('sha256').update(opts.bytes).digest('hex');
  const file =
    old === undefined || (old.file === `${opts.name}.onnx` && old.sha256 === sha256)
      ? `${opts.name}.onnx`
      : `${opts.name}-${sha256.slice(0, 12)}.onnx`;
  const path = join(dir, file);
  const tmp = join(dir, `.${file}.${process.pid}.tmp`);
  const parsed = ModelSpecSchema.safeParse({ ...opts.entry, file, sha256 });
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `  ${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('\n');
    throw new ModelError(`model '${opts.name}' cannot be added, its manifest entry would be invalid:\n${issues}`);
  }
  await writeFile(tmp, opts.bytes);
  try {
    const session = await loadModelSession({ name: opts.name, path: tmp, classes: parsed.data.classes, spec: parsed.data }, 1);
    await session.session.release();
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await writeManifestEntry(manifestPath, opts.name, { ...opts.entry, file, sha256 });
  if (opts.makeDefault) await setManifestDefault(manifestPath, opts.name);
  const oldFile = typeof old?.file === 'string' ? old.file : undefined;
  if (oldFile && oldFile !== file) {
    const after = await readManifestFile(manifestPath);
    const stillUsed = Object.values(after?.models ?? {}).some((m) => m.file === oldFile);
    if (!stillUsed && existsSync(join(dir, oldFile))) await rm(join(dir, oldFile));
  }
  return { file, sha256, path };
}
