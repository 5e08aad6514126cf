import t from 'tap';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import {
  parseConfig,
  loadConfig,
  ConfigError,
  formatConfigError,
  checkClasses,
  renderConfigJsonSchema,
  configJsonSchema,
  type ConfigIssue,
} from '../src/config/index.js';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));

const minimal = `
gateway: { id: gw-demo-01 }
mqtt: { url: mqtt://127.0.0.1:1883 }
cameras:
  - id: cam-01
    source: { file: ./clip.avi }
    zones:
      - id: walkway
        polygon: [[0.1,0.5],[0.9,0.5],[0.9,1],[0.1,1]]
        rules:
          - { kind: presence, type: street_vending, classes: [person] }
          - { kind: dwell, type: fire_lane_parking, classes: [car, truck], seconds: 30 }
`;

/** Parses text expected to be invalid and returns its issues. */
function issuesOf(text: string, file = '/etc/edgepatrol/gateway.yaml'): ConfigIssue[] {
  try {
    parseConfig(text, file);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

function issueAt(issues: ConfigIssue[], path: string): ConfigIssue | undefined {
  return issues.find((i) => i.path === path);
}

t.test('a minimal config gets every default', async (t) => {
  const cfg = parseConfig(minimal, '/srv/gw/gateway.yaml');
  t.same(cfg.gateway, { id: 'gw-demo-01', dataDir: '/var/lib/edgepatrol', timezone: 'UTC' });
  t.same(cfg.mqtt, {
    url: 'mqtt://127.0.0.1:1883',
    prefix: 'edgepatrol',
    clientId: 'edgepatrol-gw-demo-01',
    delivery: 'broker',
    sessionExpirySeconds: 604800,
    reconnect: { initialMs: 1000, maxMs: 60000 },
  });
  t.same(cfg.model, { threads: 1, scoreThreshold: 0.35, queueDepth: 3, pinCores: true });
  t.same(cfg.evidence, { jpegQuality: 80, maxBytes: 2_000_000_000, maxAgeDays: 30, minFreeBytes: 268_435_456 });
  const cam = cfg.cameras[0]!;
  t.equal(cam.name, 'cam-01');
  t.same(cam.source, { file: '/srv/gw/clip.avi', loop: false }, 'relative file resolved against the config folder');
  t.same(cam.detect, { fps: 2, width: 640, height: 480 });
  t.equal(cam.stallSeconds, 10);
  t.same(cam.motion, { enabled: true, threshold: 25, minArea: 0.002, backgroundSeconds: 10, refreshSeconds: 5, masks: [] });
  t.equal(cam.timezone, 'UTC', 'the gateway time zone unless the camera has its own');
  t.same(cam.zones[0]!.masks, []);
  const lifecycle = { priority: 'normal', updateMinutes: 10, endSeconds: 10 };
  t.same(cam.zones[0]!.rules, [
    {
      kind: 'presence',
      id: 'street_vending',
      type: 'street_vending',
      classes: ['person'],
      minScore: 0.5,
      minBoxArea: 0,
      cooldownSeconds: 60,
      ...lifecycle,
    },
    {
      kind: 'dwell',
      id: 'fire_lane_parking',
      type: 'fire_lane_parking',
      classes: ['car', 'truck'],
      seconds: 30,
      minScore: 0.5,
      minBoxArea: 0,
      maxMovement: 0.05,
      cooldownSeconds: 300,
      ...lifecycle,
    },
  ]);
});

t.test('the reference example loads, and a loaded config is itself a valid config', async (t) => {
  const file = join(root, 'examples/gateway.yaml');
  const cfg = parseConfig(readFileSync(file, 'utf8'), file);
  t.equal(cfg.cameras.length, 3);
  t.equal(cfg.gateway.timezone, 'Asia/Shanghai');
  t.same(cfg.mqtt.tls, {
    ca: '/etc/edgepatrol/tls/ca.pem',
    cert: '/etc/edgepatrol/tls/gateway.pem',
    key: '/etc/edgepatrol/tls/gateway.key',
    rejectUnauthorized: true,
  });
  t.same(cfg.cameras[2]!.source, { file: join(root, 'assets/vtest.avi'), loop: true });
  t.equal(cfg.cameras[0]!.zones[0]!.rules[0]!.id, 'vendors');
  t.same(parseConfig(YAML.stringify(cfg), file), cfg, 'round trip: output is valid input');
});

t.test('an invalid file lists every problem with its path and line', async (t) => {
  const issues = issuesOf(`gateway: { id: gw-1 }
mqtt: { url: mqtt://127.0.0.1:1883, prefx: a }
cameras:
  - id: cam-01
    source: { url: rtsp://10.0.0.2/s, file: ./x.avi }
    zones:
      - id: z1
        polygon: [[0.1, 0.5], [1.2, 0.5], [0.9, 1]]
      - id: z2
        polygon: [[0, 0], [1, 1], [1, 0], [0, 1]]
      - id: z1
        polygon: [[0, 0], [1, 0]]
  - id: cam-01
    stall_seconds: 3
  - id: cam-03
    source: { url: http://10.0.0.3/s }
    zones:
      - id: z
        polygon: [[0, 0], [1, 0], [1, 1]]
        rules:
          - { kind: dwell, type: Fire-Lane, classes: [car] }
`);
  const expected: Record<string, RegExp> = {
    'mqtt.prefx': /unknown key \(did you mean 'prefix'\?\); allowed here: url, prefix/,
    'cameras[0].source': /both url and file; expected exactly one/,
    'cameras[0].zones[0].polygon[1][0]': /x must be between 0 and 1/,
    'cameras[0].zones[1].polygon': /crosses itself: the edge from point 0 to point 1 meets the edge from point 2 to point 3/,
    'cameras[0].zones[2].id': /duplicate zone id 'z1'/,
    'cameras[0].zones[2].polygon': /needs at least 3 points/,
    'cameras[1].id': /duplicate camera id 'cam-01'/,
    'cameras[1].source': /missing; every camera needs a source/,
    'cameras[1].stall_seconds': /unknown key \(did you mean 'stallSeconds'\?\)/,
    'cameras[2].source.url': /unsupported scheme 'http:'; expected rtsp:\/\/, rtsps:\/\//,
    'cameras[2].zones[0].rules[0].type': /snake_case/,
    'cameras[2].zones[0].rules[0].seconds': /missing; expected a number/,
  };
  for (const [path, msg] of Object.entries(expected)) t.match(issueAt(issues, path)?.message, msg, path);
  t.same(issues.map((i) => i.path).sort(), Object.keys(expected).sort(), 'no other issues');
  t.equal(issueAt(issues, 'cameras[0].zones[0].polygon[1][0]')?.line, 8);
  t.equal(issueAt(issues, 'cameras[1].stall_seconds')?.line, 14);
  t.equal(issueAt(issues, 'cameras[1].source')?.line, 13, 'a missing key points at its parent');
});

t.test('URL schemes, ids, lat/lon pairing, mqtt auth and tls consistency', async (t) => {
  const base = YAML.parse(minimal);
  // biome-ignore lint/suspicious/noExplicitAny: the edits reach anywhere into a parsed YAML document
  const variant = (edit: (c: any) => void): ConfigIssue[] => {
    const c = structuredClone(base);
    edit(c);
    return issuesOf(YAML.stringify(c));
  };
  t.match(
    issueAt(
      variant((c) => {
        c.mqtt.url = 'http://broker';
      }),
      'mqtt.url',
    )?.message,
    /expected mqtt:\/\/, mqtts:\/\/, ws:\/\/, wss:\/\//,
  );
  t.match(
    issueAt(
      variant((c) => {
        c.mqtt.url = 'not a url';
      }),
      'mqtt.url',
    )?.message,
    /not a valid URL/,
  );
  t.match(
    issueAt(
      variant((c) => {
        c.mqtt.tls = {};
      }),
      'mqtt.url',
    )?.message,
    /tls is configured but the url uses mqtt:\/\//,
  );
  t.match(
    issueAt(
      variant((c) => {
        c.mqtt.password = 'p';
      }),
      'mqtt.username',
    )?.message,
    /password is set but username is not/,
  );
  t.match(
    issueAt(
      variant((c) => {
        c.gateway.id = 'gw/1';
      }),
      'gateway.id',
    )?.message,
    /only letters, digits/,
  );
  t.match(
    issueAt(
      variant((c) => {
        c.gateway.timezone = 'Mars/Olympus';
      }),
      'gateway.timezone',
    )?.message,
    /unknown time zone/,
  );
  t.match(
    issueAt(
      variant((c) => {
        c.cameras[0].location = { lat: 22.5 };
      }),
      'cameras[0].location.lon',
    )?.message,
    /lat and lon go together/,
  );
  t.match(
    issueAt(
      variant((c) => {
        c.cameras[0].source = { url: 'rtsp://h/s', loop: true };
      }),
      'cameras[0].source.loop',
    )?.message,
    /only to a file source/,
  );
  t.match(
    issueAt(
      variant((c) => {
        c.cameras[0].source = {};
      }),
      'cameras[0].source',
    )?.message,
    /neither url nor file/,
  );
  t.match(
    issueAt(
      variant((c) => {
        c.cameras[0].source = { file: './x.avi', detectUrl: 'rtsp://h/sub' };
      }),
      'cameras[0].source.detectUrl',
    )?.message,
    /needs url, not file/,
  );
  t.same(
    parseConfig(minimal.replace('source: { file: ./clip.avi }', 'source: { url: rtsp://h/main, detectUrl: rtsp://h/sub }'), '/x/g.yaml')
      .cameras[0]!.source,
    { url: 'rtsp://h/main', detectUrl: 'rtsp://h/sub' },
    'main stream and sub-stream',
  );
  t.match(
    issueAt(
      variant((c) => {
        c.cameras[0].motion = {
          masks: [
            [
              [0, 0],
              [1, 1],
              [1, 0],
              [0, 1],
            ],
          ],
        };
      }),
      'cameras[0].motion.masks[0]',
    )?.message,
    /crosses itself/,
  );
  t.match(
    issueAt(
      variant((c) => {
        c.cameras[0].zones[0].rules[0].kind = 'presense';
      }),
      'cameras[0].zones[0].rules[0].kind',
    )?.message,
    /unknown kind 'presense'; expected one of: presence, dwell, count, line_cross, left_object, scene_change/,
  );
  t.match(
    issueAt(
      variant((c) => {
        c.cameras[0].zones[0].rules[1].type = 'street_vending';
      }),
      'cameras[0].zones[0].rules[1].id',
    )?.message,
    /duplicate rule id 'street_vending'/,
  );
  t.match(
    issueAt(
      variant((c) => {
        c.model = { threads: 1.5 };
      }),
      'model.threads',
    )?.message,
    /whole number/,
  );
  t.match(
    issueAt(
      variant((c) => {
        c.cameras[0].detect = { width: 641 };
      }),
      'cameras[0].detect.width',
    )?.message,
    /width must be an even whole number \(frames are YUV 4:2:0\), got 641; use 642/,
  );
  t.match(
    issueAt(
      variant((c) => {
        c.cameras[0].detect = { height: 359.5 };
      }),
      'cameras[0].detect.height',
    )?.message,
    /height must be an even whole number/,
  );
  t.match(
    issueAt(
      variant((c) => {
        c.cameras = {};
      }),
      'cameras',
    )?.message,
    /expected (a list|array)/,
  );
  t.same(
    parseConfig('gateway: { id: gw }\nmqtt: { url: mqtt://h }\ncameras: []\n', '/etc/edgepatrol/gateway.yaml').cameras,
    [],
    'no cameras yet is a valid config: a gateway being provisioned',
  );
  t.match(
    issueAt(
      variant((c) => {
        delete c.gateway;
      }),
      'gateway',
    )?.message,
    /missing; expected a mapping/,
  );
  const moreCrossChecks = variant((c) => {
    c.model = { threads: 1.5 };
    c.cameras.push(structuredClone(c.cameras[0]));
  });
  t.ok(issueAt(moreCrossChecks, 'cameras[1].id'), 'cross-checks still run when a field is invalid');
});

t.test('YAML syntax errors carry line and column', async (t) => {
  const issues = issuesOf('gateway:\n  id: gw\nmqtt: { url: mqtt://h\ncameras: []\n');
  t.ok(issues.length >= 1);
  t.match(issues[0], { path: '', message: /^YAML syntax: / });
  t.type(issues[0]!.line, 'number');
  t.type(issues[0]!.column, 'number');
  const dup = issuesOf('gateway: { id: a }\ngateway: { id: b }\n');
  t.match(dup[0], { message: /YAML syntax: .*unique/i, line: 2 });
  t.match(issuesOf('')[0]?.message, /the file is empty/);
});

t.test('formatConfigError shows file, line, path and message', async (t) => {
  let text = '';
  try {
    parseConfig(
      'gateway: { id: "bad id" }\nmqtt: { url: mqtt://h }\ncameras: [{ id: c, source: { file: x } }]\n',
      '/etc/edgepatrol/gateway.yaml',
    );
  } catch (err) {
    text = formatConfigError(err as ConfigError);
  }
  t.match(text, /^config \/etc\/edgepatrol\/gateway.yaml has 1 problem:\n {2}line 1:16 {2}gateway.id: gateway id may contain only/);
});

t.test('secrets: a file others can read is refused, mode 600 accepted', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'gateway.yaml');
  writeFileSync(
    file,
    minimal.replace('mqtt: { url: mqtt://127.0.0.1:1883 }', 'mqtt: { url: mqtt://127.0.0.1:1883, username: gw, password: hunter2 }'),
  );
  chmodSync(file, 0o644);
  const err = t.throws(() => loadConfig(file)) as unknown as ConfigError;
  t.ok(err instanceof ConfigError);
  t.match(
    err.issues[0]?.message,
    new RegExp(`holds secrets \\(mqtt.password\\) but is readable by group or others \\(mode 0644\\); run: chmod 600 ${file}`),
  );
  t.notMatch(formatConfigError(err), /hunter2/, 'the secret itself is never shown');
  chmodSync(file, 0o600);
  t.equal(loadConfig(file).mqtt.password, 'hunter2');

  const cam = join(dir, 'cam.yaml');
  writeFileSync(cam, minimal.replace('{ file: ./clip.avi }', '{ url: "rtsp://admin:pw@10.0.0.2/s" }'));
  chmodSync(cam, 0o640);
  t.match(
    t.throws(() => loadConfig(cam)),
    { issues: [{ message: /cameras\[0\].source.url.*chmod 600/ }] },
  );

  const plain = join(dir, 'plain.yaml');
  writeFileSync(plain, minimal);
  chmodSync(plain, 0o644);
  t.equal(loadConfig(plain).cameras.length, 1, 'no secrets, no demand on the mode');
});

t.test('loadConfig checks the TLS files exist and the key is private', async (t) => {
  const dir = t.testdir({ 'ca.pem': 'x', 'gw.pem': 'x', 'gw.key': 'x' });
  chmodSync(join(dir, 'gw.key'), 0o644);
  const file = join(dir, 'gateway.yaml');
  writeFileSync(
    file,
    minimal.replace(
      'mqtt: { url: mqtt://127.0.0.1:1883 }',
      'mqtt: { url: mqtts://h:8883, tls: { ca: ./ca.pem, cert: ./gw.pem, key: ./gw.key } }',
    ),
  );
  t.match(
    t.throws(() => loadConfig(file)),
    { issues: [{ path: 'mqtt.tls.key', message: /readable by group or others.*chmod 600 .*gw.key/ }] },
  );
  chmodSync(join(dir, 'gw.key'), 0o600);
  t.equal(loadConfig(file).mqtt.tls?.key, join(dir, 'gw.key'));
  writeFileSync(file, minimal.replace('mqtt: { url: mqtt://127.0.0.1:1883 }', 'mqtt: { url: mqtts://h:8883, tls: { ca: ./missing.pem } }'));
  t.match(
    t.throws(() => loadConfig(file)),
    { issues: [{ path: 'mqtt.tls.ca', message: /not found/ }] },
  );
  t.match(
    t.throws(() => loadConfig(join(dir, 'nope.yaml'))),
    { issues: [{ message: /cannot read the config file: no such file/ }] },
  );
});

t.test('checkClasses names unknown classes by path', async (t) => {
  const cfg = parseConfig(minimal.replace('classes: [car, truck]', 'classes: [car, Truck, tractor]'), '/x/gateway.yaml');
  const issues = checkClasses(cfg, ['person', 'bicycle', 'car', 'motorcycle', 'bus', 'truck']);
  t.same(
    issues.map((i) => i.path),
    ['cameras[0].zones[0].rules[1].classes[1]', 'cameras[0].zones[0].rules[1].classes[2]'],
  );
  t.match(issues[0]?.message, /no class 'Truck' \(did you mean 'truck'\?\)/);
  t.same(checkClasses(cfg, ['person', 'car', 'Truck', 'tractor']), []);
});

t.test('docs/config.schema.json is up to date and docs/config.md names every key', async (t) => {
  const file = join(root, 'docs/config.schema.json');
  const rendered = renderConfigJsonSchema();
  if (t.writeSnapshot) writeFileSync(file, rendered);
  t.equal(readFileSync(file, 'utf8'), rendered, 'stale: regenerate with `npx tap --snapshot test/config.test.ts`');

  const keys = new Set<string>();
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) {
      node.forEach(walk);
      return;
    }
    if (typeof node !== 'object' || node === null) return;
    const props = (node as { properties?: Record<string, unknown> }).properties;
    if (props) for (const k of Object.keys(props)) keys.add(k);
    Object.values(node).forEach(walk);
  };
  walk(configJsonSchema());
  const doc = readFileSync(join(root, 'docs/config.md'), 'utf8');
  for (const key of keys) t.match(doc, new RegExp(`\`[^\`\\s]*\\b${key}\\b[^\`\\s]*\``), `docs/config.md documents \`${key}\``);
});

t.test('the examples in docs/config.md are what the code does', async (t) => {
  const doc = readFileSync(join(root, 'docs/config.md'), 'utf8');
  const blocks = [...doc.matchAll(/```(\w*)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1], body: m[2]! }));
  const badIndex = blocks.findIndex((b) => b.lang === 'yaml');
  const bad = blocks[badIndex]!.body;
  const printed = blocks[badIndex + 1]!.body;
  const err = t.throws(() => parseConfig(bad, '/etc/edgepatrol/gateway.yaml')) as unknown as ConfigError;
  t.equal(`${formatConfigError(err)}\n`, printed, 'the printed problems match the example file');
  const example = blocks.filter((b) => b.lang === 'yaml').at(-1)!.body;
  t.equal(parseConfig(example, join(root, 'docs/gateway.yaml')).cameras[0]!.id, 'cam-01', 'the closing example is valid');
});
