/**
 * FP32 against INT8 on this CPU: ms/inference of each with 1 and 2 intra-op threads, the two models
 * interleaved run by run in one process, so the ratio holds on a machine that other jobs load.
 * Input: one real vtest.avi frame through the model's own preprocessing.
 *
 *   node dist/bench/models.js [--fp32 nanodet-m] [--int8 nanodet-m-int8] [--threads 1,2] [--runs 40] [--models-dir DIR]
 */
import { parseArgs } from 'node:util';
import { benchModels } from '../src/model/bench.js';
import { defaultModelsDir } from '../src/vision/index.js';

const { values } = parseArgs({
  options: {
    fp32: { type: 'string', default: 'nanodet-m' },
    int8: { type: 'string', default: 'nanodet-m-int8' },
    threads: { type: 'string', default: '1,2' },
    runs: { type: 'string', default: '40' },
    'models-dir': { type: 'string', default: defaultModelsDir() },
  },
});
const threads = values.threads.split(',').map(Number);
const runs = Number(values.runs);
if (threads.some((t) => !Number.isInteger(t) || t < 1) || !Number.isInteger(runs) || runs < 1) {
  throw new Error('--threads takes positive integers separated by commas, --runs a positive integer');
}
const rows = await benchModels(values['models-dir'], [values.fp32, values.int8], threads, runs);
process.stdout.write(`${values.fp32} vs ${values.int8}, ${runs} interleaved runs each, medians, node ${process.version}\n\n`);
process.stdout.write(`${'threads'.padEnd(9)}${'fp32 ms'.padStart(10)}${'int8 ms'.padStart(10)}${'int8 speed-up'.padStart(15)}\n`);
for (const { threads: n, results } of rows) {
  const f = results[0]!;
  const q = results[1]!;
  process.stdout.write(`${String(n).padEnd(9)}${f.ms.toFixed(2).padStart(10)}${q.ms.toFixed(2).padStart(10)}${`${(f.ms / q.ms).toFixed(3)}x`.padStart(15)}\n`);
}
