/**
 * The detector's inference with and without the process's malloc thresholds (src/vision/malloc.ts), in one run:
 * raw onnxruntime session.run in a worker thread (where the agent runs it) on the same frames, in child
 * processes started alternately with EDGEPATROL_MALLOC_TUNING=off and without, for --rounds rounds; prints
 * inferences/s and minor page faults per inference of each, and the median ratio tuned ÷ untuned.
 *
 *   npm run build && node dist/bench/malloc.js [--seconds 5] [--rounds 4] [--threads 1]
 */
import { spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { openModelSession, Preprocessor, tuneMalloc } from '../src/vision/index.js';
import { readVideoFrames, type VideoFrame } from '../src/vision/video.js';
import { defaultClip } from '../test/helpers/rtsp.js';

const { values } = parseArgs({ options: {
  seconds: { type: 'string', default: '5' }, rounds: { type: 'string', default: '4' }, threads: { type: 'string', default: '1' },
  child: { type: 'boolean', default: false },
} });

interface Result { rate: number; faultsPerInference: number; tuned: boolean }

/** In a worker thread: open the model, warm up for a second, then run inferences for `seconds`. */
async function inferInWorker(seconds: number, threads: number): Promise<{ rate: number; n: number }> {
  const frames: VideoFrame[] = [];
  for await (const f of readVideoFrames(defaultClip, { fps: 0.5, maxFrames: 30 })) frames.push(f);
  const { model, session, inputWidth, inputHeight } = await openModelSession({ threads });
  const pre = new Preprocessor(inputWidth, inputHeight, model.spec.preprocess);
  const feeds = frames.map((f) => ({ [model.spec.input.name]: new ort.Tensor('float32', pre.run(f).slice(), [...model.spec.input.shape]) }));
  for (const end = performance.now() + 1000; performance.now() < end;) await session.run(feeds[0]!);
  parentPort!.postMessage('timing');
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) await session.run(feeds[n++ % feeds.length]!);
  const rate = n / ((performance.now() - t0) / 1000);
  await session.release();
  return { rate, n };
}

if (!isMainThread) {
  const { seconds, threads } = workerData as { seconds: number; threads: number };
  parentPort!.postMessage(await inferInWorker(seconds, threads));
} else if (values.child) {
  // The thresholds are set (or not) before the worker's session exists, as the agent does.
  const tuned = tuneMalloc().tuned;
  const worker = new Worker(new URL(import.meta.url), { workerData: { seconds: Number(values.seconds), threads: Number(values.threads) } });
  let faults0 = 0;
  const got = await new Promise<{ rate: number; n: number }>((resolve, reject) => {
    worker.on('message', (m: 'timing' | { rate: number; n: number }) => {
      if (m === 'timing') faults0 = process.resourceUsage().minorPageFault;
      else resolve(m);
    });
    worker.on('error', reject);
  });
  const faults = process.resourceUsage().minorPageFault - faults0;
  await worker.terminate();
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
