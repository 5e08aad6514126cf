// The agent as a core plus components, against the real agent: real clip, ffmpeg, model, Mosquitto. Components get
// their context and the bus events at the edges of the frame path, start in order and stop in reverse before the
// core; a failing start names the component and leaves nothing running; a throwing listener hurts nobody else.
import { existsSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import mqtt from 'mqtt';
import t, { type Test } from 'tap';
import { z } from 'zod';
import { Agent, type AgentEvents, type Component, type ComponentContext } from '../src/agent/index.js';
import { EventBus } from '../src/agent/bus.js';
import { readStatus } from '../src/agent/stats.js';
import { defaultComponents, EvidenceRetention } from '../src/components/index.js';
import { loadConfig } from '../src/config/index.js';
import { createLogger } from '../src/log.js';
import { gatewayTopics } from '../src/common/topics.js';
import { clipCamera, ffmpegChildren, gatewayConfig, tempDir, until, writeConfig } from './helpers/agent.js';
import { startMosquitto } from './helpers/mosquitto.js';

/** A logger whose lines the test reads. */
function capturedLog(): { log: ReturnType<typeof createLogger>; lines: () => { msg: string; component?: string; event?: string }[] } {
  let text = '';
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  });
  return {
    log: createLogger({ level: 'info', destination }),
    lines: () =>
      text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l)),
  };
}

/** A component that records what it is given and what it sees, and notes its start and stop in `order`. */
class Probe implements Component {
  ctx: ComponentContext | undefined;
  readonly seen: { [K in keyof AgentEvents]: AgentEvents[K][] } = {
    'camera.state': [],
    'frame.detected': [],
    'rule.hit': [],
    'event.stored': [],
    'cameras.sampled': [],
    'message.received': [],
    'config.reloading': [],
    'config.reloaded': [],
    'request.answered': [],
  };
  /** Whether the outbox still answered when stop() ran. */
  outboxOpenAtStop = false;

  constructor(
    readonly name: string,
    private readonly order: string[],
  ) {}

  start(ctx: ComponentContext): void {
    this.order.push(`start ${this.name}`);
    this.ctx = ctx;
    for (const event of Object.keys(this.seen) as (keyof AgentEvents)[]) {
      ctx.bus.on(event, (p) => {
        (this.seen[event] as unknown[]).push(p);
      });
    }
  }

  stop(): void {
    this.order.push(`stop ${this.name}`);
    try {
      this.ctx!.outbox.stats();
      this.outboxOpenAtStop = true;
    } catch {
      /* closed: the core stopped first */
    }
  }
}

async function broker(t: Test): Promise<string> {
  const b = await startMosquitto();
  t.teardown(() => b.stop());
  return b.url;
}

t.test('the event bus: a throwing or rejecting listener is logged with its owner, the others still run', async (t) => {
  const { log, lines } = capturedLog();
  const bus = new EventBus<{ ping: number }>(log);
  const got: string[] = [];
  bus.on(
    'ping',
    () => {
      throw new Error('boom');
    },
    'first',
  );
  bus.on(
    'ping',
    async () => {
      throw new Error('later');
    },
    'second',
  );
  const off = bus.on(
    'ping',
    (n) => {
      got.push(`third ${n}`);
    },
    'third',
  );
  const scoped = bus.scoped('fourth');
  scoped.on('ping', (n) => {
    got.push(`fourth ${n}`);
  });
  t.ok(bus.listening('ping'));
  t.doesNotThrow(() => bus.emit('ping', 1), 'the emitter never sees a listener fail');
  await new Promise((r) => setImmediate(r));
  t.same(got, ['third 1', 'fourth 1']);
  t.match(
    lines()
      .filter((l) => l.event === 'ping')
      .map((l) => [l.component, l.msg]),
    [
      ['first', /^first: listener of ping failed: boom/],
      ['second', /^second: listener of ping failed: later/],
    ],
  );
  off();
  scoped.dispose();
  bus.emit('ping', 2);
  t.same(got, ['third 1', 'fourth 1'], 'unsubscribed and disposed listeners get nothing more');
});

t.test('components on the real agent: context, bus events of the frame path, order, retention', async (t) => {
  const url = await broker(t);
  const dir = tempDir('components');
  const config = loadConfig(writeConfig(dir, gatewayConfig(dir, url, [clipCamera('cam-a')])));
  // Evidence older than evidence.maxAgeDays (30): retention deletes it after the first stored event.
  const oldDay = join(config.gateway.dataDir, 'evidence', '2020-01-01');
  mkdirSync(oldDay, { recursive: true });
  const oldImage = join(oldDay, 'old-annotated.jpg');
  writeFileSync(oldImage, Buffer.alloc(1000));
  utimesSync(oldImage, new Date('2020-01-01'), new Date('2020-01-01'));

  const order: string[] = [];
  const first = new Probe('first', order);
  const broken: Component = {
    name: 'broken',
    start: (ctx) => {
      ctx.bus.on('camera.state', () => {
        throw new Error('listener bug');
      });
      order.push('start broken');
    },
    stop: () => {
      order.push('stop broken');
    },
  };
  const last = new Probe('last', order);
  const { log, lines } = capturedLog();
  const agent = await Agent.start({ config, log, components: [first, broken, new EvidenceRetention(), last] });
  t.teardown(() => agent.stop());
  t.same(order, ['start first', 'start broken', 'start last'], 'started in list order');

  const ctx = first.ctx!;
  t.equal(ctx.dataDir, join(dir, 'data'), 'ctx.dataDir: the resolved gateway.dataDir');
  t.equal(ctx.config, config);
  t.same(ctx.cameras.ids, ['cam-a']);
  t.match(ctx.version, /^\d+\.\d+\.\d+/);
  t.ok(ctx.startedAt <= Date.now());
  t.ok(ctx.outbox && ctx.uplink, 'the outbox and the uplink');

  await until('an event stored', () => last.seen['event.stored'].length > 0, 120_000);
  const states = first.seen['camera.state'];
  const firstTwo = states.slice(0, 2).map((s) => [s.cameraId, s.state]);
  t.same(
    firstTwo,
    [
      ['cam-a', 'connecting'],
      ['cam-a', 'streaming'],
    ],
    'connecting, then streaming',
  );
  const laterListener = last.seen['camera.state'].slice(0, 2).map((s) => s.state);
  t.same(laterListener, ['connecting', 'streaming'], 'a listener after the throwing one still gets it');
  const logged = lines().some((l) => l.component === 'broken' && /^broken: listener of camera\.state failed: listener bug/.test(l.msg));
  t.ok(logged, 'the throw is logged, naming the component');
  t.equal(agent.cameraStatus()[0]!.state, 'streaming', 'the camera goes on');

  const hit = first.seen['rule.hit'][0]!;
  t.equal(hit.cameraId, 'cam-a');
  t.equal(hit.hit.eventType, 'person_presence');
  const stored = last.seen['event.stored'][0]!;
  t.match(stored, { cameraId: 'cam-a', eventId: hit.hit.eventId, type: 'person_presence', state: hit.hit.state });
  const row = ctx.outbox.get(stored.seq);
  t.equal(row?.id, stored.messageId, 'event.stored names the outbox row: its seq and message id');
  await until('retention ran', () => !existsSync(oldImage), 10_000);
  t.notOk(existsSync(oldDay), 'the old evidence and its day folder are gone');

  await until('a rate window sampled', () => first.seen['cameras.sampled'].length > 0, 15_000);
  t.match(first.seen['cameras.sampled'][0]!.cameras, [{ id: 'cam-a' }]);

  t.ok(ffmpegChildren().length > 0, 'ffmpeg runs');
  await Promise.all([agent.stop(), agent.stop()]);
  await agent.stop();
  t.same(order.slice(3), ['stop last', 'stop broken', 'stop first'], 'stopped in reverse order, once, however often stop() is called');
  t.ok(first.outboxOpenAtStop && last.outboxOpenAtStop, 'components stop while the core still runs');
  t.same(ffmpegChildren(), [], 'no ffmpeg left');
  const before = first.seen['camera.state'].length;
  await new Promise((r) => setTimeout(r, 300));
  t.equal(first.seen['camera.state'].length, before, 'a stopped component hears nothing more');
});

t.test('a component whose start throws: the agent does not start, names it, and leaves nothing running', async (t) => {
  const url = await broker(t);
  const dir = tempDir('components-fail');
  const config = loadConfig(writeConfig(dir, gatewayConfig(dir, url, [clipCamera('cam-a')])));
  const order: string[] = [];
  const before = new Probe('before', order);
  let ffmpegWhileStarting = 0;
  const failing: Component = {
    name: 'failing',
    start: async (ctx) => {
      await until('the camera streams', () => ctx.cameras.status()[0]!.state === 'streaming', 60_000);
      ffmpegWhileStarting = ffmpegChildren().length;
      throw new Error('cannot open its port');
    },
    stop: () => {
      order.push('stop failing');
    },
  };
  const after = new Probe('after', order);
  await t.rejects(Agent.start({ config, log: createLogger({ level: 'silent' }), components: [before, failing, after] }), {
    message: /^component failing failed to start: cannot open its port/,
  });
  t.ok(ffmpegWhileStarting > 0, 'the cameras ran while components started');
  t.same(order, ['start before', 'stop before'], 'the started one stopped; the failing one undoes its own start; the rest never started');
  t.ok(before.outboxOpenAtStop, 'it stopped before the core');
  t.same(ffmpegChildren(), [], 'no ffmpeg left');
  t.throws(() => before.ctx!.outbox.stats(), 'the core stopped: its outbox is closed');
  t.equal(before.ctx!.uplink.status().connected, false, 'and its uplink disconnected');
});

t.test('the agent starts and stops twice in one process, with the default components', async (t) => {
  const url = await broker(t);
  const dir = tempDir('components-twice');
  const config = loadConfig(writeConfig(dir, gatewayConfig(dir, url, [clipCamera('cam-a')])));
  const statusFile = join(dir, 'data', 'status.json');
  for (const round of [1, 2]) {
    const order: string[] = [];
    const probe = new Probe('probe', order);
    const agent = await Agent.start({ config, log: createLogger({ level: 'silent' }), components: [...defaultComponents(), probe] });
    await until(`round ${round}: streaming`, () => probe.seen['camera.state'].some((s) => s.state === 'streaming'), 60_000);
    const startedAt = new Date(probe.ctx!.startedAt).toISOString();
    const written = (): boolean => existsSync(statusFile) && readStatus(join(dir, 'data')).startedAt === startedAt;
    await until(`round ${round}: its status file`, written, 15_000);
    await agent.stop();
    t.same(order, ['start probe', 'stop probe'], `round ${round}`);
    t.same(ffmpegChildren(), [], `round ${round}: no ffmpeg left`);
  }
});

t.test('a component subscribes through ctx.uplink; accepted messages reach the bus, bad ones do not', async (t) => {
  const url = await broker(t);
  const dir = tempDir('components-inbound');
  const config = loadConfig(writeConfig(dir, gatewayConfig(dir, url, [clipCamera('cam-a')])));
  const handled: unknown[] = [];
  const listener: Component = {
    name: 'pinger',
    start: (ctx) => {
      ctx.uplink.subscribe(gatewayTopics(config.mqtt.prefix, config.gateway.id).request('ping'), z.object({ n: z.number() }), (p) => {
        handled.push(p);
      });
    },
    stop: () => {},
  };
  const probe = new Probe('probe', []);
  const agent = await Agent.start({ config, log: createLogger({ level: 'silent' }), components: [listener, probe] });
  t.teardown(() => agent.stop());
  await until('connected', () => probe.ctx!.uplink.status().connected, 30_000);
  const client = await mqtt.connectAsync(url, { protocolVersion: 5 });
  t.teardown(() => client.endAsync());
  const topic = 'ept/gw-test-01/request/ping';
  await client.publishAsync(topic, '{"n":"not a number"}', { qos: 1 });
  await client.publishAsync(topic, '{"n":7}', { qos: 1 });
  await until('the good message handled', () => handled.length === 1, 10_000);
  t.same(handled, [{ n: 7 }]);
  t.same(probe.seen['message.received'], [{ topic, filter: topic, payload: { n: 7 } }], 'the bus hears the accepted message only');
  t.match(probe.ctx!.uplink.status().inbound, { rejected: 1 }, 'the bad one is counted');
});
