/**
 * Chooses an INT8 build by measurement: each candidate INT8 model in a models folder against its FP32 source on
 * held-out frame sets (agreement of detections: precision, recall, F1, mAP@0.5, score drift), on this CPU.
 * Candidates come from `edgepatrol model quantize … --models-dir DIR` or from calibration records given with
 * --record (built here, optionally with --weight-bits overriding the record's).
 * The per-CPU side (x86 without VNNI, arm64) is scripts/check-cpus.sh; this script is the fast native loop.
 *
 *   node dist/bench/int8-variants.js --models-dir DIR [--record FILE[:bits]]… --heldout PATH[@start-end]… [--frames N] [--json]
 */
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { compareModels } from '../src/cli/model-quality.js';
import { buildInt8, int8Entry, readCalibrationRecord } from '../src/model/int8.js';
import { readManifestFile, writeManifestEntry } from '../src/model/manifest-file.js';
import { readModel } from '../src/model/onnx.js';
import { installModel } from '../src/model/registry.js';
import { planQuantization } from '../src/model/quantize.js';
import { defaultModelsDir, loadManifest, resolveModel } from '../src/vision/index.js';
import type { FrameSet } from '../src/model/frames.js';

const { values } = parseArgs({
  options: {
    'models-dir': { type: 'string' },
    reference: { type: 'string', default: 'nanodet-m' },
    record: { type: 'string', multiple: true, default: [] },
    heldout: { type: 'string', multiple: true, default: [] },
    frames: { type: 'string', default: '20' },
    only: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const dir = values['models-dir'];
if (!dir) throw new Error('--models-dir DIR is required: a folder for the candidates (created, with the FP32 source copied in)');
mkdirSync(dir, { recursive: true });
const project = loadManifest(defaultModelsDir());
const ref = resolveModel(project, values.reference);
if (!existsSync(join(dir, ref.spec.file))) copyFileSync(ref.path, join(dir, ref.spec.file));
if (!(await readManifestFile(join(dir, 'manifest.json')))?.models[ref.name])
  await writeManifestEntry(join(dir, 'manifest.json'), ref.name, { ...ref.spec });

// Candidates from records: <record name>[-w<bits>].
if (values.record.length) {
  const fp32 = await readModel(ref.path);
  for (const arg of values.record) {
    const [file, bits] = arg.split(':');
    const rec = await readCalibrationRecord(file!);
    if (bits) rec.weightBits = Number(bits) as 7 | 8;
    const name = `${basename(file!).replace(/\.calib\.json$/, '')}${bits ? `-w${bits}` : ''}`;
    const bytes = buildInt8(fp32, rec);
    const plan = planQuantization(fp32, { keepFloat: rec.keepFloat, quantizeHeadConvs: rec.quantizeHeadConvs });
    await installModel({
      modelsDir: dir,
      name,
      bytes,
      entry: int8Entry(ref.spec, rec, `${name}.calib.json`, plan, fp32),
      makeDefault: false,
    });
  }
}

const sets: FrameSet[] = values.heldout.map((h) => {
  const m = /^(.*?)(?:@([\d.]+)-([\d.]+))?$/.exec(h)!;
  return { path: m[1]!, frames: Number(values.frames), ...(m[2] ? { start: Number(m[2]), end: Number(m[3]) } : {}) };
});
if (!sets.length) throw new Error('--heldout PATH[@start-end] is required (a folder of images or a video stretch calibration did not see)');
const manifest = loadManifest(dir);
const only = values.only ? new Set(values.only.split(',')) : undefined;
const candidates = Object.entries(manifest.models)
  .filter(([n, m]) => m.precision === 'int8' && (!only || only.has(n)))
  .map(([n]) => n);
const rows = [];
for (const name of candidates) {
  for (const set of sets) {
    const r = await compareModels(dir, name, ref.name, set);
    const row = {
      model: name,
      set: `${set.path}${set.start !== undefined ? `@${set.start}-${set.end}` : ''}`,
      frames: r.frames,
      reference: r.reference,
      precision: r.precision,
      recall: r.recall,
      f1: r.f1,
      map50: r.map50,
      drift: r.scoreDrift.mean,
      driftAbs: r.scoreDrift.meanAbs,
    };
    rows.push(row);
    if (values.json) process.stdout.write(`${JSON.stringify(row)}\n`);
    else
      process.stdout.write(
        `${name.padEnd(34)} ${basename(row.set).padEnd(22)} ref ${String(r.reference).padStart(4)}  P ${r.precision.toFixed(3)} R ` +
          `${r.recall.toFixed(3)} F1 ${r.f1.toFixed(3)} mAP ${r.map50.toFixed(3)} drift ${r.scoreDrift.mean.toFixed(3)} |${r.scoreDrift.meanAbs.toFixed(3)}|\n`,
      );
  }
}
