// sd_notify without libsystemd (native/notify.c, src/components/systemd.ts) against a real unix datagram socket: Node
// cannot bind one, so a python3 receiver does and prints each datagram as a JSON line. The agent runs as a real
// process on the real clip, ffmpeg, model and Mosquitto, with NOTIFY_SOCKET and WATCHDOG_USEC as systemd sets them.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { CameraStatus } from '../src/agent/stats.js';
import { frameProblems, notifyAddon } from '../src/components/index.js';
import type { FrameMarks } from '../src/components/systemd.js';
import type { StreamState } from '../src/ingest/index.js';
import { clipCamera, gatewayConfig, runCli, tempDir, until, writeConfig } from './helpers/agent.js';
import { startMosquitto } from './helpers/mosquitto.js';

interface Datagram {
  /** When the receiver got it, ms since the epoch. */
  at: number;
  text: string;
}

const RECEIVER = `
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
address = sys.argv[1]
s.bind("\\0" + address[1:] if address.startswith("@") else address)
print(json.dumps({"at": time.time() * 1000, "text": "bound"}), flush=True)
while True:
    d = s.recv(65536)
    print(json.dumps({"at": time.time() * 1000, "text": d.decode()}), flush=True)
`;

/** A python3 process bound to `address` (a path, or '@name' for an abstract socket, as in NOTIFY_SOCKET); what it received so far. */
async function receiver(t: Test, address: string): Promise<() => Datagram[]> {
  const proc = spawn('python3', ['-c', RECEIVER, address], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => {
    proc.kill('SIGKILL');
  });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const lines = (): Datagram[] =>
    out
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Datagram);
  await until('the python3 receiver bound its socket', () => lines().length > 0, 15_000, 50);
  return () => lines().slice(1);
}

/** Pids of the processes under `pid` (children, grandchildren, …) named `comm`, found through /proc. */
function descendants(pid: number, comm: string): number[] {
  const parent = new Map<number, { ppid: number; comm: string }>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(Number(name), { ppid, comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) });
    } catch {
      /* exited meanwhile */
    }
  }
  const under = (p: number): boolean => {
    for (let q = parent.get(p)?.ppid; q !== undefined && q > 1; q = parent.get(q)?.ppid) if (q === pid) return true;
    return false;
  };
  return [...parent].filter(([p, info]) => info.comm === comm && under(p)).map(([p]) => p);
}

const addon = notifyAddon();

t.test('the addon: a datagram to a path and to an abstract socket; a missing socket is -ENOENT', async (t) => {
  if (!addon.ok) throw new Error(`native/notify.c is not built (${addon.reason})`);
  const { notify } = addon.addon;
  const dir = tempDir('notify-addon');
  const path = join(dir, 'notify.sock');
  const atPath = await receiver(t, path);
  t.equal(notify(path, 'READY=1\nSTATUS=path'), 0, 'sent to a path socket');
  const abstract = `edgepatrol-notify-test-${process.pid}`;
  const atAbstract = await receiver(t, `@${abstract}`);
  t.equal(notify(`@${abstract}`, 'WATCHDOG=1'), 0, 'sent to an abstract socket named with a leading @');
  await until('both datagrams arrived', () => atPath().length === 1 && atAbstract().length === 1, 10_000, 50);
  t.equal(atPath()[0]!.text, 'READY=1\nSTATUS=path', 'the text arrives whole, newline and all');
  t.equal(atAbstract()[0]!.text, 'WATCHDOG=1', 'the abstract socket got its datagram');

  t.equal(notify(join(dir, 'missing.sock'), 'READY=1'), -constants.errno.ENOENT, 'a missing socket file: -ENOENT');
  t.equal(notify(`@edgepatrol-nobody-${process.pid}`, 'READY=1'), -constants.errno.ECONNREFUSED, 'an unbound abstract name');
  t.equal(notify('relative.sock', 'READY=1'), -constants.errno.EINVAL, 'a relative path is not a notify socket');
  t.equal(notify(`/${'a'.repeat(200)}`, 'READY=1'), -constants.errno.ENAMETOOLONG, 'a path longer than sun_path');
  t.throws(() => notify(1 as unknown as string, 'x'), TypeError, 'a non-string socket path throws');
});

t.test(
  'the agent under NOTIFY_SOCKET: READY=1 with STATUS, watchdog pings while frames move, none while they hang, RELOADING=1, STOPPING=1',
  async (t) => {
    const broker = await startMosquitto();
    t.teardown(() => broker.stop());
    const dir = tempDir('notify-agent');
    const socket = join(dir, 'notify.sock');
    const received = await receiver(t, socket);
    // stallSeconds 6 against 1 s checks: a stopped ffmpeg misses several checks before its stall watchdog acts.
    const config = writeConfig(dir, gatewayConfig(dir, broker.url, [clipCamera('cam-a', { stallSeconds: 6 })]));
    const intervalMs = 1000;
    const agent = runCli(['run', '--config', config], { NOTIFY_SOCKET: socket, WATCHDOG_USEC: String(intervalMs * 2000) });
    t.teardown(() => agent.stop('SIGKILL'));
    const texts = (prefix: string): Datagram[] => received().filter((d) => d.text.startsWith(prefix));

    await until('READY=1', () => texts('READY=1').length > 0, 90_000);
    t.equal(texts('READY=1').length, 1, 'READY=1 once');
    t.match(
      texts('READY=1')[0]!.text,
      /^READY=1\nSTATUS=[01]\/1 cameras streaming( \(cam-a \w+\))?, outbox pending \d+$/,
      'with a one-line STATUS',
    );
    t.match(agent.stderr(), /not above the stallSeconds of cam-a/, 'a watchdog interval below a stall period is logged');

    await until('4 watchdog pings', () => texts('WATCHDOG=1').length >= 4, 30_000, 50);
    const pings = texts('WATCHDOG=1');
    for (const p of pings)
      t.match(p.text, /^WATCHDOG=1\nSTATUS=1\/1 cameras streaming, outbox pending \d+$/, 'each ping with a fresh STATUS');
    const gaps = pings.slice(1).map((p, i) => p.at - pings[i]!.at);
    // The machine is shared, and the receiver's own clock reading can lag a ping: each gap loosely, their mean closely.
    const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
    t.ok(
      gaps.every((g) => g > intervalMs / 2 && g < intervalMs * 2) && mean >= intervalMs * 0.9 && mean < intervalMs * 1.5,
      `pings every WATCHDOG_USEC/2 = ${intervalMs} ms (gaps: ${gaps.map(Math.round).join(', ')} ms)`,
    );

    // The frame path hangs: ffmpeg stopped, so no frames, while the source stays 'streaming' until its stall watchdog
    // (6 s) kills and restarts ffmpeg.
    const ffmpeg = descendants(agent.proc.pid!, 'ffmpeg');
    t.ok(ffmpeg.length > 0, 'ffmpeg runs under the agent');
    const stoppedAt = Date.now();
    for (const pid of ffmpeg) process.kill(pid, 'SIGSTOP');
    await agent.waitForLog(/camera cam-a: stalled/, 30_000);
    const stalledAt = Date.now();
    const during = texts('WATCHDOG=1').filter((p) => p.at > stoppedAt + intervalMs && p.at < stalledAt);
    t.same(during, [], 'no watchdog ping while the frames hang (from one interval after the stop to the stall)');
    t.ok(stalledAt - stoppedAt > 3 * intervalMs, `several intervals passed without a ping (${stalledAt - stoppedAt} ms)`);
    t.match(agent.stderr(), /no systemd watchdog ping [^\n]*camera cam-a: streaming but no frame/, 'the warning names the camera');

    // The stall watchdog kills ffmpeg and restarts it: the camera is in a known state (stalled, backoff, connecting
    // within its stall period) or its frames move again, so the pings resume.
    await until('pings resume after the stall watchdog acted', () => texts('WATCHDOG=1').some((p) => p.at > stalledAt + 100), 30_000, 50);
    t.pass('pings resume once the stall watchdog has restarted ffmpeg');

    // A reload (ExecReload sends SIGHUP): RELOADING=1 with MONOTONIC_USEC, then READY=1 with the outcome.
    const beforeReload = received().length;
    agent.proc.kill('SIGHUP');
    await until(
      'READY=1 after the reload',
      () =>
        received()
          .slice(beforeReload)
          .some((d) => d.text.startsWith('READY=1')),
      20_000,
      50,
    );
    const reload = received()
      .slice(beforeReload)
      .filter((d) => !d.text.startsWith('WATCHDOG=1'));
    t.match(reload[0]?.text, /^RELOADING=1\nMONOTONIC_USEC=\d+\nSTATUS=reloading the config$/, 'RELOADING=1 first');
    t.match(
      reload[1]?.text,
      /^READY=1\nSTATUS=config reloaded; [01]\/1 cameras streaming( \(cam-a \w+\))?, outbox pending \d+$/,
      'then READY=1 with the outcome',
    );

    const before = received().length;
    const exit = await agent.stop('SIGTERM');
    t.same(exit, { code: 0, signal: null }, 'a clean exit on SIGTERM');
    await until('STOPPING=1', () => texts('STOPPING=1').length > 0, 10_000, 50);
    t.match(texts('STOPPING=1')[0]!.text, /^STOPPING=1/, 'STOPPING=1 on SIGTERM');
    t.ok(
      received()
        .slice(before)
        .every((d) => !d.text.startsWith('WATCHDOG=1')),
      'no ping after STOPPING=1',
    );
  },
);

t.test('without NOTIFY_SOCKET nothing is sent and nothing fails', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const dir = tempDir('notify-none');
  const received = await receiver(t, join(dir, 'notify.sock'));
  const config = writeConfig(dir, gatewayConfig(dir, broker.url, [clipCamera('cam-a')]));
  const agent = runCli(['run', '--config', config], { NOTIFY_SOCKET: undefined, WATCHDOG_USEC: '2000000' });
  t.teardown(() => agent.stop('SIGKILL'));
  await agent.waitForLog(/camera cam-a: streaming/, 90_000);
  // Three would-be ping intervals.
  await new Promise((r) => setTimeout(r, 3000));
  const exit = await agent.stop('SIGTERM');
  t.same(exit, { code: 0, signal: null }, 'a clean exit on SIGTERM');
  t.same(received(), [], 'nothing arrived');
  t.notMatch(agent.stderr(), /"component":"systemd"/, 'the systemd component logged nothing');
});

t.test('frameProblems: moved frames, known states, a connect past its stall period, a slow camera', async (t) => {
  const cam = (id: string, state: StreamState, framesIn: number, since = 0): CameraStatus =>
    ({ id, state, since: new Date(since).toISOString(), totals: { framesIn } }) as CameraStatus;
  const limits = new Map([
    ['fast', { stallMs: 10_000, frameMs: 500 }],
    ['slow', { stallMs: 10_000, frameMs: 20_000 }],
  ]);
  const marks: FrameMarks = new Map();
  t.same(
    frameProblems([cam('fast', 'streaming', 5), cam('slow', 'streaming', 1)], limits, marks, 0, 1000),
    [],
    'first sighting: a baseline',
  );
  t.same(
    frameProblems([cam('fast', 'streaming', 7), cam('slow', 'streaming', 1)], limits, marks, 1000, 1000),
    [],
    'moved; slow within 2 frames',
  );
  t.match(
    frameProblems([cam('fast', 'streaming', 7)], limits, marks, 2000, 1000),
    ['camera fast: streaming but no frame for 1.0 s'],
    'streaming without a new frame since the last check',
  );
  for (const state of ['stalled', 'backoff', 'failed', 'ended'] as const) {
    t.same(frameProblems([cam('fast', state, 7)], limits, marks, 3000, 1000), [], `${state}: known, not a hang`);
  }
  t.same(
    frameProblems([cam('fast', 'connecting', 7, 0)], limits, marks, 11_000, 1000),
    [],
    'connecting within stallSeconds + one interval',
  );
  t.match(frameProblems([cam('fast', 'connecting', 7, 0)], limits, marks, 11_001, 1000), [
    /camera fast: connecting for 11 s, past its stall period/,
  ]);
  t.match(frameProblems([cam('slow', 'streaming', 1)], limits, marks, 41_000, 1000), [/camera slow: streaming but no frame for 41\.0 s/]);
});
