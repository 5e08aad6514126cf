import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { addCamera, ConfigEditError, ConfigError, loadConfig, parseConfig, setZone, writeFileAtomic } from '../src/config/index.js';
import { tempDirFor } from './helpers/mosquitto.js';

/** A config as a technician leaves it: comments everywhere, flow and block style mixed, odd spacing, quotes. */
const ORIGINAL = `# Gateway at Xinmin Road, north gate — edited by hand, keep the notes
gateway: { id: gw-xmh-017, dataDir: ./data }   # the data folder is on the SD card

mqtt:
  url: mqtt://127.0.0.1:1883
  prefix: ept     # the site's prefix

cameras:
  # the gate; pole 3
  - id: gate-3
    name: "Gate 3 (north)"
    source: { file: ./clip.avi, loop: true }
    zones:
      - id: kerb   # by the kerb, drawn on site 2026-11-02
        polygon: [[0.1, 0.5], [0.9, 0.5], [0.9, 1], [0.1, 1]]
        rules:
          - { kind: presence, type: loitering, classes: [person] }
      - id: lane
        polygon:
          - [0.2, 0.2]
          - [0.4, 0.2]
          - [0.4, 0.4]
  - id: yard
    source:
      file: ./clip.avi
# end of cameras: add new ones above
model:
  threads: 1
`;

function setup(t: Tap.Test, mode = 0o644): { dir: string; file: string } {
  const dir = tempDirFor(t, 'config-edit');
  const file = join(dir, 'gateway.yaml');
  writeFileSync(file, ORIGINAL);
  chmodSync(file, mode);
  return { dir, file };
}

const read = (file: string): string => readFileSync(file, 'utf8');
const modeOf = (file: string): number => statSync(file).mode & 0o777;
const tempFiles = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.tmp'));

t.test('setZone on an existing zone replaces only its polygon: every other byte, its rules and comments stay', async (t) => {
  const { dir, file } = setup(t);
  const config = setZone(file, 'gate-3', 'kerb', [
    [0.2, 0.6],
    [0.8, 0.6],
    [0.5, 0.95],
  ]);
  t.equal(
    read(file),
    ORIGINAL.replace('[[0.1, 0.5], [0.9, 0.5], [0.9, 1], [0.1, 1]]', '[[0.2, 0.6], [0.8, 0.6], [0.5, 0.95]]'),
    'the polygon is the only change',
  );
  const kerb = config.cameras[0]!.zones[0]!;
  t.same(kerb.polygon, [
    [0.2, 0.6],
    [0.8, 0.6],
    [0.5, 0.95],
  ]);
  t.equal(kerb.rules.length, 1, 'its rule is kept');
  t.equal(modeOf(file), 0o644, 'no secret: the mode stays');
  t.same(tempFiles(dir), [], 'no temporary file left');

  // A block-style polygon is replaced by a flow one; the lines around it stay.
  setZone(file, 'gate-3', 'lane', [
    [0.2, 0.2],
    [0.5, 0.2],
    [0.5, 0.45],
  ]);
  t.match(read(file), /\n {8}polygon:\n {10}\[\[0\.2, 0\.2\], \[0\.5, 0\.2\], \[0\.5, 0\.45\]\]\n {2}- id: yard\n/);
  t.same(loadConfig(file).cameras[0]!.zones[1]!.polygon[2], [0.5, 0.45]);
});

t.test('setZone adds a new zone with no rules after the last, and a zones list to a camera without one', async (t) => {
  const { file } = setup(t);
  setZone(file, 'gate-3', 'bus-stop', [
    [0.6, 0.1],
    [0.9, 0.1],
    [0.9, 0.3],
  ]);
  const added = '\n      - id: bus-stop\n        polygon: [[0.6, 0.1], [0.9, 0.1], [0.9, 0.3]]';
  const at = '          - [0.4, 0.4]';
  t.equal(read(file), ORIGINAL.replace(at, `${at}${added}`), 'inserted after the last zone, nothing else changed');

  setZone(file, 'yard', 'gate', [
    [0, 0],
    [1, 0],
    [1, 1],
  ]);
  t.equal(
    read(file),
    ORIGINAL.replace(at, `${at}${added}`).replace(
      '      file: ./clip.avi\n# end',
      '      file: ./clip.avi\n    zones:\n      - id: gate\n        polygon: [[0, 0], [1, 0], [1, 1]]\n# end',
    ),
    "the camera's zones list is created under its last key; the comment after it stays after it",
  );
  const yard = loadConfig(file).cameras[1]!;
  t.same(
    yard.zones.map((z) => [z.id, z.rules.length]),
    [['gate', 0]],
  );
});

t.test('setZone with a preset: the preset is created on a camera with onvif, then gets more zones', async (t) => {
  const { dir, file } = setup(t);
  t.throws(
    () =>
      setZone(
        file,
        'yard',
        'gate',
        [
          [0, 0],
          [1, 0],
          [1, 1],
        ],
        { preset: 'p1' },
      ),
    { name: 'ConfigError', message: /cameras\[1\]\.presets: presets need onvif/ },
    'a preset on a camera without onvif is refused by the config check',
  );
  t.equal(read(file), ORIGINAL, 'and the file is unchanged');
  t.same(tempFiles(dir), []);

  addCamera(file, {
    id: 'ptz-1',
    source: { url: 'rtsp://admin:s3cret@192.0.2.30:554/main' },
    onvif: { url: 'http://192.0.2.30/onvif/device_service', user: 'admin', password: 's3cret' },
  });
  const tri = (x: number): [number, number][] => [
    [x, 0.1],
    [x + 0.1, 0.1],
    [x + 0.1, 0.3],
  ];
  setZone(file, 'ptz-1', 'crossing', tri(0.1), { preset: 'north' });
  setZone(file, 'ptz-1', 'kiosk', tri(0.5), { preset: 'north' });
  setZone(file, 'ptz-1', 'crossing', tri(0.2), { preset: 'south' });
  setZone(file, 'ptz-1', 'crossing', tri(0.3), { preset: 'north' });
  const ptz = loadConfig(file).cameras[2]!;
  t.same(
    ptz.presets!.map((p) => [p.id, p.zones.map((z) => [z.id, z.polygon[0]])]),
    [
      [
        'north',
        [
          ['crossing', [0.3, 0.1]],
          ['kiosk', [0.5, 0.1]],
        ],
      ],
      ['south', [['crossing', [0.2, 0.1]]]],
    ],
  );
  t.same(ptz.zones, [], "the camera's own zones are untouched");
  t.ok(read(file).startsWith(ORIGINAL.slice(0, ORIGINAL.indexOf('# end of cameras'))), 'everything before the new camera is as it was');
  t.ok(read(file).endsWith('# end of cameras: add new ones above\nmodel:\n  threads: 1\n'), 'and everything after it');
});

t.test('addCamera appends after the last camera; a duplicate id is refused and the file left as it was', async (t) => {
  const { dir, file } = setup(t);
  addCamera(file, { id: 'gate-4', name: 'Gate 4', source: { file: './clip.avi' }, detect: { fps: 1 } });
  const inserted = '\n  - id: gate-4\n    name: Gate 4\n    source:\n      file: ./clip.avi\n    detect:\n      fps: 1';
  t.equal(read(file), ORIGINAL.replace('      file: ./clip.avi\n# end', `      file: ./clip.avi${inserted}\n# end`));
  t.same(
    loadConfig(file).cameras.map((c) => c.id),
    ['gate-3', 'yard', 'gate-4'],
  );

  const before = read(file);
  t.throws(() => addCamera(file, { id: 'gate-3', source: { file: './other.avi' } }), {
    name: 'ConfigEditError',
    message: `camera 'gate-3' already exists in ${file}; choose another --id or remove it first`,
  });
  t.equal(read(file), before, 'unchanged');

  const flow = join(dir, 'flow.yaml');
  writeFileSync(flow, 'gateway: { id: gw-1 }\nmqtt: { url: mqtt://127.0.0.1 }\ncameras: [{ id: a, source: { file: x.avi } }]  # one\n');
  addCamera(flow, { id: 'b', source: { file: 'y.avi' } });
  t.equal(
    read(flow),
    'gateway: { id: gw-1 }\nmqtt: { url: mqtt://127.0.0.1 }\ncameras: [{ id: a, source: { file: x.avi } }, { id: b, source: { file: y.avi } }]  # one\n',
    'a flow list gets the camera in flow style',
  );
});

t.test('an invalid result is refused with the config errors and the file left as it was, no temporary file', async (t) => {
  const { dir, file } = setup(t);
  const err = t.throws(() => addCamera(file, { id: 'bad id!', source: { url: 'http://x' } })) as unknown as ConfigError;
  t.ok(err instanceof ConfigError, 'the config loader says why');
  t.match(err.issues.map((i) => i.path).sort(), ['cameras[2].id', 'cameras[2].source.url']);
  t.throws(
    () =>
      setZone(file, 'gate-3', 'kerb', [
        [0, 0],
        [1, 1],
        [1, 0],
        [0, 1],
      ]),
    { message: /cameras\[0\]\.zones\[0\]\.polygon: it crosses itself/ },
  );
  t.throws(
    () =>
      setZone(file, 'nope', 'kerb', [
        [0, 0],
        [1, 0],
        [1, 1],
      ]),
    { name: 'ConfigEditError', message: `no camera 'nope' in ${file}; its cameras are: gate-3, yard` },
  );
  t.equal(read(file), ORIGINAL);
  t.same(tempFiles(dir), []);
  t.same(readdirSync(dir), ['gateway.yaml'], 'nothing else was written into the folder');
});

t.test('a file holding a secret is written mode 600, whatever its mode was', async (t) => {
  const { file } = setup(t, 0o640);
  setZone(file, 'gate-3', 'kerb', [
    [0, 0],
    [1, 0],
    [1, 1],
  ]);
  t.equal(modeOf(file), 0o640, 'no secret yet: the mode is kept');
  addCamera(file, { id: 'cam-pw', source: { url: 'rtsp://admin:pw@192.0.2.9/s' } });
  t.equal(modeOf(file), 0o600, 'a password in a camera url: 600');
  t.doesNotThrow(() => loadConfig(file), 'and the agent accepts it');

  const onvif = setup(t, 0o644).file;
  addCamera(onvif, {
    id: 'ptz',
    source: { file: './clip.avi' },
    onvif: { url: 'http://192.0.2.9/onvif/device_service', user: 'u', password: 'p' },
  });
  t.equal(modeOf(onvif), 0o600, 'an onvif password: 600');
  chmodSync(onvif, 0o644);
  t.throws(
    () => loadConfig(onvif),
    { message: /holds secrets \(cameras\[2\]\.onvif\.password\).*chmod 600/ },
    'the loader refuses it readable',
  );
});

t.test('a write that fails leaves no temporary file and says which file', async (t) => {
  const dir = tempDirFor(t, 'config-edit-fail');
  const target = join(dir, 'is-a-folder');
  mkdirSync(target);
  t.throws(() => writeFileAtomic(target, 'x: 1\n', false), { name: 'ConfigEditError', message: new RegExp(`^cannot write ${target}: `) });
  t.same(readdirSync(dir), ['is-a-folder'], 'the temporary file was removed');
});

t.test('the config schema: onvif and presets', async (t) => {
  const base = (camera: string) =>
    `gateway: { id: gw-1 }\nmqtt: { url: mqtt://127.0.0.1 }\ncameras:\n  - { id: ptz, source: { file: x.avi }${camera} }\n`;
  const tri = '[[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]';
  const cfg = parseConfig(
    base(
      `, onvif: { url: 'https://192.0.2.9:8443/onvif/device_service', user: u, password: p, profile: sub, evidenceProfile: main }, ` +
        `presets: [{ id: north, token: '1', zones: [{ id: a, polygon: ${tri}, rules: [{ preset: street_vending }] }], motionMasks: [${tri}] }]`,
    ),
    '/x/gw.yaml',
  );
  const cam = cfg.cameras[0]!;
  t.match(cam.onvif, { url: 'https://192.0.2.9:8443/onvif/device_service', user: 'u', profile: 'sub', evidenceProfile: 'main' });
  t.match(cam.presets, [{ id: 'north', token: '1', zones: [{ id: 'a', rules: [{ id: 'street_vending', kind: 'dwell' }] }] }]);

  const problems = (camera: string): string[] => {
    const err = t.throws(() => parseConfig(base(camera), '/x/gw.yaml')) as unknown as ConfigError;
    return err.issues.map((i) => `${i.path}: ${i.message}`);
  };
  t.same(problems(`, presets: [{ id: north }]`), [
    'cameras[0].presets: presets need onvif (the camera is moved to a preset over ONVIF); add onvif: { url, user, password } or remove presets',
  ]);
  t.same(
    problems(
      `, onvif: { url: 'http://h/onvif/device_service' }, presets: [{ id: n, zones: [{ id: a, polygon: ${tri} }, { id: a, polygon: ${tri} }] }, { id: n }]`,
    ),
    [
      "cameras[0].presets[0].zones[1].id: duplicate zone id 'a' (first used at index 0); zone ids must be unique",
      "cameras[0].presets[1].id: duplicate preset id 'n' (first used at index 0); preset ids must be unique",
    ],
  );
  t.match(problems(`, onvif: { url: 'rtsp://h/x', password: p }`), [
    /cameras\[0\]\.onvif\.user: password is set but user is not/,
    /cameras\[0\]\.onvif\.url: unsupported scheme 'rtsp:'; expected http:\/\/, https:\/\//,
  ]);
});

t.test('ConfigEditError is what an unusable file gives', async (t) => {
  const dir = tempDirFor(t, 'config-edit-bad');
  const file = join(dir, 'gw.yaml');
  writeFileSync(file, 'cameras: [a\n');
  t.throws(() => addCamera(file, { id: 'x' }), { name: 'ConfigEditError', message: new RegExp(`^${file} is not valid YAML`) });
  t.ok(new ConfigEditError('x') instanceof Error);
});

t.test('the reference example (examples/gateway.yaml): each change is only its own lines', async (t) => {
  const dir = tempDirFor(t, 'config-edit-example');
  const file = join(dir, 'gateway.yaml');
  const original = readFileSync(join(import.meta.dirname, '..', 'examples', 'gateway.yaml'), 'utf8');
  writeFileSync(file, original);
  const tri: [number, number][] = [
    [0.1, 0.1],
    [0.5, 0.1],
    [0.5, 0.5],
  ];
  setZone(file, 'cam-01', 'walkway', tri);
  setZone(file, 'cam-02', 'bus-lane', tri);
  addCamera(file, { id: 'cam-03', source: { url: 'rtsp://192.0.2.23/stream1' } });
  const before = original.split('\n');
  const after = read(file).split('\n');
  const changed = after.filter((line) => !before.includes(line));
  t.same(
    changed,
    [
      '        polygon: [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]',
      '      - id: bus-lane',
      '        polygon: [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]',
      '  - id: cam-03',
      '      url: rtsp://192.0.2.23/stream1',
    ],
    'the new lines (and a `    source:` line, which the file has already)',
  );
  t.equal(before.filter((line) => !after.includes(line)).length, 1, "one line gone: walkway's old polygon");
  t.equal(after.length, before.length + 5);
  t.equal(modeOf(file), 0o600, 'the example holds passwords: 600');
});
