// Issue 18 item 7 (log part): passwords, tokens and keys inside URLs never reach a log line of the real agent.
import t from 'tap';
import { createServer } from 'node:net';
import { Writable } from 'node:stream';
import { collect, startMosquitto } from './helpers/mosquitto.js';
import { clipCamera, gatewayConfig, runCli, tempDir, writeConfig } from './helpers/agent.js';
import { createLogger, safeUrl, scrubSecrets } from '../src/log.js';

async function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

const secrets = ['urlPass9931', 'cfgPass4417', 'camSecret7720', 'tok3nValue'];

t.test('the running agent logs no password of the broker URL, mqtt.password or a camera URL', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const sub = await collect(broker.url, 'ept/#');
  t.teardown(() => sub.close());
  const dir = tempDir('redact');
  const port = await freePort();
  const mqttUrl = broker.url.replace('mqtt://', 'mqtt://edge:urlPass9931@');
  const config = gatewayConfig(dir, mqttUrl, [
    clipCamera('cam-locked', { source: { url: `rtsp://cam:camSecret7720@127.0.0.1:${port}/x?token=tok3nValue` } }),
    clipCamera('cam-good'),
  ]);
  (config.mqtt as Record<string, unknown>).username = 'edge';
  (config.mqtt as Record<string, unknown>).password = 'cfgPass4417';
  const file = writeConfig(dir, config);
  const agent = runCli(['run', '--config', file, '--log-level', 'debug']);
  t.teardown(() => agent.stop('SIGKILL'));
  await agent.waitForLog(/mqtt connected/, 90_000);
  await agent.waitForLog(/cam-locked: backoff[^\n]*(refused|Connection)/i, 60_000);
  await sub.waitFor((m) => m.some((x) => x.topic.includes('/event/')), 90_000);
  t.equal((await agent.stop('SIGTERM')).code, 0);

  const lines = agent.stderr().split('\n').filter(Boolean);
  t.ok(
    lines.some((l) => l.includes('cam-locked')),
    'lines naming the locked camera exist',
  );
  t.ok(
    lines.some((l) => l.includes('127.0.0.1') && l.includes('mqtt')),
    'lines naming the broker exist',
  );
  for (const s of secrets) {
    t.same(
      lines.filter((l) => l.includes(s)),
      [],
      `no log line holds ${s}`,
    );
  }
});

t.test('createLogger scrubs credentials in messages, error texts and any field', async (t) => {
  let out = '';
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out += chunk.toString();
      cb();
    },
  });
  const log = createLogger({ destination, level: 'debug' });
  log.info({ broker: 'mqtts://u:p4ss@h:8883' }, 'connecting to rtsp://admin:s3cret@10.0.0.2/s?token=abc&channel=1');
  log.error({ err: new Error('failed: https://x:k3y@h/?api_key=zz9&key=kk1') }, 'boom');
  log.info({ password: 'pw1', nested: { url: 'rtsp://a:b@c/d', key: '---BEGIN' } }, 'paths');
  for (const s of ['p4ss', 's3cret', 'abc', 'k3y', 'zz9', 'kk1', 'pw1', '---BEGIN', 'a:b@']) t.notMatch(out, s, `${s} is gone`);
  t.match(out, 'rtsp://***@10.0.0.2/s?token=***&channel=1', 'the rest of the URL stays');
  t.equal(scrubSecrets('tcp://127.0.0.1:1883'), 'tcp://127.0.0.1:1883', 'a URL without credentials is unchanged');
});

t.test('safeUrl: what a command shows of a URL has neither user:password nor a secret query parameter', async (t) => {
  t.equal(safeUrl('rtsp://admin:s3cret@192.0.2.10:554/stream1'), 'rtsp://***@192.0.2.10:554/stream1');
  t.equal(
    safeUrl('rtsps://192.0.2.10/live?channel=1&token=abc.def&subtype=0'),
    'rtsps://192.0.2.10/live?channel=1&token=***&subtype=0',
    'a token in the query goes, the other parameters stay',
  );
  t.equal(safeUrl('http://192.0.2.10/onvif/device_service'), 'http://192.0.2.10/onvif/device_service', 'nothing to hide: unchanged');
});
