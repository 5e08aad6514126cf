/**
 * The detector with and without the process's malloc tuning (src/vision/malloc.ts), in one run. Each round starts
 * one child process per setting, in turn:
 * - `default`: glibc's own (EDGEPATROL_MALLOC_TUNING=off);
 * - `thresholds`: the 32 MiB mmap and trim thresholds alone (the tuning before the top pad);
 * - `tuned`: thresholds and the 64 MiB top pad, what the agent sets.
 * A child runs the agent's detector path without cameras: YUV frames of vtest.avi preprocessed on the main thread,
 * three in flight to the detector's worker thread, pinned to the last CPU as the agent pins it. It prints
 * frames/s and the worker thread's minor page faults per frame; the parent prints the median ratios.
 *
 *   npm run build && node dist/bench/malloc.js [--seconds 5] [--rounds 4] [--threads 1]
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { MALLOC_THRESHOLD_BYTES, MALLOC_TOP_PAD_BYTES, mallocAddon, openDetector } from '../src/vision/index.js';
import { pinThisThread } from '../src/vision/affinity.js';
import { defaultClip } from '../test/helpers/rtsp.js';
import { yuvFrames } from './frames.js';

const SETTINGS = ['default', 'thresholds', 'tuned'] as const;
type Setting = (typeof SETTINGS)[number];

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '4' },
    threads: { type: 'string', default: '1' },
    child: { type: 'string' },
  },
});

interface Result {
  rate: number;
  faultsPerFrame: number;
}

/** Minor page faults and CPU ticks of each thread of this process. */
function threadStats(): Map<string, { faults: number; ticks: number }> {
  const stats = new Map<string, { faults: number; ticks: number }>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const text = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
      stats.set(tid, { faults: Number(f[7]), ticks: Number(f[11]) + Number(f[12]) });
    } catch {
      // The thread ended meanwhile.
    }
  }
  return stats;
}

async function child(setting: Setting): Promise<Result> {
  // The parent turned tuneMalloc off (EDGEPATROL_MALLOC_TUNING=off) so the worker's own call changes nothing; the
  // setting is made here, before the worker starts, through the addon itself.
  if (setting !== 'default') {
    // The switch is read when the addon loads: off only for the worker's own call, started after this.
    delete process.env.EDGEPATROL_MALLOC_TUNING;
    const addon = mallocAddon();
    process.env.EDGEPATROL_MALLOC_TUNING = 'off';
    if (!addon.ok) throw new Error(`the malloc addon is needed: ${addon.reason}`);
    if (!addon.addon.tune(MALLOC_THRESHOLD_BYTES, MALLOC_THRESHOLD_BYTES, setting === 'tuned' ? MALLOC_TOP_PAD_BYTES : 0))
      throw new Error('mallopt refused');
  }
  const cpus = availableParallelism();
  const frames = yuvFrames(defaultClip, 2, 768, 576).slice(0, 60);
  const detector = await openDetector({ threads: Number(values.threads), ...(cpus > 1 && { cpus: [cpus - 1] }) });
  if (cpus > 1) pinThisThread(Array.from({ length: cpus - 1 }, (_, i) => i));
  const run = async (seconds: number): Promise<number> => {
    let done = 0;
    let next = 0;
    const inFlight: Promise<unknown>[] = [];
    const t0 = performance.now();
    while (performance.now() - t0 < seconds * 1000) {
      while (inFlight.length < 3)
        inFlight.push(
          detector.detect(frames[next++ % frames.length]!).then(() => {
            done++;
          }),
        );
      await inFlight.shift();
    }
    await Promise.all(inFlight);
    return done;
  };
  await run(1);
  const before = threadStats();
  const t0 = performance.now();
  const n = await run(Number(values.seconds));
  const elapsed = (performance.now() - t0) / 1000;
  const after = threadStats();
  await detector.close();
  // The worker is the thread that ran most.
  let worker = { faults: 0, ticks: -1 };
  for (const [tid, s] of after) {
    const b = before.get(tid);
    if (b && s.ticks - b.ticks > worker.ticks) worker = { faults: s.faults - b.faults, ticks: s.ticks - b.ticks };
  }
  return { rate: n / elapsed, faultsPerFrame: worker.faults / n };
}

if (values.child) {
  if (!(SETTINGS as readonly string[]).includes(values.child)) throw new Error(`--child takes ${SETTINGS.join(', ')}`);
  process.stdout.write(JSON.stringify(await child(values.child as Setting)));
} else {
  const run = (setting: Setting): Result => {
    const r = spawnSync(
      process.execPath,
      [
        ...process.execArgv,
        new URL(import.meta.url).pathname,
        '--child',
        setting,
        '--seconds',
        values.seconds!,
        '--threads',
        values.threads!,
      ],
      {
        encoding: 'utf8',
        env: { ...process.env, EDGEPATROL_MALLOC_TUNING: 'off' },
      },
    );
    if (r.status !== 0) throw new Error(`bench child (${setting}) failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as Result;
  };
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(
    `malloc tuning: the detector path (worker thread, YUV 768×576 frames preprocessed on the main thread), ${values.threads} onnxruntime ` +
      `threads, ${values.seconds} s per process, ${values.rounds} rounds, node ${process.version}`,
  );
  const overDefault: number[] = [];
  const overThresholds: number[] = [];
  for (let i = 0; i < Number(values.rounds); i++) {
    // The order turns each round, so a drift of the shared machine does not favour one setting.
    const order = [...SETTINGS.slice(i % 3), ...SETTINGS.slice(0, i % 3)];
    const got = {} as Record<Setting, Result>;
    for (const s of order) got[s] = run(s);
    overDefault.push(got.tuned.rate / got.default.rate);
    overThresholds.push(got.tuned.rate / got.thresholds.rate);
    console.log(
      `  round ${i + 1}: ${SETTINGS.map((s) => `${s} ${got[s].rate.toFixed(1)} frames/s, ${got[s].faultsPerFrame.toFixed(0)} faults/frame`).join(' | ')}`,
    );
  }
  console.log(
    `  median ratio tuned ÷ default ${median(overDefault).toFixed(2)}, tuned ÷ thresholds alone ${median(overThresholds).toFixed(2)}`,
  );
}
