// CPU pinning (native/sched.c, src/vision/affinity.ts): the split of the CPUs, a thread keeping itself to some,
// and the rest of the process moved off them and given them back.
import { readdirSync } from 'node:fs';
import { cpus as osCpus } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import t from 'tap';
import { projectRoot } from '../src/version.js';
import { allowedCpus, pinProcessThreads, pinThisThread, planCpus, schedAddon } from '../src/vision/affinity.js';

t.test('planCpus: the last CPUs for the inference, the rest for everything else, never all of them', async (t) => {
  t.same(planCpus([0, 1], 1), { ok: true, inference: [1], others: [0] });
  t.same(planCpus([3, 1, 2, 0, 2], 2), { ok: true, inference: [2, 3], others: [0, 1] }, 'sorted, duplicates once');
  t.same(planCpus([4, 9], 1), { ok: true, inference: [9], others: [4] }, 'a cpuset that is not 0..n-1');
  const one = planCpus([0], 1);
  t.equal(one.ok, false, 'one CPU is not split');
  t.match(!one.ok && one.reason, /1 CPU for 1 inference thread leaves none for decoding/);
  t.match(planCpus([0, 1], 2), { ok: false, reason: /2 CPUs for 2 inference threads/ });
  t.throws(() => planCpus([0, 1], 0), RangeError);
});

t.test('the addon refuses bad arguments with a RangeError', async (t) => {
  const sched = schedAddon();
  t.ok(sched.ok, `addon loads (${sched.ok ? 'ok' : sched.reason})`);
  if (!sched.ok) return;
  t.throws(() => sched.addon.setAffinity(0, []), RangeError, 'no CPUs');
  t.throws(() => sched.addon.setAffinity(0, [4096]), RangeError, 'CPU out of range');
  t.throws(() => sched.addon.setAffinity(-1, [0]), RangeError, 'negative thread id');
  t.throws(() => sched.addon.getAffinity(-1), RangeError);
  t.ok((sched.addon.getAffinity(2 ** 30) as number) < 0, 'a thread that does not exist: -errno');
});

const allowed = allowedCpus();
const plan = allowed.ok ? planCpus(allowed.cpus, 1) : undefined;
t.test(
  'a worker keeps itself to the inference CPU; the other threads move off it and get all CPUs back',
  { skip: plan?.ok ? false : `needs 2 CPUs (${osCpus().length} here)` },
  async (t) => {
    if (!allowed.ok || !plan?.ok) return;
    const sched = schedAddon();
    if (!sched.ok) return;
    const addonFile = join(projectRoot, 'build', 'Release', 'sched.node');
    // A worker like the detector's: it pins itself, reports its thread id, and waits.
    const worker = new Worker(
      `
    const { parentPort, workerData } = require('node:worker_threads');
    const sched = require(workerData.addonFile);
    parentPort.postMessage({ err: sched.setAffinity(0, workerData.cpus), tid: sched.threadId() });
    parentPort.on('message', () => process.exit(0));
  `,
      { eval: true, workerData: { addonFile, cpus: plan.inference } },
    );
    t.teardown(() => worker.terminate());
    const { err, tid } = await new Promise<{ err: number; tid: number }>((resolve) => worker.once('message', resolve));
    t.equal(err, 0, 'the worker pinned itself');
    t.same(sched.addon.getAffinity(tid), plan.inference, `worker thread ${tid} on CPU ${plan.inference}`);

    const threads = readdirSync('/proc/self/task').length;
    const moved = pinProcessThreads(plan.others, plan.inference);
    t.teardown(() => pinProcessThreads(allowed.cpus));
    t.equal(moved.kept, 1, 'the worker is kept where it is');
    t.equal(moved.failed, 0);
    t.ok(moved.moved >= threads - 2, `the other threads moved (${moved.moved} of ${threads})`);
    t.same(sched.addon.getAffinity(0), plan.others, 'this thread now runs on the other CPUs');
    t.same(sched.addon.getAffinity(tid), plan.inference, 'the worker still on its own');
    for (const name of readdirSync('/proc/self/task')) {
      const mask = sched.addon.getAffinity(Number(name));
      if (typeof mask === 'number' || Number(name) === tid) continue;
      t.same(mask, plan.others, `thread ${name} off the inference CPU`);
    }

    t.equal(pinThisThread(plan.inference), undefined, 'pinThisThread: no error');
    t.same(sched.addon.getAffinity(0), plan.inference);
    const back = pinProcessThreads(allowed.cpus);
    t.equal(back.failed, 0);
    t.same(sched.addon.getAffinity(0), allowed.cpus, 'all CPUs back');
    t.same(sched.addon.getAffinity(tid), allowed.cpus, 'the worker too');
  },
);

t.test('EDGEPATROL_CPU_PINNING=off leaves every thread where it is', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const script = `
    import { pinThisThread, allowedCpus } from ${JSON.stringify(join(projectRoot, 'src', 'vision', 'affinity.ts'))};
    console.log(JSON.stringify({ pin: pinThisThread([0]), allowed: allowedCpus() }));
  `;
  const run = spawnSync(process.execPath, ['--import', '@tapjs/typescript/import', '--input-type=module', '-e', script], {
    encoding: 'utf8',
    env: { ...process.env, EDGEPATROL_CPU_PINNING: 'off', TS_NODE_TRANSPILE_ONLY: '1' },
  });
  t.equal(run.status, 0, `exits 0 (stderr: ${run.stderr})`);
  const out = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as { pin: string; allowed: { ok: boolean; reason: string } };
  t.equal(out.pin, 'switched off by EDGEPATROL_CPU_PINNING=off', 'pinThisThread says why it did nothing');
  t.same(out.allowed, { ok: false, reason: 'switched off by EDGEPATROL_CPU_PINNING=off' }, 'no CPU split without the addon');
});

t.test(
  'the agent: its inference on a core of its own, ffmpeg and the rest on the others; all CPUs back after stop',
  { skip: plan?.ok ? false : `needs 2 CPUs (${osCpus().length} here)` },
  async (t) => {
    if (!allowed.ok || !plan?.ok) return;
    const sched = schedAddon();
    if (!sched.ok) return;
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { spawnSync } = await import('node:child_process');
    const { Agent } = await import('../src/agent/index.js');
    const { defaultComponents } = await import('../src/components/index.js');
    const { parseConfig } = await import('../src/config/index.js');
    const { createLogger } = await import('../src/log.js');
    const { defaultClip } = await import('./helpers/rtsp.js');
    const work = mkdtempSync(join(tmpdir(), 'edgepatrol-affinity-'));
    t.teardown(() => rmSync(work, { recursive: true, force: true }));
    const { startMosquitto } = await import('./helpers/mosquitto.js');
    const { default: mqtt } = await import('mqtt');
    const broker = await startMosquitto();
    t.teardown(() => broker.stop());
    const maskOf = (tid: number) => sched.addon.getAffinity(tid);
    const ffmpegs = () =>
      spawnSync('pgrep', ['-P', String(process.pid), '-x', 'ffmpeg'], { encoding: 'utf8' })
        .stdout.split('\n')
        .filter(Boolean)
        .map(Number);
    for (const pinCores of [true, false]) {
      const config = parseConfig(
        JSON.stringify({
          gateway: { id: 'gw-affinity', dataDir: join(work, `data-${pinCores}`) },
          mqtt: { url: broker.url },
          health: { intervalSeconds: 5 },
          model: { pinCores },
          cameras: [{ id: 'cam-1', source: { file: defaultClip, loop: true }, detect: { fps: 5, width: 384, height: 288 } }],
        }),
        join(work, 'gateway.yaml'),
      );
      const subscriber = await mqtt.connectAsync(broker.url);
      await subscriber.subscribeAsync('edgepatrol/gw-affinity/health');
      const health = new Promise<{ cpu: { cores: number } }>((resolve) =>
        subscriber.on('message', (_topic, payload, packet) => {
          // The first agent's message is retained: this agent's is the first one not flagged so.
          if (!packet.retain) resolve(JSON.parse(payload.toString()));
        }),
      );
      const agent = await Agent.start({ config, log: createLogger({ level: 'silent' }), components: defaultComponents() });
      let stopped = false;
      t.teardown(() => (stopped ? undefined : agent.stop()));
      for (const start = Date.now(); agent.cameraStatus()[0]!.totals.detected < 2 && Date.now() - start < 30_000; )
        await new Promise((r) => setTimeout(r, 100));
      t.ok(agent.cameraStatus()[0]!.totals.detected >= 2, `pinCores ${pinCores}: frames detected`);
      const masks = readdirSync('/proc/self/task')
        .map((tid) => maskOf(Number(tid)))
        .filter((m): m is number[] => typeof m !== 'number');
      const pids = ffmpegs();
      t.equal(pids.length, 1, 'one ffmpeg');
      if (pinCores) {
        t.equal(
          masks.filter((m) => String(m) === String(plan.inference)).length >= 1,
          true,
          `a thread (the inference worker) on CPU ${plan.inference} alone`,
        );
        t.same(maskOf(0), plan.others, `the main thread on CPU ${plan.others}`);
        for (const pid of pids) t.same(maskOf(pid), plan.others, `ffmpeg ${pid} on CPU ${plan.others}`);
        t.ok(
          masks.every((m) => String(m) === String(plan.inference) || String(m) === String(plan.others)),
          'every thread on one side or the other',
        );
      } else {
        t.ok(
          masks.every((m) => String(m) === String(allowed.cpus)),
          'pinCores false: every thread on all CPUs',
        );
        for (const pid of pids) t.same(maskOf(pid), allowed.cpus, 'ffmpeg on all CPUs');
      }
      // Its main thread now runs on fewer CPUs; the health message still counts those of the gateway.
      t.equal((await health).cpu.cores, allowed.cpus.length, `health: cpu.cores ${allowed.cpus.length}`);
      await subscriber.endAsync();
      await agent.stop();
      stopped = true;
      const after = readdirSync('/proc/self/task')
        .map((tid) => maskOf(Number(tid)))
        .filter((m): m is number[] => typeof m !== 'number');
      t.ok(
        after.every((m) => String(m) === String(allowed.cpus)),
        `after stop every thread of this process on CPU ${allowed.cpus} again`,
      );
    }
  },
);
