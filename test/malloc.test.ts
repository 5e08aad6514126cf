import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { MALLOC_THRESHOLD_BYTES, MALLOC_TOP_PAD_BYTES, openDetector, tuneMalloc } from '../src/vision/index.js';
import { readFrames } from './helpers/frames.js';
import { defaultClip } from './helpers/rtsp.js';

const here = dirname(fileURLToPath(import.meta.url));
const addonPath = join(here, '..', 'build', 'Release', 'malloc_tune.node');

function inFreshProcess(env: NodeJS.ProcessEnv): unknown {
  const r = spawnSync(process.execPath, ['--import', '@tapjs/typescript/import', join(here, 'fixtures', 'malloc-tuning.ts')], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
  if (r.status !== 0) throw new Error(`fixture failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

t.test('the addon built at set-up sets the thresholds, once per process', async (t) => {
  const first = tuneMalloc();
  t.same(first, { tuned: true }, 'glibc accepted both thresholds');
  t.equal(tuneMalloc(), first, 'a second call returns the first result without calling mallopt again');
  t.same(inFreshProcess({ EDGEPATROL_MALLOC_TUNING: '' }), { tuned: true });
});

t.test('EDGEPATROL_MALLOC_TUNING=off leaves glibc defaults and says so', async (t) => {
  const got = inFreshProcess({ EDGEPATROL_MALLOC_TUNING: 'off' }) as { tuned: boolean; reason: string };
  t.equal(got.tuned, false);
  t.match(got.reason, /EDGEPATROL_MALLOC_TUNING=off/);
});

t.test('the addon refuses what is not two positive byte counts and a pad', async (t) => {
  const { tune } = createRequire(import.meta.url)(addonPath) as { tune: (...args: unknown[]) => boolean };
  for (const args of [[], [1], [1, 1], [-1, 1, 0], [1, 0, 0], [1, 1, -1], ['32M', 1, 0], [2 ** 40, 1, 0], [1, 1, 2 ** 40]]) {
    t.throws(() => tune(...args), RangeError, `tune(${args.map((a) => JSON.stringify(a)).join(', ')})`);
  }
  t.equal(tune(MALLOC_THRESHOLD_BYTES, MALLOC_THRESHOLD_BYTES, MALLOC_TOP_PAD_BYTES), true, 'the values the agent uses');
});

t.test("with the tuning, the detector's worker does not fault its memory in again at every inference", async (t) => {
  t.same(tuneMalloc(), { tuned: true });
  const frames = (await readFrames(defaultClip, { width: 768, height: 576, times: [2, 12, 22, 32], pixelFormat: 'yuv420p' })).map(
    (data, i) => ({ width: 768, height: 576, data, ts: i, format: 'yuv420p' as const }),
  );
  const detector = await openDetector({ threads: 1 });
  t.teardown(() => detector.close());
  const detect = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i += 2) await Promise.all([detector.detect(frames[i % 4]!), detector.detect(frames[(i + 1) % 4]!)]);
  };
  await detect(20);
  const before = process.resourceUsage().minorPageFault;
  const n = 120;
  await detect(n);
  const perFrame = (process.resourceUsage().minorPageFault - before) / n;
  // Each output (1.7 MB) faulted in anew is ~430 faults; with the thresholds alone the worker took 150-250 per
  // frame, with the top pad 1-6 (the whole process, main thread included, here).
  t.ok(perFrame < 60, `${perFrame.toFixed(1)} minor page faults per frame in the whole process (under 60)`);
});
