import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parse } from 'yaml';
import { loadConfig } from '../src/config/index.js';
import { decodeImage } from '../src/common/jpeg.js';
import { gatewayConfig, writeConfig, edgepatrol } from './helpers/agent.js';
import { tempDirFor } from './helpers/mosquitto.js';
import { startRtspServer } from './helpers/rtsp.js';

const PASSWORD = 'Sup3r-s3cret';
const ONVIF_PASSWORD = 'onvif-Pa55';

const server = await startRtspServer({ mounts: ['gate'] });
t.teardown(() => server.stop());

/** A gateway with an RTSP camera (credentials in its url), a PTZ camera with onvif, and one whose port is closed. */
function setup(t: Tap.Test): { dir: string; config: string } {
  const dir = tempDirFor(t, 'zones-cli');
  const withCredentials = server.url('gate').replace('rtsp://', `rtsp://admin:${PASSWORD}@`);
  const config = writeConfig(
    dir,
    gatewayConfig(dir, 'mqtt://127.0.0.1:1', [
      {
        id: 'gate',
        name: 'North gate',
        source: { url: withCredentials },
        zones: [
          {
            id: 'kerb',
            polygon: [
              [0.05, 0.6],
              [0.4, 0.6],
              [0.4, 0.95],
              [0.05, 0.95],
            ],
            rules: [{ kind: 'presence', type: 'loitering', classes: ['person'] }],
          },
        ],
      },
      {
        id: 'ptz',
        source: { url: server.url('gate') },
        onvif: { url: 'http://127.0.0.1:1/onvif/device_service', user: 'admin', password: ONVIF_PASSWORD },
      },
      { id: 'dark', source: { url: 'rtsp://127.0.0.1:1/stream1' } },
    ]),
  );
  return { dir, config };
}

/** Whether some pixel within `r` px of (x, y) is the highlight colour (magenta), allowing for JPEG's blur. */
function magentaNear(img: { width: number; data: Buffer }, x: number, y: number, r = 3): boolean {
  for (let dy = -r; dy <= r; dy++)
    for (let dx = -r; dx <= r; dx++) {
      const i = ((Math.round(y) + dy) * img.width + Math.round(x) + dx) * 3;
      const [R, G, B] = [img.data[i]!, img.data[i + 1]!, img.data[i + 2]!];
      if (R > 170 && B > 170 && G < 100) return true;
    }
  return false;
}

t.test('zones set on an RTSP camera writes the zone and a preview with it drawn, and prints both paths', async (t) => {
  const { dir, config } = setup(t);
  const polygon: [number, number][] = [
    [0.5, 0.3],
    [0.9, 0.35],
    [0.85, 0.8],
    [0.55, 0.7],
  ];
  const r = await edgepatrol('zones', 'set', 'gate', 'lane', polygon.map((p) => p.join(',')).join(' '), '--config', config);
  t.equal(r.code, 0, r.err);
  const preview = join(dir, 'gate-lane.jpg');
  t.match(r.out, `wrote zone lane of camera gate to ${config}\nwrote ${preview} (`);
  t.notMatch(r.out + r.err, PASSWORD, 'no password printed');

  const gate = loadConfig(config).cameras[0]!;
  t.same(
    gate.zones.map((z) => [z.id, z.polygon, z.rules.length]),
    [
      ['kerb', gate.zones[0]!.polygon, 1],
      ['lane', polygon, 0],
    ],
    'the new zone has no rules; kerb keeps its rule',
  );
  t.equal(statSync(config).mode & 0o777, 0o600, 'the config holds a password: still 600');

  const img = await decodeImage(preview);
  t.same([img.width, img.height], [768, 576], 'the preview is a frame of the stream at its own size');
  // Along every edge of the new zone (away from the corners, where the label may sit) the highlight is drawn…
  let onEdge = 0;
  let samples = 0;
  for (let i = 0; i < polygon.length; i++) {
    const [a, b] = [polygon[i]!, polygon[(i + 1) % polygon.length]!];
    for (const f of [0.3, 0.5, 0.7]) {
      samples++;
      if (magentaNear(img, (a[0] + (b[0] - a[0]) * f) * img.width, (a[1] + (b[1] - a[1]) * f) * img.height)) onEdge++;
    }
  }
  t.equal(onEdge, samples, `the highlight colour along the zone's edges (${onEdge} of ${samples} points)`);
  // …and not along the other zone's.
  t.notOk(magentaNear(img, 0.2 * img.width, 0.95 * img.height), 'the other zone is not highlighted');
});

t.test('bad points: one line naming camera, zone and point, then the usage; exit 1 and the file unchanged', async (t) => {
  const { config } = setup(t);
  const before = readFileSync(config, 'utf8');
  for (const [points, message] of [
    ['0.1,0.1 0.5,0.1', 'camera gate, zone lane: a zone polygon needs at least 3 points'],
    ['0.1,0.1 1.5,0.1 0.5,0.5', 'camera gate, zone lane: point 1 (1.5,0.1): x must be between 0 and 1'],
    ['0.1,0.1 0.5;0.1 0.5,0.5', "camera gate, zone lane: point 1 '0.5;0.1' is not x,y (two numbers between 0 and 1, e.g. 0.25,0.6)"],
    [
      '0,0 1,1 1,0 0,1',
      'camera gate, zone lane: it crosses itself: the edge from point 0 to point 1 meets the edge from point 2 to point 3; list the points in order around the outline (clockwise or anticlockwise)',
    ],
  ] as const) {
    const r = await edgepatrol('zones', 'set', 'gate', 'lane', points, '--config', config);
    t.same([r.code, r.out], [1, ''], `'${points}': exit 1, nothing on stdout`);
    t.equal(r.err.split('\n')[0], `edgepatrol zones set: ${message}`);
    t.match(r.err, /\n\nusage: edgepatrol zones set /);
  }
  t.equal(readFileSync(config, 'utf8'), before, 'the config is unchanged');
});

t.test('an unknown camera is named with the known ones; exit 1', async (t) => {
  const { config } = setup(t);
  const r = await edgepatrol('zones', 'set', 'gaet', 'lane', '0.1,0.1 0.5,0.1 0.5,0.5', '--config', config);
  t.same([r.code, r.out], [1, '']);
  t.equal(r.err, `edgepatrol zones set: no camera 'gaet' in ${config}; its cameras are: gate, ptz, dark\n`);
});

t.test('--preset: the zone goes into the preset (created), the preview is named after it; --json', async (t) => {
  const { dir, config } = setup(t);
  const r = await edgepatrol(
    'zones',
    'set',
    'ptz',
    'crossing',
    '0.2,0.2 0.6,0.2 0.6,0.6',
    '--preset',
    'north',
    '--config',
    config,
    '--json',
  );
  t.equal(r.code, 0, r.err);
  const preview = join(dir, 'ptz-north-crossing.jpg');
  t.same(JSON.parse(r.out), {
    config,
    camera: 'ptz',
    zone: 'crossing',
    preset: 'north',
    rule: null,
    polygon: [
      [0.2, 0.2],
      [0.6, 0.2],
      [0.6, 0.6],
    ],
    preview,
    previewSkipped: null,
  });
  t.ok(existsSync(preview));
  const ptz = loadConfig(config).cameras[1]!;
  t.same(
    ptz.presets?.map((p) => [p.id, p.zones.map((z) => z.id)]),
    [['north', ['crossing']]],
  );
  t.same(ptz.zones, [], "the camera's own zones are untouched");
  t.notMatch(r.out + r.err, ONVIF_PASSWORD);
});

t.test('a camera that cannot be reached: the zone is written, the preview skipped with the reason; exit 6', async (t) => {
  const { dir, config } = setup(t);
  const r = await edgepatrol('zones', 'set', 'dark', 'door', '0.2,0.2 0.6,0.2 0.6,0.6', '--config', config, '--timeout', '5');
  t.equal(r.code, 6);
  t.equal(r.out, `wrote zone door of camera dark to ${config}\n`);
  t.match(
    r.err,
    /^edgepatrol zones set: zone door of camera dark is written, but the preview was skipped: camera dark: grabbing a frame from rtsp:\/\/127\.0\.0\.1:1\/stream1: /,
  );
  t.same(
    loadConfig(config).cameras[2]!.zones.map((z) => z.id),
    ['door'],
  );
  t.notOk(existsSync(join(dir, 'dark-door.jpg')));
});

t.test('camera list: sources as host:port, never a user or password', async (t) => {
  const { config } = setup(t);
  const json = await edgepatrol('camera', 'list', '--config', config, '--json');
  t.equal(json.code, 0, json.err);
  t.notMatch(json.out, PASSWORD, 'no camera password');
  t.notMatch(json.out, ONVIF_PASSWORD, 'no onvif password');
  t.notMatch(json.out, 'admin', 'no user name');
  const doc = JSON.parse(json.out) as { cameras: unknown[] };
  t.same(doc.cameras, [
    {
      id: 'gate',
      name: 'North gate',
      source: { kind: 'rtsp', host: '127.0.0.1', port: server.port },
      detect: { width: 640, height: 480, fps: 2 },
      zones: 1,
      presets: 0,
      onvif: null,
    },
    {
      id: 'ptz',
      name: 'ptz',
      source: { kind: 'rtsp', host: '127.0.0.1', port: server.port },
      detect: { width: 640, height: 480, fps: 2 },
      zones: 0,
      presets: 0,
      onvif: '127.0.0.1:1',
    },
    {
      id: 'dark',
      name: 'dark',
      source: { kind: 'rtsp', host: '127.0.0.1', port: 1 },
      detect: { width: 640, height: 480, fps: 2 },
      zones: 0,
      presets: 0,
      onvif: null,
    },
  ]);
  const text = await edgepatrol('camera', 'list', '--config', config);
  t.equal(text.code, 0);
  t.match(text.out.split('\n')[1], new RegExp(`^gate +North gate +rtsp 127\\.0\\.0\\.1:${server.port} +640×480 @ 2 fps +1 +0 +-$`));
  t.notMatch(text.out, PASSWORD);
});

t.test(
  '--rule: a new zone gets a rule from a governance preset; an existing zone gets it added once; a wrong name is refused',
  async (t) => {
    const { config } = setup(t);
    const rules = (zone: string): unknown => {
      const cam = (parse(readFileSync(config, 'utf8')) as { cameras: { id: string; zones: { id: string; rules?: unknown }[] }[] })
        .cameras[0]!;
      return cam.zones.find((z) => z.id === zone)?.rules;
    };
    const r = await edgepatrol(
      'zones',
      'set',
      'gate',
      'stalls',
      '0.5,0.5 0.9,0.5 0.9,0.9 0.5,0.9',
      '--rule',
      'street_vending',
      '--config',
      config,
    );
    t.equal(r.code, 0, r.err);
    t.match(r.out, /^wrote zone stalls of camera gate with a street_vending rule to /);
    t.same(rules('stalls'), [{ preset: 'street_vending' }], 'the new zone has the rule');

    const again = await edgepatrol(
      'zones',
      'set',
      'gate',
      'stalls',
      '0.5,0.4 0.9,0.4 0.9,0.9 0.5,0.9',
      '--rule',
      'street_vending',
      '--config',
      config,
    );
    t.equal(again.code, 0, again.err);
    t.same(rules('stalls'), [{ preset: 'street_vending' }], 'not added twice');

    const kerb = await edgepatrol(
      'zones',
      'set',
      'gate',
      'kerb',
      '0.05,0.6 0.4,0.6 0.4,0.95 0.05,0.95',
      '--rule',
      'illegal_dumping',
      '--config',
      config,
    );
    t.equal(kerb.code, 0, kerb.err);
    t.match(rules('kerb'), [{ kind: 'presence', type: 'loitering' }, { preset: 'illegal_dumping' }], 'appended after the rule it had');

    const land = await edgepatrol(
      'zones',
      'set',
      'gate',
      'land',
      '0,0 1,0 1,0.3',
      '--rule',
      'reserve_land_intrusion:presence',
      '--config',
      config,
      '--json',
    );
    t.equal(land.code, 0, land.err);
    t.match(JSON.parse(land.out), { rule: 'reserve_land_intrusion:presence' });
    t.same(rules('land'), [{ preset: 'reserve_land_intrusion', kind: 'presence' }], 'NAME:KIND picks another kind the preset supports');
    t.match(loadConfig(config).cameras[0]!.zones.find((z) => z.id === 'land')!.rules[0], {
      kind: 'presence',
      type: 'reserve_land_intrusion',
    });
    const wrongKind = await edgepatrol(
      'zones',
      'set',
      'gate',
      'land',
      '0,0 1,0 1,0.3',
      '--rule',
      'fire_lane_parking:line_cross',
      '--config',
      config,
    );
    t.equal(wrongKind.code, 1);
    t.match(wrongKind.err, /preset fire_lane_parking works with kind dwell, not 'line_cross'/);
    const before = readFileSync(config, 'utf8');
    const bad = await edgepatrol(
      'zones',
      'set',
      'gate',
      'stalls',
      '0.5,0.5 0.9,0.5 0.9,0.9',
      '--rule',
      'street-vending',
      '--config',
      config,
    );
    t.equal(bad.code, 1);
    t.match(bad.err, /camera gate, zone stalls: --rule 'street-vending' is not a rule preset; one of .*street_vending/);
    t.equal(readFileSync(config, 'utf8'), before, 'the file is unchanged');
  },
);
