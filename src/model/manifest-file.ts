import { existsSync } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';

/**
 * The writer's view of models/manifest.json; src/vision/manifest.ts validates what the agent reads.
 * Entries are kept as plain JSON so that fields this side does not know survive a rewrite.
 */
export interface ManifestFile {
  schema: 1;
  default: string;
  models: Record<string, Record<string, unknown>>;
}

export async function readManifestFile(file: string): Promise<ManifestFile | undefined> {
  if (!existsSync(file)) return undefined;
  try {
    const m = JSON.parse(await readFile(file, 'utf8')) as ManifestFile;
    if (m.schema !== 1 || typeof m.models !== 'object' || m.models === null) throw new Error('not a schema 1 manifest');
    return m;
  } catch (err) {
    throw new Error(`${file}: cannot read the model manifest: ${(err as Error).message}`);
  }
}

/**
 * Sets models[name] to `entry`, keeping from an existing entry the fields named in `keep` (choices
 * that are made by measuring, not by the build). Creates the manifest, with `name` as default, if absent.
 */
export async function writeManifestEntry(file: string, name: string, entry: Record<string, unknown>, keep: string[] = []): Promise<void> {
  const manifest = (await readManifestFile(file)) ?? { schema: 1, default: name, models: {} };
  const old = manifest.models[name];
  const merged = { ...entry };
  for (const key of keep) if (old && key in old) merged[key] = old[key];
  manifest.models[name] = merged;
  await writeManifest(file, manifest);
}

/** Writes through a temporary file, so a reader sees the old manifest or the new one, never half of one. */
async function writeManifest(file: string, manifest: ManifestFile): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, formatJson(manifest));
  await rename(tmp, file);
}

/** Two-space JSON with arrays of numbers on one line, so shapes and means read as they are written. */
function formatJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2).replace(/\[\s+([-\d.eE+,\s]+?)\s+\]/g, (_, inner: string) => `[${inner.split(/,\s+/).join(', ')}]`)}\n`;
}

/** Makes `name` (already in the manifest) the default model. */
export async function setManifestDefault(file: string, name: string): Promise<void> {
  const manifest = await readManifestFile(file);
  if (!manifest || !(name in manifest.models)) throw new Error(`${file}: cannot make '${name}' the default, it is not in the manifest`);
  manifest.default = name;
  await writeManifest(file, manifest);
}

/** Removes models[name] from the manifest; the default cannot be removed. */
export async function removeManifestEntry(file: string, name: string): Promise<void> {
  const manifest = await readManifestFile(file);
  if (!manifest || !(name in manifest.models)) return;
  if (manifest.default === name) throw new Error(`${file}: '${name}' is the default model; make another model the default first`);
  delete manifest.models[name];
  await writeManifest(file, manifest);
}
