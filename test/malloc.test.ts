import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { MALLOC_THRESHOLD_BYTES, MALLOC_TOP_PAD_BYTES, tuneMalloc } from '../src/vision/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const addonPath = join(here, '..', 'build', 'Release', 'malloc_tune.node');

function inFreshProcess(env: NodeJS.ProcessEnv): unknown {
  const r = spawnSync(process.execPath, ['--import', '@tapjs/typescript/import', join(here, 'fixtures', 'malloc-tuning.ts')],
    { encoding: 'utf8', env: { ...process.env, ...env } });
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
