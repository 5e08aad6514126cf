import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import sharp from 'sharp';
import t, { type Test } from 'tap';
import { v7 as uuidv7 } from 'uuid';
import { writeStatus, type AgentStatus } from '../src/agent/stats.js';
import type { StreamState } from '../src/ingest/index.js';
import { cameraCommand } from '../src/cli/camera.js';
import { modelCommand } from '../src/cli/model.js';
import { outboxCommand } from '../src/cli/outbox.js';
import { rulesCommand } from '../src/cli/rules.js';
import { statusCommand } from '../src/cli/status.js';
import { runTail } from '../src/cli/tail.js';
import { Outbox } from '../src/outbox/index.js';
import { defaultModelsDir, loadManifest } from '../src/vision/index.js';
import { brokerFor, tempDirFor } from './helpers/mosquitto.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const modelsDir = defaultModelsDir();
const video = join(root, 'assets', 'vtest.avi');
const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

type Command = (argv: string[], io: { stdout: { write(s: string): unknown }; stderr: { write(s: string): unknown } }) => Promise<number>;

/** Runs a command in-process with collecting streams. */
async function run(command: Command, ...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await command(argv, { stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) } });
  return { code, out, err };
}

/** The one JSON document a --json run printed: stdout must be exactly one line of JSON. */
function doc<T>(t: Test, out: string): T {
  const lines = out.split('\n');
  t.equal(lines.length, 2, 'one line on stdout');
  t.equal(lines[1], '', 'ending in a newline');
  return JSON.parse(lines[0]!) as T;
}

interface ListedModel {
  name: string;
  default: boolean;
  precision: string;
  decoder: string;
  input: { width: number; height: number; type: string };
  classes: string[];
  sha256: string;
  file: string;
  source: string | null;
  quantizedFrom: string | null;
  method: string | null;
}

t.test('model list --json: every manifest entry, the same as the text table', async (t) => {
  const manifest = loadManifest(modelsDir);
  const json = await run(modelCommand, 'list', '--json');
  t.equal(json.code, 0, json.err);
  t.equal(json.err, '');
  const listed = doc<{ default: string; models: ListedModel[] }>(t, json.out);
  t.equal(listed.default, manifest.default);
  t.same(
    listed.models.map((m) => m.name),
    Object.keys(manifest.models),
  );
  for (const m of listed.models) {
    const spec = manifest.models[m.name]!;
    const q = spec.quantization as { from?: string; method?: string } | undefined;
    t.same(
      m,
      {
        name: m.name,
        default: m.name === manifest.default,
        precision: spec.precision,
        decoder: spec.decoder.kind,
        input: { width: spec.input.shape[3], height: spec.input.shape[2], type: spec.input.type ?? 'float32' },
        classes: spec.classes,
        sha256: spec.sha256,
        file: resolve(modelsDir, spec.file),
        source: (spec.source as { npm?: string } | undefined)?.npm ?? null,
        quantizedFrom: q?.from ?? null,
        method: q?.method ?? null,
      },
      `${m.name} as in the manifest`,
    );
    t.ok(existsSync(m.file), `${m.name}: file ${m.file} exists`);
  }
  t.equal(listed.models.filter((m) => m.default).length, 1, 'one default');
  const int8 = listed.models.find((m) => m.precision === 'int8');
  t.ok(
    int8?.quantizedFrom && listed.models.some((m) => m.name === int8.quantizedFrom && m.precision === 'fp32'),
    'the INT8 model names its fp32 source',
  );

  // The text table, column by column, says the same.
  const text = await run(modelCommand, 'list');
  t.equal(text.code, 0);
  const rows = text.out.trim().split('\n').slice(1, -1);
  t.equal(rows.length, listed.models.length);
  rows.forEach((row, i) => {
    const m = listed.models[i]!;
    const [name, star] = row.slice(0, 20).trim().split(' ');
    t.same([name, star === '*'], [m.name, m.default]);
    t.same(row.slice(20).trim().split(/\s+/).slice(0, 5), [
      m.precision,
      m.decoder,
      `${m.input.width}x${m.input.height}`,
      String(m.classes.length),
      m.sha256.slice(0, 12),
    ]);
    t.equal(row.slice(71), m.quantizedFrom ? `quantized from ${m.quantizedFrom} (${m.method})` : (m.source ?? ''));
  });

  // The CLI entry point itself (what bin/edgepatrol.js runs), as a process: stdout is the document and only it.
  const proc = spawnSync(
    process.execPath,
    ['--import', '@tapjs/typescript/import', join(root, 'src/cli/main.ts'), 'model', 'list', '--json'],
    { cwd: root, encoding: 'utf8', env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' } },
  );
  t.equal(proc.status, 0, proc.stderr);
  t.same(JSON.parse(proc.stdout), listed, 'edgepatrol model list --json prints JSON, not the table');

  const missing = await run(modelCommand, 'list', '--json', '--models-dir', join(root, 'no-such-models'));
  t.equal(missing.code, 1);
  t.equal(missing.out, '', 'nothing on stdout when it fails');
  t.match(missing.err, /^edgepatrol model list: model manifest .*no-such-models\/manifest\.json is missing/);
});

t.test('model verify --json: per model ok or its error; a failure exits 1 and is also on stderr', async (t) => {
  const manifest = loadManifest(modelsDir);
  const ok = await run(modelCommand, 'verify', '--json');
  t.equal(ok.code, 0, ok.err);
  const r = doc<{
    models: { name: string; ok: boolean; decoder: string; outputDims: number[]; ms: number; error: null }[];
    failed: number;
  }>(t, ok.out);
  t.equal(r.failed, 0);
  t.same(
    r.models.map((m) => [m.name, m.ok, m.decoder, m.outputDims, m.error]),
    Object.entries(manifest.models).map(([name, s]) => [name, true, s.decoder.kind, s.output.shape, null]),
  );
  t.ok(r.models.every((m) => m.ms >= 0));

  // A models folder where one file is one byte longer than its manifest says, and a name that is not there.
  const dir = t.testdir({});
  const fp32 = Object.entries(manifest.models).find(([, s]) => s.precision === 'fp32')!;
  const entry = { ...fp32[1], file: 'a.onnx' };
  writeFileSync(
    join(dir, 'manifest.json'),
    JSON.stringify({ schema: 1, default: 'good', models: { good: entry, bad: { ...entry, file: 'b.onnx' } } }),
  );
  copyFileSync(resolve(modelsDir, fp32[1].file), join(dir, 'a.onnx'));
  writeFileSync(join(dir, 'b.onnx'), Buffer.concat([readFileSync(join(dir, 'a.onnx')), Buffer.from([0])]));
  const bad = await run(modelCommand, 'verify', 'good', 'bad', 'nope', '--json', '--models-dir', dir);
  t.equal(bad.code, 1);
  const b = doc<{ models: { name: string; ok: boolean; error: string | null; outputDims: number[] | null }[]; failed: number }>(t, bad.out);
  t.equal(b.failed, 2);
  t.same(
    b.models.map((m) => [m.name, m.ok]),
    [
      ['good', true],
      ['bad', false],
      ['nope', false],
    ],
  );
  t.match(b.models[1]!.error, /b\.onnx does not match its manifest: sha256 expected/);
  t.match(b.models[2]!.error, /unknown model 'nope'/);
  t.equal(b.models[1]!.outputDims, null);
  t.match(bad.err, /edgepatrol model verify: bad: .*sha256/);
  t.match(bad.err, /edgepatrol model verify: nope: unknown model/);
  // The text form lists the same verdicts.
  const text = await run(modelCommand, 'verify', 'good', 'bad', 'nope', '--models-dir', dir);
  t.equal(text.code, 1);
  t.same(
    text.out
      .trim()
      .split('\n')
      .map((l) => l.split(/\s+/).slice(0, 2).join(' ')),
    ['ok good:', 'FAILED bad:', 'FAILED nope:'],
  );
});

t.test('model bench --json: ms per model and thread count, speed against the first model', async (t) => {
  const manifest = loadManifest(modelsDir);
  const names = Object.keys(manifest.models);
  const r = await run(modelCommand, 'bench', ...names, '--threads', '1', '--runs', '2', '--json');
  t.equal(r.code, 0, r.err);
  const b = doc<{
    runs: number;
    node: string;
    baseline: string;
    results: { threads: number; name: string; precision: string; ms: number; speedup: number }[];
  }>(t, r.out);
  t.same([b.runs, b.node, b.baseline], [2, process.version, names[0]]);
  t.same(
    b.results.map((x) => [x.threads, x.name, x.precision]),
    names.map((n) => [1, n, manifest.models[n]!.precision]),
  );
  t.ok(
    b.results.every((x) => x.ms > 0 && Math.abs(x.speedup - b.results[0]!.ms / x.ms) < 1e-9),
    'speedup = baseline ms / ms',
  );
  t.equal(b.results[0]!.speedup, 1);
  const bad = await run(modelCommand, 'bench', '--threads', 'x', '--json');
  t.same([bad.code, bad.out], [1, '']);
  t.match(bad.err, /--threads must be an integer/);
});

t.test('model compare --json: the figures the text prints, with class names', async (t) => {
  const manifest = loadManifest(modelsDir);
  const int8 = Object.entries(manifest.models).find(([, s]) => s.precision === 'int8')![0];
  const fp32 = (manifest.models[int8]!.quantization as { from: string }).from;
  const args = ['compare', int8, fp32, '--frames', video, '--count', '2', '--start', '60', '--end', '62', '--threads', '1'];
  const json = await run(modelCommand, ...args, '--json');
  t.equal(json.code, 0, json.err);
  type Compared = {
    a: { name: string; sha256: string };
    b: { name: string; sha256: string };
    threshold: number;
    frames: number;
    reference: number;
    detections: number;
    truePositives: number;
    precision: number;
    recall: number;
    f1: number;
    map50: number;
    scoreDrift: { pairs: number; mean: number; meanAbs: number; maxAbs: number };
    perClass: Record<string, { class: string; reference: number; ap: number }>;
    set: { path: string; start: number; end: number };
  };
  const c = doc<Compared>(t, json.out);
  t.same(
    [c.a, c.b],
    [
      { name: int8, sha256: manifest.models[int8]!.sha256 },
      { name: fp32, sha256: manifest.models[fp32]!.sha256 },
    ],
  );
  t.same([c.frames, c.threshold, c.set], [2, 0.35, { path: video, start: 60, end: 62 }]);
  t.ok(c.reference > 0, `${c.reference} reference boxes`);
  t.equal(c.perClass['0']?.class, 'person');
  t.equal(
    Object.values(c.perClass).reduce((n, x) => n + x.reference, 0),
    c.reference,
    'per-class references add up',
  );

  const text = await run(modelCommand, ...args);
  t.equal(text.code, 0, text.err);
  const f = (v: number): string => v.toFixed(4);
  t.match(text.out, `reference boxes ${c.reference}, detections ${c.detections}, matched ${c.truePositives}\n`);
  t.match(text.out, `precision ${f(c.precision)}  recall ${f(c.recall)}  F1 ${f(c.f1)}  mAP@0.5 ${f(c.map50)}\n`);
  t.match(text.out, `score drift over ${c.scoreDrift.pairs} matched pairs: mean ${f(c.scoreDrift.mean)}`);
  for (const x of Object.values(c.perClass))
    t.match(text.out, new RegExp(`  ${x.class} +reference +${x.reference}  AP@0\\.5 ${f(x.ap)}\\n`));
});

t.test('model add and quantize --json describe what they installed; model list --json then shows it', async (t) => {
  const manifest = loadManifest(modelsDir);
  const [name, spec] = Object.entries(manifest.models).find(([, s]) => s.precision === 'fp32' && s.decoder.kind === 'nanodet')!;
  const dir = t.testdir({ 'labels.txt': `${spec.classes.join('\n')}\n` });
  copyFileSync(resolve(modelsDir, spec.file), join(dir, 'fp.onnx'));
  const added = await run(
    modelCommand,
    'add',
    join(dir, 'fp.onnx'),
    '--decoder',
    'nanodet',
    '--labels',
    join(dir, 'labels.txt'),
    '--default',
    '--json',
    '--models-dir',
    dir,
  );
  t.equal(added.code, 0, added.err);
  const a = doc<{ name: string; file: string; sha256: string; decoder: string; classes: string[]; output: number[]; default: boolean }>(
    t,
    added.out,
  );
  t.same(
    a,
    {
      name: 'fp',
      file: join(dir, 'fp.onnx'),
      sha256: spec.sha256,
      decoder: 'nanodet',
      classes: spec.classes,
      output: spec.output.shape,
      default: true,
    },
    `the same bytes as ${name}, so its sha256`,
  );
  t.equal(sha256(a.file), a.sha256, 'sha256 of the installed file');

  const quantized = await run(
    modelCommand,
    'quantize',
    'fp',
    '--calib',
    video,
    '--frames',
    '2',
    '--start',
    '0',
    '--end',
    '10',
    '--method',
    'minmax',
    '--out',
    'q',
    '--json',
    '--models-dir',
    dir,
  );
  t.equal(quantized.code, 0, quantized.err);
  const q = doc<{
    name: string;
    from: string;
    file: string;
    sha256: string;
    bytes: number;
    method: string;
    calibration: object;
    quantizedNodes: number;
    headNodes: string[];
    keptFloat: string[];
    activationRanges: number;
    ranges: string;
    seconds: number;
    default: boolean;
  }>(t, quantized.out);
  t.same(
    [q.name, q.from, q.method, q.calibration, q.default, q.keptFloat],
    ['q', 'fp', 'minmax', { path: video, frames: 2, start: 0, end: 10 }, false, []],
  );
  t.same([q.sha256, q.bytes], [sha256(q.file), statSync(q.file).size], 'sha256 and size of the written file');
  t.ok(q.quantizedNodes > 0 && q.headNodes.length > 0 && q.activationRanges > 0 && q.seconds > 0);
  const calib = JSON.parse(readFileSync(q.ranges, 'utf8')) as { ranges: Record<string, unknown> };
  t.equal(Object.keys(calib.ranges).length, q.activationRanges, 'one range per calibrated activation in the record');

  const listed = doc<{ default: string; models: ListedModel[] }>(t, (await run(modelCommand, 'list', '--json', '--models-dir', dir)).out);
  t.equal(listed.default, 'fp');
  t.match(listed.models, [
    { name: 'fp', default: true, precision: 'fp32', source: 'fp.onnx', quantizedFrom: null, method: null, sha256: a.sha256 },
    {
      name: 'q',
      default: false,
      precision: 'int8',
      quantizedFrom: 'fp',
      method: 'minmax',
      sha256: q.sha256,
      file: q.file,
      input: { type: 'uint8' },
    },
  ]);
});

t.test('outbox stats|ls|show|replay --json against the store', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'outbox.db');
  const outbox = Outbox.open(file, { maxBytes: 1_000_000 });
  const ids = Array.from({ length: 3 }, () => uuidv7());
  for (const [i, id] of ids.entries()) {
    outbox.add(
      { id, cameraId: `cam-${i}`, type: 'presence', topic: 'ep/gw/event/presence', priority: i === 2 ? 'high' : 'normal' },
      (seq) => ({ id, seq }),
    );
  }
  outbox.markAcked(1, 1);
  const rows = outbox.list();
  const stats = outbox.stats();
  outbox.close();

  const s = await run(outboxCommand, 'stats', '--file', file, '--json');
  t.equal(s.code, 0, s.err);
  const sj = doc<{ file: string; pending: number; acked: number; lastSeq: number; bytes: number; dropped: object; drops: unknown[] }>(
    t,
    s.out,
  );
  t.match(sj, { file, pending: 2, acked: 1, lastSeq: 3, bytes: stats.bytes, dropped: { events: 0, evidence: 0 }, drops: [] });
  const st = await run(outboxCommand, 'stats', '--file', file);
  t.match(st.out, `pending ${sj.pending}, sent 0, acked ${sj.acked}, confirmed 0; last seq ${sj.lastSeq}`);
  t.match(st.out, `${sj.bytes} bytes held`);

  const ls = await run(outboxCommand, 'ls', '--file', file, '--json');
  t.equal(ls.code, 0, ls.err);
  const listed = ls.out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  t.same(
    listed,
    rows.map((r) => ({
      seq: r.seq,
      id: r.id,
      state: r.state,
      priority: r.priority,
      attempts: r.attempts,
      createdAt: new Date(r.createdAt).toISOString(),
      camera: r.cameraId,
      type: r.type,
      topic: r.topic,
      evidence: null,
    })),
    'one line per stored row',
  );
  const lsText = (await run(outboxCommand, 'ls', '--file', file)).out.trim().split('\n');
  t.same(
    lsText.map((l) => l.trim().split(/\s+/).slice(0, 3)),
    listed.map((r) => [String(r.seq), r.state, r.priority]),
    'the rows of the text form',
  );
  t.same(
    (await run(outboxCommand, 'ls', '--file', file, '--json', '--state', 'pending', '--limit', '1')).out
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { id: string }).id),
    [ids[1]],
  );

  const show = await run(outboxCommand, 'show', '3', '--file', file, '--json');
  t.equal(show.code, 0, show.err);
  const shown = doc<Record<string, unknown>>(t, show.out);
  t.same(shown, JSON.parse((await run(outboxCommand, 'show', '3', '--file', file)).out), 'the text form is the same document, indented');
  t.match(shown, {
    seq: 3,
    id: ids[2],
    cameraId: 'cam-2',
    priority: 'high',
    state: 'pending',
    evidenceFile: null,
    payload: { id: ids[2], seq: 3 },
  });

  const replay = await run(outboxCommand, 'replay', '--file', file, '--json');
  t.same([replay.code, doc<unknown>(t, replay.out)], [0, { file, replayed: 1 }]);
  t.match(doc<object>(t, (await run(outboxCommand, 'stats', '--file', file, '--json')).out), { pending: 3, acked: 0 });

  for (const [argv, why] of [
    [['show', uuidv7(), '--file', file, '--json'], /no event .* in /],
    [['stats', '--file', join(dir, 'nope', 'outbox.db'), '--json'], /cannot open outbox/],
    [['ls', '--file', file, '--json', '--limit', 'ten'], /--limit ten: expected a positive integer/],
  ] as const) {
    const r = await run(outboxCommand, ...argv);
    t.same([r.code, r.out], [1, ''], `${argv[0]} fails with nothing on stdout`);
    t.match(r.err, why);
  }
});

function statusConfig(dir: string): string {
  const file = join(dir, 'gateway.yaml');
  writeFileSync(
    file,
    `
gateway: { id: gw-json, dataDir: ${dir} }
mqtt: { url: mqtt://127.0.0.1 }
cameras:
  - id: gate
    source: { file: ${video} }
    zones:
      - id: lawn
        polygon: [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]
        rules: [{ id: people, kind: presence, type: people_on_lawn, classes: [person] }]
`,
  );
  return file;
}

t.test('status --json: the status file on one line; a stale one still printed, exit 1 and a warning', async (t) => {
  const dir = t.testdir({});
  const config = statusConfig(dir);
  const now = Date.now();
  const cam = (id: string, decodeFps: number) => ({
    id,
    state: 'streaming' as StreamState,
    since: new Date(now - 600_000).toISOString(),
    decodeFps,
    detectFps: 2,
    skippedFps: 0.4,
    motionRatio: 0.25,
    inferenceMs: 31.5,
    totals: { framesIn: 900, motionFrames: 200, queued: 150, detected: 140, skipped: 10, inferenceMs: 4400, events: 7 },
  });
  const status: AgentStatus = {
    schema: 1,
    gatewayId: 'gw-json',
    pid: process.pid,
    version: '0.0.0-test',
    startedAt: new Date(now - 3_600_000).toISOString(),
    writtenAt: new Date(now).toISOString(),
    windowSeconds: 5,
    cameras: [cam('gate', 12.5), { ...cam('yard', 0), state: 'backoff', reason: 'connection refused' }],
    outbox: { pending: 3 },
  };
  writeStatus(dir, status);
  const json = await run(statusCommand, '--config', config, '--json');
  t.equal(json.code, 0, json.err);
  t.equal(json.err, '');
  t.same(doc<AgentStatus>(t, json.out), status);
  const text = await run(statusCommand, '--config', config);
  const lines = text.out.trim().split('\n');
  t.match(lines[0], `gateway gw-json · agent pid ${process.pid} · version 0.0.0-test`);
  t.same(
    lines.slice(2).map((l) =>
      l
        .split(/\s{2,}/)
        .slice(0, 1)
        .concat(l.split(/\s{2,}/).slice(3, 9)),
    ),
    status.cameras.map((c) => [
      c.id,
      c.decodeFps.toFixed(1),
      c.detectFps.toFixed(1),
      c.skippedFps.toFixed(1),
      `${Math.round(c.motionRatio * 100)} %`,
      c.inferenceMs.toFixed(1),
      String(c.totals.events),
    ]),
    'the text rows show the values of the JSON',
  );

  writeStatus(dir, { ...status, writtenAt: new Date(now - 60_000).toISOString() });
  const stale = await run(statusCommand, '--config', config, '--json');
  t.equal(stale.code, 1);
  t.equal(doc<AgentStatus>(t, stale.out).writtenAt, new Date(now - 60_000).toISOString());
  // 60 s old when written; the command may start a second or two later on a loaded machine.
  t.match(stale.err, /was last written 6[0-9] s ago; the agent .* seems to have stopped/);

  const none = await run(statusCommand, '--config', statusConfig(t.testdir({})), '--json');
  t.same([none.code, none.out], [1, '']);
  t.match(none.err, /status\.json does not exist/);
  const invalid = join(dir, 'bad.yaml');
  writeFileSync(invalid, 'gateway: { id: 7 }\n');
  const bad = await run(statusCommand, '--config', invalid, '--json');
  t.same([bad.code, bad.out], [2, '']);
  t.match(bad.err, /bad\.yaml/);
});

t.test('camera snapshot --json: the files written and the frame size', async (t) => {
  const dir = t.testdir({});
  const config = statusConfig(dir);
  const out = join(dir, 'clean.jpg');
  const annotate = join(dir, 'zones.jpg');
  const r = await run(cameraCommand, 'snapshot', 'gate', '--config', config, '--out', out, '--annotate', annotate, '--json');
  t.equal(r.code, 0, r.err);
  const s = doc<{ camera: string; width: number; height: number; ts: string; out: string; annotate: string; zones: string[] }>(t, r.out);
  t.same([s.camera, s.out, s.annotate, s.zones], ['gate', out, annotate, ['lawn']]);
  t.ok(Math.abs(Date.parse(s.ts) - Date.now()) < 60_000, 'ts is the time of the frame grabbed');
  for (const f of [out, annotate]) {
    const meta = await sharp(f).metadata();
    t.same([meta.format, meta.width, meta.height], ['jpeg', s.width, s.height], `${f} is the frame size the JSON says`);
  }
  const text = await run(cameraCommand, 'snapshot', 'gate', '--config', config, '--out', out);
  t.equal(text.out, `wrote ${out} (${s.width}×${s.height})\n`);

  const unknown = await run(cameraCommand, 'snapshot', 'nope', '--config', config, '--out', out, '--json');
  t.same([unknown.code, unknown.out], [1, '']);
  t.match(unknown.err, /no camera 'nope' in .*gateway\.yaml; its cameras are: gate/);
});

t.test('rules test --json: one line per message, the messages the text lists', async (t) => {
  const dir = t.testdir({});
  const config = statusConfig(dir);
  const clip = join(dir, 'clip.mkv');
  const ff = spawnSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-ss', '10', '-t', '6', '-i', video, '-c:v', 'ffv1', clip]);
  t.equal(ff.status, 0, String(ff.stderr));
  const args = ['test', 'gate', '--config', config, '--video', clip, '--start', '2025-06-06T10:00:00Z'];
  const json = await run(rulesCommand, ...args, '--json');
  t.equal(json.code, 0, json.err);
  const msgs = json.out
    .trim()
    .split('\n')
    .map(
      (l) =>
        JSON.parse(l) as {
          time: number;
          state: string;
          eventType: string;
          zoneId: string;
          ruleId: string;
          eventId: string;
          dwellSeconds: number;
        },
    );
  t.ok(msgs.length > 0 && msgs[0]!.state === 'started', `${msgs.length} messages, the first one starts the event`);
  const text = await run(rulesCommand, ...args);
  const lines = text.out.trim().split('\n');
  t.equal(lines.pop(), `${msgs.length} event message${msgs.length === 1 ? '' : 's'}`);
  t.same(
    lines.map((l) => l.trim().split(/\s+/).slice(0, 9)),
    msgs.map((m) => [
      `${m.time.toFixed(1)}s`,
      m.state,
      m.eventType,
      'zone',
      m.zoneId,
      'rule',
      m.ruleId,
      'dwell',
      `${m.dwellSeconds.toFixed(1)}s`,
    ]),
  );
  // Event ids are new on every run; which messages share one is not.
  const partition = (ids: (string | undefined)[]): number[] => ids.map((id) => ids.indexOf(id));
  t.same(partition(lines.map((l) => /event (\S+)/.exec(l)?.[1])), partition(msgs.map((m) => m.eventId)));
});

t.test('tail --json: JSON lines for messages, evidence parts and saved images', async (t) => {
  const broker = await brokerFor(t);
  const dir = tempDirFor(t, 'tail-json');
  const image = randomBytes(3000);
  const messageId = uuidv7();
  const event = { messageId, seq: 1, note: 'json' };
  const out: string[] = [];
  const err: string[] = [];
  const done = runTail(
    { url: broker.url, prefix: 'ep', ack: false, check: false, json: true, saveEvidence: dir, count: 1, timeoutS: 20 },
    { out: (s) => out.push(s), err: (s) => err.push(s) },
  );
  while (!err.join('').includes('subscribed')) await new Promise((r) => setTimeout(r, 20));
  const pub = await mqtt.connectAsync(broker.url, { protocolVersion: 5 });
  t.teardown(() => pub.endAsync(true));
  await pub.publishAsync('ep/gw/availability', 'online', { qos: 1 });
  for (const [i, part] of [image.subarray(0, 2000), image.subarray(2000)].entries()) {
    await pub.publishAsync(`ep/gw/evidence/${messageId}`, part, {
      qos: 1,
      properties: {
        contentType: 'image/jpeg',
        userProperties: {
          messageId,
          part: String(i + 1),
          parts: '2',
          sha256: createHash('sha256').update(image).digest('hex'),
        },
      },
    });
  }
  await pub.publishAsync('ep/gw/event/presence', JSON.stringify(event), { qos: 1 });
  t.equal(await done, 0, err.join(''));
  const lines = out
    .join('')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  t.same(lines, [
    { kind: 'message', topic: 'ep/gw/availability', retained: false, payload: 'online' },
    { kind: 'evidence', topic: `ep/gw/evidence/${messageId}`, retained: false, messageId, part: 1, parts: 2, bytes: 2000 },
    { kind: 'evidence', topic: `ep/gw/evidence/${messageId}`, retained: false, messageId, part: 2, parts: 2, bytes: 1000 },
    { kind: 'saved', messageId, file: join(dir, `${messageId}.jpg`), bytes: 3000, parts: 2 },
    { kind: 'message', topic: 'ep/gw/event/presence', retained: false, payload: event },
  ]);
  t.same(readFileSync(join(dir, `${messageId}.jpg`)), image, 'the saved file is the image');
});
