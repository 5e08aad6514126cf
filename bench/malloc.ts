/**
 * The detector's inference with and without the process's malloc thresholds (src/vision/malloc.ts), in one run:
 * raw onnxruntime session.run in a worker thread (where the agent runs it) on the same frames, in child
 * processes started alternately with EDGEPATROL_MALLOC_TUNING=off and without, for --rounds rounds; prints
 * inferences/s and minor page faults per inference of each, and the median ratio tuned ÷ untuned.
 *
 *   npm run build && node dist/bench/malloc.js [--seconds 5] [--rounds 4] [--threads 1]
 */
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { tuneMalloc } from '../src/vision/index.js';
import { rawInWorker } from './raw.js';

const { values } = parseArgs({ options: {
  seconds: { type: 'string', default: '5' }, rounds: { type: 'string', default: '4' }, threads: { type: 'string', default: '1' },
  child: { type: 'boolean', default: false },
} });

interface Result { rate: number; faultsPerInference: number; tuned: boolean }

if (values.child) {
  // The thresholds are set (or not) before the worker's session exists, as the agent does.
  const tuned = tuneMalloc().tuned;
  let faults0 = 0;
  const got = await rawInWorker({
    seconds: Number(values.seconds), threads: Number(values.threads), fps: 0.5, maxFrames: 30,
    onTiming: () => { faults0 = process.resourceUsage().minorPageFault; },
  });
  const faults = process.resourceUsage().minorPageFault - faults0;
  process.stdout.write(JSON.stringify({ rate: got.rate, faultsPerInference: faults / got.n, tuned } satisfies Result));
} else {
  const run = (off: boolean): Result => {
    const r = spawnSync(process.execPath, [...process.execArgv, new URL(import.meta.url).pathname, '--child', '--seconds', values.seconds!, '--threads', values.threads!], {
      encoding: 'utf8', env: { ...process.env, EDGEPATROL_MALLOC_TUNING: off ? 'off' : '' },
    });
    if (r.status !== 0) throw new Error(`bench child failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as Result;
  };
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(`malloc thresholds: raw session.run in a worker thread, ${values.threads} threads, ${values.seconds} s per process, ${values.rounds} rounds, node ${process.version}`);
  const ratios: number[] = [];
  for (let i = 0; i < Number(values.rounds); i++) {
    // Alternating which goes first, so a drift of the shared machine does not favour one.
    let untuned: Result;
    let tuned: Result;
    if (i % 2 === 0) {
      untuned = run(true);
      tuned = run(false);
    } else {
      tuned = run(false);
      untuned = run(true);
    }
    if (!tuned.tuned) throw new Error('the tuned child did not set the thresholds: build the addon with npm run build:native');
    ratios.push(tuned.rate / untuned.rate);
    console.log(`  round ${i + 1}: default ${untuned.rate.toFixed(1)} inf/s, ${untuned.faultsPerInference.toFixed(0)} faults/inference | thresholds ${tuned.rate.toFixed(1)} inf/s, ${tuned.faultsPerInference.toFixed(0)} faults/inference | ratio ${(tuned.rate / untuned.rate).toFixed(2)}`);
  }
  console.log(`  median ratio thresholds ÷ default: ${median(ratios).toFixed(2)}`);
}
