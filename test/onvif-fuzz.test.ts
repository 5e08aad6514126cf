// Issue 16 item 1: 500 mutated camera answers (seeded, reproducible). Every call ends in a result or an OnvifError
// within its timeout; nothing crashes, hangs, or expands an entity.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { OnvifDevice, OnvifError } from '../src/onvif/index.js';
import { type CorpusCase, corpus, type Op, startCorpusCamera } from './helpers/onvif-corpus.js';

const N = 500;
const TIMEOUT_MS = 800;
const passwdLine = readFileSync('/etc/passwd', 'utf8').split('\n')[0]!;

async function run(dev: OnvifDevice, op: Op): Promise<unknown> {
  switch (op) {
    case 'GetSystemDateAndTime':
      return dev.getSystemDateAndTime();
    case 'GetDeviceInformation':
      return dev.getDeviceInformation();
    case 'GetServices':
      return dev.getServices();
    case 'GetProfiles':
      return dev.getProfiles();
    case 'GetStreamUri':
      return dev.getStreamUri('Profile_1');
    case 'GetStatus':
      return dev.getStatus('Profile_1');
    case 'GetPresets':
      return dev.getPresets('Profile_1');
  }
}

t.test(`${N} mutated answers: results or OnvifErrors within the timeout, no crash, hang or entity expansion`, async (t) => {
  const crashes: unknown[] = [];
  const onCrash = (e: unknown): void => {
    crashes.push(e);
  };
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
  t.teardown(() => {
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onCrash);
  });
  let cases: CorpusCase[] = [];
  const cam = await startCorpusCamera(() => cases);
  t.teardown(() => cam.stop());
  cases = corpus(N, cam.port);
  const counts = { ok: 0, hang: 0, foreign: 0, slow: 0, expanded: 0 } as Record<string, number>;
  const byKind: Record<string, number> = {};
  const t0 = Date.now();
  const one = async (c: CorpusCase): Promise<void> => {
    const dev = new OnvifDevice({
      address: `http://127.0.0.1:${cam.port}/m/${c.index}/onvif/device_service`,
      user: 'admin',
      password: 'pw-fuzz-1',
      timeoutMs: TIMEOUT_MS,
    });
    const start = Date.now();
    let guard: NodeJS.Timeout | undefined;
    // A call may make up to four requests (clock, services, the op, a retry), each with its own deadline.
    const hang = new Promise<'hang'>((r) => {
      guard = setTimeout(() => r('hang'), 4 * TIMEOUT_MS + 3000);
    });
    const outcome = await Promise.race([
      run(dev, c.op).then(
        (v) => ({ v }),
        (e: unknown) => ({ e }),
      ),
      hang,
    ]);
    clearTimeout(guard);
    const ms = Date.now() - start;
    if (outcome === 'hang') counts.hang!++;
    else if ('e' in outcome) {
      if (outcome.e instanceof OnvifError) byKind[outcome.e.kind] = (byKind[outcome.e.kind] ?? 0) + 1;
      else {
        counts.foreign!++;
        t.fail(`case ${c.index} (${c.op}, ${c.kind}) threw a non-OnvifError: ${String(outcome.e)}`);
      }
      const msg = String((outcome.e as Error)?.message);
      if (msg.includes(passwdLine) || /(lol){20}/.test(msg)) counts.expanded!++;
    } else {
      counts.ok!++;
      const text = JSON.stringify(outcome.v);
      if (text.includes(passwdLine) || text.includes('root:') || /(lol){20}/.test(text)) {
        counts.expanded!++;
        t.fail(`case ${c.index} (${c.op}, ${c.kind}) expanded an entity`);
      }
    }
    if (ms > 4 * TIMEOUT_MS + 1500) counts.slow!++; // 1.5 s of slack: a shared 2-core machine schedules late
  };
  const queue = [...cases];
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      for (let c = queue.shift(); c; c = queue.shift()) await one(c);
    }),
  );
  const seconds = ((Date.now() - t0) / 1000).toFixed(1);
  t.comment(
    `results ${counts.ok}, errors ${JSON.stringify(byKind)}, hangs ${counts.hang}, crashes ${crashes.length}, entity expansions ${counts.expanded}, in ${seconds} s`,
  );
  t.equal(crashes.length, 0, 'no uncaught exception or unhandled rejection');
  t.equal(counts.hang, 0, 'no call without an answer');
  t.equal(counts.slow, 0, 'every call within its deadlines');
  t.equal(counts.foreign, 0, 'every failure is an OnvifError');
  t.equal(counts.expanded, 0, 'no entity expanded');
  t.equal(counts.ok! + Object.values(byKind).reduce((a, b) => a + b, 0), N, 'every case ended');
  t.ok((byKind.malformed ?? 0) > 100, 'most mutations are reported as malformed');
  t.ok(counts.ok! > 20, 'harmless mutations (extra copies, odd numbers) still give results');
});
