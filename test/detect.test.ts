import t from 'tap';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { detectCommand } from '../src/cli/detect.js';
import { defaultModelsDir } from '../src/vision/index.js';

const modelsDir = defaultModelsDir();
const video = join(modelsDir, '..', 'assets', 'vtest.avi');
const tmp = mkdtempSync(join(tmpdir(), 'edgepatrol-detect-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

// A real frame of the pedestrian clip, 10 s in (768×576, several people walking).
const frame = join(tmp, 'vtest-10s.png');
const ff = spawnSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-ss', '10', '-i', video, '-frames:v', '1', frame]);
if (ff.status !== 0) throw new Error(`cannot extract a frame from ${video} (run scripts/setup.sh): ${ff.stderr}`);

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await detectCommand(argv, { stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) } });
  return { code, out, err };
}

interface JsonDetection {
  class: string;
  score: number;
  box: [number, number, number, number];
}

t.test('finds people in a vtest.avi frame', async (t) => {
  const plain = await run(frame);
  t.equal(plain.code, 0, plain.err);
  const rows = plain.out
    .trim()
    .split('\n')
    .map((l) => l.split(' '));
  const people = rows.filter((r) => r[0] === 'person' && Number(r[1]) > 0.4);
  t.ok(people.length >= 4, `${people.length} people with score > 0.4`);
  for (const r of people) {
    const [x1, y1, x2, y2] = r.slice(2).map(Number) as [number, number, number, number];
    t.ok(x1 >= 0 && y1 >= 0 && x2 <= 768 && y2 <= 576 && x1 < x2 && y1 < y2, `box ${r.slice(2).join(' ')} inside the 768x576 frame`);
  }

  const json = await run(frame, '--json');
  t.equal(json.code, 0);
  const lines = json.out.trim().split('\n');
  t.equal(lines.length, 1, 'one JSON document for an image');
  const doc = JSON.parse(lines[0]!) as { detections: JsonDetection[] };
  t.equal(doc.detections.length, rows.length, 'same detections as the plain output');
  const jsonPeople = doc.detections.filter((d) => d.class === 'person' && d.score > 0.4);
  t.equal(jsonPeople.length, people.length);
  t.ok(
    jsonPeople.every((d, i) => d.box.every((v, k) => Math.abs(v - Number(people[i]![2 + k])) <= 0.5)),
    'same person boxes (JSON keeps 0.1 px, plain rounds to pixels)',
  );
});

t.test('--annotate writes a JPEG of the input size', async (t) => {
  const out = join(tmp, 'annotated.jpg');
  const r = await run(frame, '--annotate', out, '--threshold', '0.5');
  t.equal(r.code, 0, r.err);
  const meta = await sharp(out).metadata();
  t.same([meta.format, meta.width, meta.height], ['jpeg', 768, 576]);
  t.ok(
    r.out
      .split('\n')
      .filter(Boolean)
      .every((l) => Number(l.split(' ')[1]) > 0.5),
    '--threshold applies',
  );
});

t.test('video: one JSON document per sampled frame', async (t) => {
  const out = join(tmp, 'video.jpg');
  const r = await run(video, '--json', '--fps', '2', '--max-frames', '3', '--annotate', out);
  t.equal(r.code, 0, r.err);
  const docs = r.out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { frame: number; time: number; detections: JsonDetection[] });
  t.same(
    docs.map((d) => [d.frame, d.time]),
    [
      [0, 0],
      [1, 0.5],
      [2, 1],
    ],
  );
  t.ok(
    docs.every((d) => d.detections.some((x) => x.class === 'person')),
    'people in every sampled frame',
  );
  const meta = await sharp(out).metadata();
  t.same([meta.width, meta.height], [768, 576]);
});

t.test('input errors name the file', async (t) => {
  const missing = join(tmp, 'nope.jpg');
  const r = await run(missing);
  t.equal(r.code, 1);
  t.equal(r.err, `edgepatrol detect: cannot read input file ${missing}: no such file\n`);

  const broken = join(tmp, 'broken.jpg');
  writeFileSync(broken, 'not a jpeg');
  const b = await run(broken);
  t.equal(b.code, 1);
  t.match(b.err, `cannot decode image ${broken}`);

  const notVideo = join(tmp, 'notes.txt');
  writeFileSync(notVideo, 'hello');
  const v = await run(notVideo);
  t.equal(v.code, 1);
  t.match(v.err, `${notVideo} is not a readable video`);
});

t.test('bad options print usage', async (t) => {
  for (const argv of [
    [],
    [frame, frame],
    [frame, '--fps', '0'],
    [frame, '--threshold', '2'],
    [frame, '--bogus'],
    [frame, '--max-frames', '1.5'],
  ]) {
    const r = await run(...argv);
    t.equal(r.code, 1, argv.join(' '));
    t.match(r.err, /^edgepatrol detect: .+\n\nusage: edgepatrol detect/, argv.join(' '));
  }
  const h = await run('--help');
  t.equal(h.code, 0);
  t.match(h.out, /--annotate FILE/);
});

t.test('model errors name the file and what to do', async (t) => {
  const manifest = JSON.parse(readFileSync(join(modelsDir, 'manifest.json'), 'utf8')) as {
    default: string;
    models: Record<string, { file: string }>;
  };
  const file = manifest.models[manifest.default]!.file;

  const noModel = join(tmp, 'models-missing');
  mkdirSync(noModel);
  copyFileSync(join(modelsDir, 'manifest.json'), join(noModel, 'manifest.json'));
  const m = await run(frame, '--models-dir', noModel);
  t.equal(m.code, 1);
  t.match(
    m.err,
    `model file ${join(noModel, file)} (model '${manifest.default}') is missing: run scripts/setup.sh (builds the default model)`,
  );

  const corrupt = join(tmp, 'models-corrupt');
  mkdirSync(corrupt);
  copyFileSync(join(modelsDir, 'manifest.json'), join(corrupt, 'manifest.json'));
  const bytes = readFileSync(join(modelsDir, file));
  const mid = bytes.length >> 1;
  bytes[mid] = bytes[mid]! ^ 0xff;
  writeFileSync(join(corrupt, file), bytes);
  const c = await run(frame, '--models-dir', corrupt);
  t.equal(c.code, 1);
  t.match(
    c.err,
    new RegExp(
      `model file ${join(corrupt, file)} does not match its manifest: sha256 expected [0-9a-f]{64}, found [0-9a-f]{64}\\. Refusing`,
    ),
  );

  const u = await run(frame, '--model', 'yolo-nope');
  t.equal(u.code, 1);
  t.match(u.err, `unknown model 'yolo-nope'`);
  t.match(u.err, `known models: ${Object.keys(manifest.models).join(', ')}`);

  const none = await run(frame, '--models-dir', join(tmp, 'no-such-dir'));
  t.equal(none.code, 1);
  t.match(none.err, `model manifest ${join(tmp, 'no-such-dir', 'manifest.json')} is missing: run scripts/setup.sh`);
});
