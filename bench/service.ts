/**
 * The agent as a systemd service, timed from outside as systemd sees it (issue 18): the real process on the demo
 * clip with a local Mosquitto and a unix datagram socket as NOTIFY_SOCKET (a python3 receiver: Node cannot bind
 * one). Per round:
 *  - start: spawn → READY=1;
 *  - reload: SIGHUP with one of two cameras changed → READY=1 after RELOADING=1 (and the agent's own durationMs);
 *  - hang: every ffmpeg of the agent SIGSTOPped → the last WATCHDOG=1; systemd restarts the agent WatchdogSec after
 *    the last ping, then RestartSec, then a start: printed for the unit's values (WatchdogSec=60, RestartSec=3);
 *  - stop: SIGTERM → exit.
 *
 *   node dist/bench/service.js [--rounds 3] [--watchdog-sec 4]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';

const root = resolve(import.meta.dirname, '..', '..');
const UNIT = { watchdogSec: 60, restartSec: 3 };

const RECEIVER = `
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print(json.dumps({"at": time.time() * 1000, "text": "bound"}), flush=True)
while True:
    d = s.recv(65536)
    print(json.dumps({"at": time.time() * 1000, "text": d.decode()}), flush=True)
`;

interface Datagram {
  at: number;
  text: string;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
}

async function until<T>(what: string, get: () => T | undefined, timeoutMs: number): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function descendants(pid: number, comm: string): number[] {
  const children = new Map<number, number[]>();
  const names = new Map<number, string>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      names.set(Number(name), stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch {
      /* exited meanwhile */
    }
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const c of children.get(p) ?? []) {
      if (names.get(c) === comm) out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

const camera = (id: string, fps: number) => ({
  id,
  source: { file: join(root, 'assets', 'vtest.avi'), loop: true },
  detect: { fps, width: 640, height: 480 },
  stallSeconds: 10,
  zones: [
    {
      id: 'all',
      polygon: [
        [0, 0.33],
        [1, 0.33],
        [1, 1],
        [0, 1],
      ],
      rules: [{ preset: 'street_vending' }],
    },
  ],
});

async function round(dir: string, mqttUrl: string, watchdogSec: number) {
  const socket = join(dir, `notify-${Date.now()}.sock`);
  const receiver = spawn('python3', ['-c', RECEIVER, socket], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  receiver.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const got = (): Datagram[] =>
    out
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Datagram);
  await until('the receiver', () => (got().length ? true : undefined), 10_000);
  const config = join(dir, 'gateway.yaml');
  const base = {
    gateway: { id: 'gw-bench', dataDir: join(dir, 'data') },
    mqtt: { url: mqttUrl, prefix: 'ept' },
    model: { threads: 1 },
    cameras: [camera('cam-a', 2), camera('cam-b', 2)],
  };
  writeFileSync(config, stringify(base));
  chmodSync(config, 0o600);
  let log = '';
  const t0 = Date.now();
  const agent: ChildProcess = spawn(process.execPath, [join(root, 'bin', 'edgepatrol.js'), 'run', '--config', config], {
    cwd: root,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, NOTIFY_SOCKET: socket, WATCHDOG_USEC: String(watchdogSec * 1_000_000) },
  });
  agent.stderr!.on('data', (d: Buffer) => {
    log += d.toString();
  });
  const exited = new Promise<number | null>((r) => agent.on('exit', (code) => r(code)));
  try {
    const ready = await until('READY=1', () => got().find((d) => d.text.startsWith('READY=1')), 120_000);
    const startMs = ready.at - t0;
    await until('2 watchdog pings', () => (got().filter((d) => d.text.startsWith('WATCHDOG=1')).length >= 2 ? true : undefined), 60_000);

    writeFileSync(config, stringify({ ...base, cameras: [camera('cam-a', 2), camera('cam-b', 3)] }));
    const n = got().length;
    const hupAt = Date.now();
    agent.kill('SIGHUP');
    const reloaded = await until(
      'READY=1 after SIGHUP',
      () =>
        got()
          .slice(n)
          .find((d) => d.text.startsWith('READY=1')),
      60_000,
    );
    const reloadMs = reloaded.at - hupAt;
    const agentReloadMs = Number(/"durationMs":(\d+)/.exec(log.slice(log.lastIndexOf('config reloaded') - 400))?.[1] ?? Number.NaN);

    await until('a ping after the reload', () => got().find((d) => d.at > reloaded.at && d.text.startsWith('WATCHDOG=1')), 30_000);
    const hangAt = Date.now();
    for (const pid of descendants(agent.pid!, 'ffmpeg')) process.kill(pid, 'SIGSTOP');
    // The last ping: none comes for two watchdog periods after it.
    await new Promise((r) => setTimeout(r, 2 * watchdogSec * 1000));
    const pings = got().filter((d) => d.text.startsWith('WATCHDOG=1'));
    const lastPingAfterHangMs = Math.max(0, pings.at(-1)!.at - hangAt);
    for (const pid of descendants(agent.pid!, 'ffmpeg')) process.kill(pid, 'SIGKILL');

    const termAt = Date.now();
    agent.kill('SIGTERM');
    const code = await exited;
    const stopMs = Date.now() - termAt;
    return { startMs, reloadMs, agentReloadMs, lastPingAfterHangMs, stopMs, code };
  } finally {
    agent.kill('SIGKILL');
    receiver.kill('SIGKILL');
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, 'watchdog-sec': { type: 'string', default: '4' } } });
  const rounds = Number(values.rounds);
  const watchdogSec = Number(values['watchdog-sec']);
  const dir = mkdtempSync(join(tmpdir(), 'edgepatrol-bench-service-'));
  const port = await freePort();
  writeFileSync(join(dir, 'mosquitto.conf'), `listener ${port} 127.0.0.1\nallow_anonymous true\n`);
  const broker = spawn('/usr/sbin/mosquitto', ['-c', join(dir, 'mosquitto.conf')], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 300));
  try {
    console.log(
      `rounds ${rounds}, watchdog ${watchdogSec} s here; restart time below for the unit's WatchdogSec=${UNIT.watchdogSec}, RestartSec=${UNIT.restartSec}`,
    );
    console.log('round  start→READY  SIGHUP→READY (agent)  hang→last ping  SIGTERM→exit  exit  hang→restarted (unit)');
    for (let i = 1; i <= rounds; i++) {
      rmSync(join(dir, 'data'), { recursive: true, force: true });
      const r = await round(dir, `mqtt://127.0.0.1:${port}`, watchdogSec);
      // systemd kills the agent WatchdogSec after the last ping, waits RestartSec, then the new one starts. The last
      // ping comes at most one check (WatchdogSec/2) after the hang: scaled from this run's interval.
      const lastPingUnit = (r.lastPingAfterHangMs / (watchdogSec * 1000)) * UNIT.watchdogSec * 1000;
      const restartMs = lastPingUnit + UNIT.watchdogSec * 1000 + UNIT.restartSec * 1000 + r.startMs;
      console.log(
        `${String(i).padEnd(6)} ${(r.startMs / 1000).toFixed(1).padStart(8)} s  ${(r.reloadMs / 1000).toFixed(2).padStart(8)} s (${r.agentReloadMs} ms)` +
          `  ${(r.lastPingAfterHangMs / 1000).toFixed(1).padStart(10)} s  ${(r.stopMs / 1000).toFixed(2).padStart(10)} s  ${String(r.code).padStart(4)}` +
          `  ${(restartMs / 1000).toFixed(0).padStart(10)} s`,
      );
    }
  } finally {
    broker.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
