/**
 * FP32 against INT8 on this CPU: ms/inference of each with 1 and 2 intra-op threads, the two models
 * interleaved run by run in one process, so the ratio holds on a machine that other jobs load.
 * Input: one real vtest.avi frame through the model's own preprocessing.
 * `--input-types`: instead, the INT8 model (uint8 input, quantized by the preprocessing) against the same model
 * built from its calibration record with a float32 input that its first node quantizes, as before.
 *
 *   node dist/bench/models.js [--fp32 nanodet-m] [--int8 nanodet-m-int8] [--threads 1,2] [--runs 40] [--models-dir DIR] [--input-types]
 */
import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { benchModels } from '../src/model/bench.js';
import { buildInt8, readCalibrationRecord } from '../src/model/int8.js';
import { writeManifestEntry } from '../src/model/manifest-file.js';
import { readModel } from '../src/model/onnx.js';
import { defaultModelsDir, loadManifest, resolveModel } from '../src/vision/index.js';

const { values } = parseArgs({
  options: {
    fp32: { type: 'string', default: 'nanodet-m' },
    int8: { type: 'string', default: 'nanodet-m-int8' },
    threads: { type: 'string', default: '1,2' },
    runs: { type: 'string', default: '40' },
    'models-dir': { type: 'string', default: defaultModelsDir() },
    'input-types': { type: 'boolean', default: false },
  },
});
const threads = values.threads.split(',').map(Number);
const runs = Number(values.runs);
if (threads.some((t) => !Number.isInteger(t) || t < 1) || !Number.isInteger(runs) || runs < 1) {
  throw new Error('--threads takes positive integers separated by commas, --runs a positive integer');
}
/** One line per thread count: the two models' ms and the first's ÷ the second's. */
function printRows(rows: Awaited<ReturnType<typeof benchModels>>, first: string, second: string, ratio: string): void {
  process.stdout.write(`${'threads'.padEnd(9)}${first.padStart(10)}${second.padStart(10)}${ratio.padStart(15)}\n`);
  for (const { threads: n, results } of rows) {
    const [a, b] = [results[0]!, results[1]!];
    process.stdout.write(
      `${String(n).padEnd(9)}${a.ms.toFixed(2).padStart(10)}${b.ms.toFixed(2).padStart(10)}${`${(a.ms / b.ms).toFixed(3)}x`.padStart(15)}\n`,
    );
  }
}

if (values['input-types']) {
  const manifest = loadManifest(values['models-dir']);
  const int8 = resolveModel(manifest, values.int8);
  const q = int8.spec.quantization as { from?: string; ranges?: string } | undefined;
  if (!int8.spec.input.quantization || !q?.from || !q.ranges)
    throw new Error(`${values.int8} has no uint8 input built from a calibration record`);
  const record = await readCalibrationRecord(join(manifest.dir, q.ranges));
  const bytes = buildInt8(await readModel(resolveModel(manifest, q.from).path), { ...record, uint8Input: false });
  const dir = mkdtempSync(join(tmpdir(), 'edgepatrol-input-types-'));
  try {
    copyFileSync(int8.path, join(dir, int8.spec.file));
    writeFileSync(join(dir, 'float-input.onnx'), bytes);
    await writeManifestEntry(join(dir, 'manifest.json'), int8.name, { ...int8.spec });
    const { type: _t, quantization: _q, ...floatInput } = int8.spec.input;
    await writeManifestEntry(join(dir, 'manifest.json'), 'float-input', {
      ...int8.spec,
      input: floatInput,
      file: 'float-input.onnx',
      sha256: createHash('sha256').update(bytes).digest('hex'),
    });
    process.stdout.write(
      `${int8.name}: float32 input (quantized by its first node) vs uint8 input (quantized by the preprocessing), ${runs} interleaved ` +
        `runs each, medians, node ${process.version}\n\n`,
    );
    printRows(await benchModels(dir, ['float-input', int8.name], threads, runs), 'float ms', 'uint8 ms', 'float / uint8');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(0);
}
const rows = await benchModels(values['models-dir'], [values.fp32, values.int8], threads, runs);
process.stdout.write(`${values.fp32} vs ${values.int8}, ${runs} interleaved runs each, medians, node ${process.version}\n\n`);
printRows(rows, 'fp32 ms', 'int8 ms', 'int8 speed-up');
