import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { signTask } from '../src/common/signing.js';
import { readStatus } from '../src/agent/stats.js';
import { taskStatePayloadSchema, type TaskStatePayload } from '../src/tasks/index.js';
import { contractProblem } from '../src/cli/tail.js';
import { clipCamera, gatewayConfig, outboxRows, runCli, until, writeConfig, type RunningAgent } from './helpers/agent.js';
import { brokerFor, collect, tempDirFor, type Collector } from './helpers/mosquitto.js';

const base = 'ept/gw-test-01';

/** A seeded PRNG (mulberry32): the fuzz is the same on every run. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

t.test('task inbox against a real agent, broker and SQLite file', async (t) => {
  const broker = await brokerFor(t, { persistence: true });
  // A camera whose main stream accepts the connection and never answers: a snapshot of it runs ~5 s.
  const sockets = new Set<Socket>();
  const silent = createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });
  const silentPort = (silent.address() as { port: number }).port;

  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const other = generateKeyPairSync('ed25519').privateKey;
  const dir = tempDirFor(t, 'tasks');
  const dataDir = join(dir, 'data');
  const cfg = gatewayConfig(dir, broker.url, [
    clipCamera('cam1'),
    { id: 'slow', source: { url: `rtsp://127.0.0.1:${silentPort}/main` }, detect: { fps: 1, width: 320, height: 240 } },
  ]);
  const rawKey = publicKey.export({ format: 'jwk' }).x!;
  const config = writeConfig(dir, { ...cfg, tasks: { publicKey: Buffer.from(rawKey, 'base64url').toString('base64') } });
  const keyFile = join(dir, 'service.pem');
  writeFileSync(keyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }));

  const sub: Collector = await collect(broker.url, `${base}/task/+/state`, { session: `tasks-test-${process.pid}` });
  t.teardown(() => sub.close());

  let agent: RunningAgent = runCli(['run', '--config', config]);
  t.teardown(() => agent.stop('SIGKILL'));
  await agent.waitForLog(/agent started/, 60_000);
  // The tasks component subscribes once the core runs; its SUBACK follows within a moment.
  await new Promise((r) => setTimeout(r, 1000));

  /** A task's states as delivered: at least once, so a state sent again after a crash is known by its seq and dropped. */
  const states = (id: string): TaskStatePayload[] => {
    const seen = new Set<number>();
    return sub.messages
      .filter((m) => m.topic === `${base}/task/${id}/state`)
      .map((m) => taskStatePayloadSchema.parse(JSON.parse(m.payload)))
      .filter((s) => !seen.has(s.seq) && seen.add(s.seq));
  };
  const names = (id: string): string[] => states(id).map((s) => (s.reason ? `${s.state}:${s.reason}` : s.state));
  const waitState = (id: string, state: string, ms = 30_000) =>
    sub.waitFor(() => names(id).some((n) => n === state || n.startsWith(`${state}:`)), ms).then(() => states(id));
  const task = (id: string, fields: Record<string, unknown>, key: KeyObject | null = privateKey): Record<string, unknown> => {
    const body = { schema: 'edgepatrol.task/1', id, issuedAt: new Date().toISOString(), ...fields };
    return key ? signTask(body, key) : body;
  };
  const publish = async (id: string, payload: unknown): Promise<void> => {
    await sub.client.publishAsync(`${base}/task/${id}`, typeof payload === 'string' ? payload : JSON.stringify(payload), { qos: 1 });
  };

  await t.test('snapshot: accepted, running, succeeded with a real JPEG', async (t) => {
    await publish('snap-1', task('snap-1', { kind: 'snapshot', camera: 'cam1' }));
    const got = await waitState('snap-1', 'succeeded');
    t.same(names('snap-1'), ['accepted', 'running', 'succeeded']);
    t.same(
      got.map((s) => s.seq),
      [1, 2, 3],
      'seq rises per task',
    );
    const result = got[2]!.result as { file: string; sha256: string; width: number; height: number };
    const jpeg = readFileSync(join(dataDir, result.file));
    t.equal(jpeg.subarray(0, 2).toString('hex'), 'ffd8', 'a JPEG');
    t.equal(createHash('sha256').update(jpeg).digest('hex'), result.sha256, 'sha256 matches');
    t.ok(result.width > 0 && result.height > 0, `size ${result.width}x${result.height}`);
    for (const m of sub.messages) t.equal(contractProblem(m.topic, m.raw, m.properties), null, 'tail --check passes the state');
  });

  await t.test('a duplicate delivery runs once; the same task after it ended is a replay', async (t) => {
    const body = task('dup-1', { kind: 'snapshot', camera: 'cam1' });
    await publish('dup-1', body);
    await publish('dup-1', body);
    await waitState('dup-1', 'succeeded');
    await publish('snap-1', bodyOf('snap-1'));
    await waitState('snap-1', 'rejected');
    t.same(names('dup-1'), ['accepted', 'running', 'succeeded'], 'one accepted, run once');
    t.same(names('snap-1').slice(3), ['rejected:replay']);
    await publish('dup-1', task('dup-1', { kind: 'snapshot', camera: 'slow' }));
    await sub.waitFor(() => names('dup-1').includes('rejected:duplicate_id'));
    t.pass('a different payload under a known id: duplicate_id');
  });

  // The payload snap-1 was sent with, read back from the inbox (it is stored canonical).
  function bodyOf(id: string): unknown {
    const db = new Database(join(dataDir, 'outbox.db'), { readonly: true });
    try {
      return JSON.parse((db.prepare('SELECT payload FROM tasks WHERE id = ?').get(id) as { payload: string }).payload);
    } finally {
      db.close();
    }
  }

  await t.test('cancel: a queued task is canceled, a finished one cannot be', async (t) => {
    await publish('q-1', task('q-1', { kind: 'snapshot', camera: 'slow' }));
    await publish('q-2', task('q-2', { kind: 'snapshot', camera: 'slow' }));
    await publish('c-1', task('c-1', { kind: 'cancel', target: 'q-2' }));
    await waitState('c-1', 'succeeded');
    await waitState('q-2', 'canceled');
    t.same(names('q-2'), ['accepted', 'canceled:canceled']);
    await publish('c-2', task('c-2', { kind: 'cancel', target: 'snap-1' }));
    await waitState('c-2', 'failed');
    t.same(names('c-2'), ['accepted', 'running', 'failed:not_cancelable']);
    await waitState('q-1', 'failed', 30_000);
    t.same(names('q-1'), ['accepted', 'running', 'failed:capture_failed'], 'the silent camera gives no frame');
  });

  await t.test('expired, bad, unsupported, unsigned, badly signed and stale tasks are rejected', async (t) => {
    await publish('exp-1', task('exp-1', { kind: 'snapshot', camera: 'cam1', expiresAt: new Date(Date.now() - 1000).toISOString() }));
    await publish('bad-1', task('bad-1', { kind: 'snapshot' }));
    await publish('bad-2', task('other-id', { kind: 'snapshot', camera: 'cam1' }));
    await publish('pat-1', task('pat-1', { kind: 'patrol', camera: 'cam1', stops: [{ preset: 'a' }] }));
    await publish('uns-1', task('uns-1', { kind: 'snapshot', camera: 'cam1' }, null));
    await publish('sig-1', task('sig-1', { kind: 'snapshot', camera: 'cam1' }, other));
    const tampered = { ...task('sig-2', { kind: 'snapshot', camera: 'cam1' }), camera: 'slow' };
    await publish('sig-2', tampered);
    await publish('old-1', task('old-1', { kind: 'snapshot', camera: 'cam1', issuedAt: new Date(Date.now() - 3600_000).toISOString() }));
    const expect: Record<string, string> = {
      'exp-1': 'expired:expired',
      'bad-1': 'rejected:bad_task',
      'bad-2': 'rejected:bad_task',
      'pat-1': 'rejected:not_ptz',
      'uns-1': 'rejected:unsigned',
      'sig-1': 'rejected:bad_signature',
      'sig-2': 'rejected:bad_signature',
      'old-1': 'rejected:stale',
    };
    await sub.waitFor(() => Object.keys(expect).every((id) => names(id).length > 0));
    for (const [id, want] of Object.entries(expect)) t.same(names(id), [want], `${id}: ${want}`);
    t.match(states('bad-1')[0]!.detail, /camera/, 'the zod message names the missing field');
    t.match(states('bad-2')[0]!.detail, /not the topic's task id/);
  });

  await t.test('broker down while a task runs: its states arrive in order afterwards', async (t) => {
    await publish('out-1', task('out-1', { kind: 'snapshot', camera: 'slow' }));
    await waitState('out-1', 'running');
    await broker.stop();
    await new Promise((r) => setTimeout(r, 7000));
    await broker.restart();
    await waitState('out-1', 'failed', 60_000);
    t.same(
      states('out-1').map((s) => s.seq),
      [1, 2, 3],
    );
    t.same(names('out-1'), ['accepted', 'running', 'failed:capture_failed']);
  });

  await t.test('SIGKILL while a task runs: failed interrupted after the restart', async (t) => {
    await publish('kill-1', task('kill-1', { kind: 'snapshot', camera: 'slow' }));
    await waitState('kill-1', 'running');
    await agent.stop('SIGKILL');
    // Sent while the agent is down: it waits in the agent's persistent session and runs after the restart.
    await publish('off-1', task('off-1', { kind: 'snapshot', camera: 'cam1' }));
    agent = runCli(['run', '--config', config]);
    await waitState('kill-1', 'failed', 60_000);
    t.same(names('kill-1'), ['accepted', 'running', 'failed:interrupted']);
    t.same(
      states('kill-1').map((s) => s.seq),
      [1, 2, 3],
    );
    const raw = sub.messages
      .filter((m) => m.topic === `${base}/task/kill-1/state`)
      .map((m) => (JSON.parse(m.payload) as { seq: number }).seq);
    t.ok(
      raw.every((seq, i) => i === 0 || seq >= raw[i - 1]! || seq === 1),
      `a state may come again after the crash, never a later one before an earlier: ${raw}`,
    );
    await waitState('off-1', 'succeeded', 60_000);
    t.same(names('off-1'), ['accepted', 'running', 'succeeded'], 'a task sent while the agent was down is not lost');
  });

  await t.test('task send prints the states and exits 0; task list reads the inbox', async (t) => {
    const file = join(dir, 'snap.json');
    writeFileSync(file, JSON.stringify({ id: 'cli-1', kind: 'snapshot', camera: 'cam1' }));
    const send = runCli(['task', 'send', 'gw-test-01', file, '--url', broker.url, '--prefix', 'ept', '--key', keyFile, '--timeout', '60']);
    const { code } = await send.exited;
    t.equal(code, 0, send.stderr());
    t.match(send.stdout(), /cli-1 #1 accepted\ncli-1 #2 running\ncli-1 #3 succeeded/);
    const unsigned = runCli(['task', 'send', 'gw-test-01', file, '--url', broker.url, '--prefix', 'ept', '--timeout', '60']);
    t.equal((await unsigned.exited).code, 10, 'a rejected task: exit 10');
    const list = runCli(['task', 'list', '--config', config, '--json', '--limit', '1000']);
    t.equal((await list.exited).code, 0, list.stderr());
    const rows = list
      .stdout()
      .trim()
      .split('\n')
      .map((l: string) => JSON.parse(l) as { id: string; state: string; reason: string | null });
    t.match(
      rows.find((r) => r.id === 'kill-1'),
      { state: 'failed', reason: 'interrupted' },
    );
    t.match(
      rows.find((r) => r.id === 'cli-1'),
      { state: 'succeeded' },
    );
  });

  await t.test('1,000 fuzzed tasks: each rejected or counted, the agent keeps streaming and loses no event', async (t) => {
    const framesBefore = readStatus(dataDir).cameras.find((c) => c.id === 'cam1')!.totals.framesIn;
    const eventsBefore = outboxRows(dataDir).filter((r) => r.camera_id === 'cam1').length;
    const rand = prng(17);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const garbage = (): unknown =>
      pick([
        () => null,
        () => 42,
        () => 'text',
        () => [1, 2],
        () => ({ a: { b: [null] } }),
        () => 'x'.repeat(Math.floor(rand() * 200_000)),
      ])();
    let json = 0;
    let notJson = 0;
    const ids: string[] = [];
    for (let i = 0; i < 1000; i++) {
      const id = `fz-${i}`;
      const body: Record<string, unknown> = {
        schema: rand() < 0.9 ? 'edgepatrol.task/1' : garbage(),
        id: rand() < 0.9 ? id : pick([`fz-${i + 1}`, '', 'a/b', garbage()]),
        kind: pick(['patrol', 'verify', 'snapshot', 'config', 'cancel', 'reboot', garbage()]),
        issuedAt: rand() < 0.8 ? new Date().toISOString() : garbage(),
      };
      if (rand() < 0.5) body.camera = pick(['cam1', 'nope', garbage()]);
      if (rand() < 0.3) body.target = pick(['fz-0', 'snap-1', garbage()]);
      if (rand() < 0.2) body.extra = garbage();
      if (rand() < 0.3) body.expiresAt = pick([new Date(Date.now() - 5000).toISOString(), 'soon', garbage()]);
      if (rand() < 0.2) body.signature = pick(['AAAA', 'not base64!', 'x'.repeat(88)]);
      let payload: string;
      if (rand() < 0.1) {
        payload = pick(['{', 'not json', '\u0000\u0001', '{"id": }']);
        notJson++;
      } else {
        // Unsigned tasks are rejected on this gateway, so a well-formed snapshot never runs: the fuzz only rejects.
        payload = JSON.stringify(body);
        json++;
        ids.push(id);
      }
      await publish(id, payload);
    }
    await sub.waitFor(() => ids.every((id) => names(id).length > 0), 90_000);
    const finals = ids.map((id) => states(id)[0]!);
    t.ok(
      finals.every((s) => s.state === 'rejected' || s.state === 'expired'),
      `${json} JSON tasks each rejected or expired`,
    );
    t.ok(
      ids.every((id) => names(id).length === 1),
      'one state each',
    );
    await until(
      'the non-JSON messages are logged',
      () => (agent.stderr().match(/task\/fz-\d+: not JSON/g) ?? []).length >= notJson,
      10_000,
    );
    t.equal(agent.proc.exitCode, null, 'the agent is still up');
    await until(
      'cam1 keeps streaming',
      () => readStatus(dataDir).cameras.find((c) => c.id === 'cam1')!.totals.framesIn > framesBefore,
      30_000,
    );
    const events = outboxRows(dataDir).filter((r) => r.camera_id === 'cam1');
    t.ok(events.length >= eventsBefore, 'no event row lost');
    const db = new Database(join(dataDir, 'outbox.db'), { readonly: true });
    t.same(db.prepare("SELECT count(*) AS n FROM drops WHERE what = 'event'").get(), { n: 0 }, 'nothing dropped');
    db.close();
    t.ok(existsSync(join(dataDir, 'outbox.db')));
  });
});
