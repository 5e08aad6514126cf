import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfig, type ConfigError } from '../src/config/index.js';
import { PRESETS, PRESET_NAMES, type Preset } from '../src/rules/index.js';
import { rulesCommand } from '../src/cli/rules.js';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));

function config(rule: string, polygon = '[[0.1, 0.5], [0.9, 0.5], [0.9, 1], [0.1, 1]]', file = '/x/gateway.yaml') {
  return `
gateway: { id: gw }
mqtt: { url: mqtt://127.0.0.1 }
cameras:
  - id: cam
    source: { file: ${join(root, 'assets/vtest.avi')} }
    zones:
      - id: z
        polygon: ${polygon}
        rules:
          - ${rule}
`.replace('/x/gateway.yaml', file);
}

/** The keys a preset's default kind cannot do without. */
const REQUIRED: Record<string, string> = {
  scene_change: 'reference: ./ref.jpg',
  line_cross: 'line: [[0.2, 0.7], [0.8, 0.7]]',
};

t.test('every preset expands to its kind, type and defaults; written keys win', async (t) => {
  for (const name of PRESET_NAMES) {
    const preset: Preset = PRESETS[name];
    const extra = REQUIRED[preset.kind];
    const rule = parseConfig(config(`{ preset: ${name}${extra ? `, ${extra}` : ''} }`), '/x/gateway.yaml').cameras[0]!.zones[0]!.rules[0]!;
    t.match(rule, { kind: preset.kind, type: name, id: name, preset: name, ...preset.defaults[preset.kind] }, name);
  }
  const custom = parseConfig(config('{ preset: fire_lane_parking, seconds: 45, classes: [bus], type: bus_lane_parking }'), '/x/g.yaml')
    .cameras[0]!.zones[0]!.rules[0]!;
  t.match(custom, {
    kind: 'dwell',
    type: 'bus_lane_parking',
    preset: 'fire_lane_parking',
    seconds: 45,
    classes: ['bus'],
    maxMovement: 0.03,
  });
  const variant = parseConfig(config('{ preset: bin_overflow, kind: presence, classes: [overflowing_bin] }'), '/x/g.yaml').cameras[0]!
    .zones[0]!.rules[0]!;
  t.match(
    variant,
    { kind: 'presence', type: 'bin_overflow', classes: ['overflowing_bin'], cooldownSeconds: 3600 },
    'a custom model variant',
  );
});

t.test('preset errors name the path', async (t) => {
  const issues = (text: string) => (t.throws(() => parseConfig(text, '/x/g.yaml')) as unknown as ConfigError).issues;
  t.match(issues(config('{ preset: street_vendor }')), [
    {
      path: 'cameras[0].zones[0].rules[0].preset',
      message: /unknown preset 'street_vendor'; expected one of: street_vending, illegal_dumping/,
    },
  ]);
  t.match(issues(config('{ preset: fire_lane_parking, kind: line_cross }')), [
    { path: 'cameras[0].zones[0].rules[0].kind', message: /works with kind dwell, not 'line_cross'/ },
  ]);
  t.match(
    issues(config('{ preset: bin_overflow }')),
    [{ path: 'cameras[0].zones[0].rules[0].reference', message: /missing/ }],
    'scene_change needs its reference',
  );
  t.match(
    issues(config('{ preset: bin_overflow, kind: presence }')),
    [{ path: 'cameras[0].zones[0].rules[0].classes', message: /missing/ }],
    'the custom-model variant needs the class',
  );
});

t.test('docs/rules.md explains every preset and kind', async (t) => {
  const doc = readFileSync(join(root, 'docs/rules.md'), 'utf8');
  for (const name of PRESET_NAMES) {
    t.match(doc, new RegExp(`### \`${name}\` ${PRESETS[name].zh}`), `${name} has its section`);
    t.ok(doc.includes(PRESETS[name].needs), `${name}: what it needs, as the code says`);
  }
  for (const kind of ['presence', 'dwell', 'count', 'line_cross', 'left_object', 'scene_change'])
    t.match(doc, new RegExp(`### \`${kind}\``));
});

t.test('rules test: config errors exit 2 and name the path', async (t) => {
  const dir = t.testdir({});
  const cases: [string, string, RegExp][] = [
    ['{ preset: fire_lane_parking }', '[[0, 0], [1, 1], [1, 0], [0, 1]]', /cameras\[0\]\.zones\[0\]\.polygon: it crosses itself/],
    [
      '{ preset: fire_lane_parking }',
      '[[0, 0], [1.2, 0], [1, 1]]',
      /cameras\[0\]\.zones\[0\]\.polygon\[1\]\[0\]: x must be between 0 and 1/,
    ],
    [
      '{ preset: fire_lane_parking, classes: [car, tractor] }',
      '[[0, 0], [1, 0], [1, 1]]',
      /cameras\[0\]\.zones\[0\]\.rules\[0\]\.classes\[1\]: the model has no class 'tractor'/,
    ],
    ['{ preset: fire_lane }', '[[0, 0], [1, 0], [1, 1]]', /cameras\[0\]\.zones\[0\]\.rules\[0\]\.preset: unknown preset 'fire_lane'/],
  ];
  for (const [i, [rule, polygon, expected]] of cases.entries()) {
    const file = join(dir, `g${i}.yaml`);
    writeFileSync(file, config(rule, polygon, file));
    const out: string[] = [];
    const err: string[] = [];
    const code = await rulesCommand(['test', 'cam', '--config', file, '--video', join(root, 'assets/vtest.avi')], {
      stdout: { write: (s: string) => out.push(s) },
      stderr: { write: (s: string) => err.push(s) },
    });
    t.equal(code, 2, `exit 2: ${expected}`);
    t.match(err.join(''), new RegExp(`config ${file} has 1 problem`));
    t.match(err.join(''), expected);
  }
});

t.test('a still photo of a parked van, looped as a stream, fires fire_lane_parking once, after the dwell', async (t) => {
  // vtest.avi's scene has a white van (detected as truck) and a car parked at its top right: a real photo of parked
  // vehicles. One frame of it, repeated as a 140 s video, is what a camera facing the lane would stream; sampled at
  // 1 fps (detect.fps) to keep the test short.
  const dir = t.testdir({});
  const still = join(dir, 'van.png');
  const video = join(dir, 'van-140s.avi');
  execFileSync('ffmpeg', ['-loglevel', 'error', '-y', '-ss', '10', '-i', join(root, 'assets/vtest.avi'), '-frames:v', '1', still]);
  execFileSync('ffmpeg', [
    '-loglevel',
    'error',
    '-y',
    '-loop',
    '1',
    '-framerate',
    '2',
    '-i',
    still,
    '-t',
    '140',
    '-c:v',
    'mjpeg',
    '-q:v',
    '3',
    video,
  ]);
  const file = join(dir, 'gateway.yaml');
  writeFileSync(
    file,
    config('{ preset: fire_lane_parking }', '[[0.8, 0.1], [1, 0.1], [1, 0.25], [0.8, 0.25]]', file).replace(
      '    zones:',
      '    detect: { fps: 1 }\n    zones:',
    ),
  );
  const out: string[] = [];
  const err: string[] = [];
  const code = await rulesCommand(['test', 'cam', '--config', file, '--video', video, '--json'], {
    stdout: { write: (s: string) => out.push(s) },
    stderr: { write: (s: string) => err.push(s) },
  });
  t.equal(code, 0, err.join(''));
  const events = out
    .join('')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { time: number; state: string; eventType: string; dwellSeconds: number; objects: { class: string }[] });
  t.same(
    events.map((e) => [e.eventType, e.state]),
    [['fire_lane_parking', 'started']],
    'exactly one event, still running at the end of the clip',
  );
  t.equal(events[0]!.time, 120, "after the preset's 120 s dwell");
  t.equal(events[0]!.dwellSeconds, 120);
  t.ok(
    events[0]!.objects.some((o) => o.class === 'truck' || o.class === 'car'),
    `the vehicles: ${events[0]!.objects.map((o) => o.class).join(', ')}`,
  );
});
