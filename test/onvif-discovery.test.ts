// Issue 16 item 1: WS-Discovery over real UDP sockets: unicast on loopback, multicast inside a network namespace.
import t from 'tap';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { discover, OnvifError, parseProbeMatches } from '../src/onvif/index.js';
import { fixture } from './helpers/onvif-answers.js';
import { MUTATIONS, mutate, prng } from './helpers/onvif-mutate.js';
import { startResponder } from './helpers/onvif-responder.js';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));

const hikvision = {
  endpoint: 'urn:uuid:4d454930-0000-1000-8000-bcbac2a1b2c3',
  address: '127.0.0.1',
  xaddrs: [
    'http://127.0.0.1:8000/onvif/device_service',
    'http://[fe80::bab:c2ff:fea1:b2c3]/onvif/device_service',
    'http://169.254.7.9/onvif/device_service',
  ],
  port: 8000,
  name: 'HIKVISION DS-2DE4425IW-DE',
  manufacturer: 'Hikvision',
  model: 'DS-2DE4425IW-DE',
  location: 'city/Main Street & 5th',
};

t.test('ProbeMatches: several XAddrs, URL-decoded scopes, default namespaces, garbage ignored', async (t) => {
  const fill = (s: string) =>
    s
      .replace(/\{\{ADDRESS\}\}/g, '127.0.0.1')
      .replace(/\{\{PORT\}\}/g, '8000')
      .replace(/\{\{RELATES_TO\}\}/g, 'urn:uuid:x');
  const [hik] = parseProbeMatches(fill(fixture('ProbeMatches.several-xaddrs.xml')), '127.0.0.1');
  t.match(hik, hikvision);
  t.same(hik!.types, ['dn:NetworkVideoTransmitter', 'tds:Device']);
  const [cheap] = parseProbeMatches(fill(fixture('ProbeMatches.noname.xml')), '127.0.0.1');
  t.match(cheap, {
    endpoint: 'urn:uuid:00000000-cafe-0000-0000-000000000002',
    manufacturer: 'IPC',
    name: 'IPCAM',
    model: 'HI3518E',
    port: 8899,
  });
  const badAddr = fill(fixture('ProbeMatches.noname.xml')).replace(
    'http://127.0.0.1:8899/onvif/device_service',
    'http://[zz/x http://127.0.0.1:8899/ok',
  );
  t.same(parseProbeMatches(badAddr, '127.0.0.1')[0]?.xaddrs, ['http://127.0.0.1:8899/ok'], 'an XAddr that is not a URL is dropped');
  for (const junk of ['', '<a', '<!DOCTYPE x [<!ENTITY e "e">]><x/>', '<Envelope/>', fixture('GetDeviceInformation.axis.xml')]) {
    t.same(parseProbeMatches(junk, '127.0.0.1'), [], `ignored: ${junk.slice(0, 30)}`);
  }
});

t.test('200 mutated ProbeMatches never throw and never expand an entity', async (t) => {
  const rnd = prng(16);
  const good = fixture('ProbeMatches.several-xaddrs.xml').replace(/\{\{\w+\}\}/g, '8000');
  let found = 0;
  for (let i = 0; i < 200; i++) {
    const kind = MUTATIONS[i % MUTATIONS.length]!;
    const reply = mutate(good, rnd, kind).reply;
    const text = typeof reply === 'object' && 'body' in reply && typeof reply.body === 'string' ? reply.body : good.slice(0, i);
    const out = parseProbeMatches(text.slice(0, 2 * 1024 * 1024), '127.0.0.1');
    found += out.length;
    if (/root:|(lol){20}/.test(JSON.stringify(out))) t.fail(`case ${i} (${kind}) expanded an entity`);
  }
  t.ok(found > 0 && found < 200, `some mutations still parse (${found}), most do not`);
});

t.test('unicast probe to one host: answers collected until the timeout, deduplicated by EndpointReference', async (t) => {
  const responder = await startResponder({ answers: ['ProbeMatches.several-xaddrs.xml', 'ProbeMatches.noname.xml'], repeat: 3 });
  t.teardown(() => responder.close());
  const t0 = Date.now();
  const found = await discover({ host: '127.0.0.1', port: responder.port, timeoutMs: 400 });
  const ms = Date.now() - t0;
  t.ok(ms >= 380 && ms < 1000, `returned after the timeout (${ms} ms)`);
  t.equal(found.length, 2, 'two cameras, each answered 3 times to 2 probes');
  t.match(
    found.find((c) => c.manufacturer === 'Hikvision'),
    hikvision,
  );
  t.equal(responder.probes.length, 2, 'one probe for NetworkVideoTransmitter, one for Device');
  t.match(responder.probes[0], /<d:Types>dn:NetworkVideoTransmitter<\/d:Types>/);
  t.match(responder.probes[1], /<d:Types>tds:Device<\/d:Types>/);
});

t.test('an unknown interface is a clear error', async (t) => {
  const err = await discover({ interface: 'nosuch0', timeoutMs: 100 }).catch((e: unknown) => e);
  t.ok(err instanceof OnvifError);
  t.match((err as OnvifError).message, /network interface "nosuch0" has no IPv4 address or does not exist \(available: .*lo/);
});

t.test('multicast probe from interface lo inside a network namespace', async (t) => {
  const ns = `epclient${process.pid}`;
  try {
    await run('ip', ['netns', 'add', ns]);
  } catch (err) {
    t.plan(0, `cannot create a network namespace (needs root): ${(err as Error).message.split('\n')[0]}`);
    return;
  }
  t.teardown(() => run('ip', ['netns', 'delete', ns]).then(() => undefined));
  await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  await run('ip', ['-n', ns, 'link', 'set', 'lo', 'multicast', 'on']);
  await run('ip', ['-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'lo']);
  const { stdout } = await run(
    'ip',
    ['netns', 'exec', ns, process.execPath, '--import', '@tapjs/typescript/import', join(here, 'fixtures', 'onvif-multicast-probe.ts')],
    { cwd: join(here, '..'), timeout: 30_000 },
  );
  const { probes, found } = JSON.parse(stdout.trim().split('\n').at(-1)!) as { probes: number; found: { manufacturer?: string }[] };
  t.equal(probes, 2, 'the responder in the group received both probes');
  t.same(found.map((c) => c.manufacturer).sort(), ['Hikvision', 'IPC']);
  t.match(
    found.find((c) => c.manufacturer === 'Hikvision'),
    hikvision,
  );
});
