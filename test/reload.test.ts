// Reload on SIGHUP (issue 18 item 4): the real agent on the real clip with a real Mosquitto. A changed camera
// restarts (its open event ends with config_changed), the unchanged camera's open event carries on, an invalid
// config is refused, logged and reported in health while everything runs on.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { stringify } from 'yaml';
import { collect, startMosquitto, type Received } from './helpers/mosquitto.js';
import { clipCamera, gatewayConfig, runCli, tempDir, writeConfig } from './helpers/agent.js';

interface EventMsg {
  id: string;
  state: string;
  endReason?: string;
  camera: { id: string };
}
interface Health {
  config: {
    reloads: { applied: number; refused: number };
    lastReload: {
      result: string;
      error?: string;
      restarted: string[];
      unchanged: string[];
      added: string[];
      removed: string[];
      needsRestart: string[];
    } | null;
  };
  cameras: { id: string; framesIn: number }[];
}

/** Waits until `find` finds something in what `sub` received, and returns it. */
async function found<T>(
  sub: { messages: Received[]; waitFor(f: (m: Received[]) => boolean, ms: number): Promise<unknown> },
  find: (m: Received[]) => T | undefined,
  ms: number,
): Promise<T> {
  await sub.waitFor((m) => find(m) !== undefined, ms);
  return find(sub.messages)!;
}

const events = (msgs: Received[]): EventMsg[] =>
  msgs.filter((m) => m.topic.includes('/event/')).map((m) => JSON.parse(m.payload) as EventMsg);
const healths = (msgs: Received[]): Health[] =>
  msgs.filter((m) => m.topic === 'ept/gw-test-01/health').map((m) => JSON.parse(m.payload) as Health);

t.test('SIGHUP: the changed camera restarts, the unchanged one carries on, an invalid config is refused', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const sub = await collect(broker.url, 'ept/#');
  t.teardown(() => sub.close());
  const dir = tempDir('reload');
  const cameras = [clipCamera('cam-a'), clipCamera('cam-b')];
  const port = await new Promise<number>((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
  const first = { ...gatewayConfig(dir, broker.url, cameras), metrics: { listen: `127.0.0.1:${port}` } };
  const file = writeConfig(dir, first);
  const agent = runCli(['run', '--config', file]);
  t.teardown(() => agent.stop('SIGKILL'));

  const started = (camera: string, after = 0): EventMsg | undefined =>
    events(sub.messages.slice(after)).find((e) => e.camera.id === camera && e.state === 'started');
  await sub.waitFor(() => started('cam-a') !== undefined && started('cam-b') !== undefined, 120_000);
  const a = started('cam-a')!;
  const b = started('cam-b')!;

  // cam-b gets another detection rate, cam-a stays as it is; health's interval changes too (applies at start only).
  const second = {
    ...first,
    health: { intervalSeconds: 6 },
    cameras: [clipCamera('cam-a'), clipCamera('cam-b', { detect: { fps: 3, width: 640, height: 480 } })],
  };
  writeFileSync(file, stringify(second), { mode: 0o600 });
  const mark = sub.messages.length;
  agent.proc.kill('SIGHUP');
  await agent.waitForLog(/"msg":"config reloaded: restarted cam-b, 1 unchanged; health changed too/, 60_000);

  const endedB = await found(sub, (m) => events(m.slice(mark)).find((e) => e.id === b.id && e.state === 'ended'), 30_000);
  t.equal(endedB.endReason, 'config_changed', "cam-b's open event ended with config_changed");
  const newB = await found(sub, () => started('cam-b', mark), 60_000);
  t.not(newB.id, b.id, 'cam-b started a new event after its restart');

  // cam-a's event goes on: an update of the same event after the reload, and no end.
  const mark2 = sub.messages.length;
  await sub.waitFor((m) => events(m.slice(mark2)).some((e) => e.id === a.id && e.state === 'updated'), 30_000);
  t.notOk(
    events(sub.messages).some((e) => e.id === a.id && e.state === 'ended'),
    "cam-a's event was never ended: it carried on through the reload",
  );

  const applied = await found(sub, (m) => healths(m.slice(mark)).find((h) => h.config.lastReload?.result === 'applied'), 30_000);
  t.same(applied.config.reloads, { applied: 1, refused: 0 });
  t.match(applied.config.lastReload, { restarted: ['cam-b'], unchanged: ['cam-a'], added: [], removed: [], needsRestart: ['health'] });

  // An invalid config: refused, said in the log and in health; both cameras run on.
  const framesBefore = applied.cameras.find((c) => c.id === 'cam-a')!.framesIn;
  writeFileSync(file, stringify({ ...second, cameras: [clipCamera('cam-a', { detect: { fps: -1 } })] }), { mode: 0o600 });
  const mark3 = sub.messages.length;
  agent.proc.kill('SIGHUP');
  await agent.waitForLog(/config reload refused, the running config stays: [^"]*cameras\[0\]\.detect\.fps/, 30_000);
  const refused = await found(sub, (m) => healths(m.slice(mark3)).find((h) => h.config.lastReload?.result === 'refused'), 30_000);
  t.same(refused.config.reloads, { applied: 1, refused: 1 });
  t.match(
    refused.config.lastReload!.error,
    /gateway\.yaml: 1 config problem: cameras\[0\]\.detect\.fps/,
    'health names the file and the problem',
  );
  const mark4 = sub.messages.length;
  await sub.waitFor((m) => events(m.slice(mark4)).some((e) => e.id === a.id && e.state === 'updated'), 30_000);
  t.pass("cam-a's event still updates after the refused reload");
  const later = await found(
    sub,
    (m) => healths(m.slice(mark4)).find((h) => h.cameras.length === 2 && h.cameras.find((c) => c.id === 'cam-a')!.framesIn > framesBefore),
    30_000,
  );
  t.same(
    later.cameras.map((c) => c.id),
    ['cam-a', 'cam-b'],
    'both cameras still run',
  );

  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  t.match(metrics, /^edgepatrol_config_reloads_total\{result="applied"\} 1$/m, 'metrics: one reload applied');
  t.match(metrics, /^edgepatrol_config_reloads_total\{result="refused"\} 1$/m, 'metrics: one refused');

  const exit = await agent.stop('SIGTERM');
  t.same(exit, { code: 0, signal: null }, 'a clean exit afterwards');
});
