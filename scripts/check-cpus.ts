import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { extname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { compareDetections, type Agreement, type Box, type FrameDetections } from '../src/model/compare.js';
import { IMAGE_EXTENSIONS } from '../src/model/frames.js';
import { loadManifest, resolveModel } from '../src/vision/index.js';
import { projectRoot } from '../src/version.js';
import { runCommand, stderrTail } from '../src/common/run.js';

const help = `usage: bash scripts/check-cpus.sh [options] [image…]

Runs the agent's detector (INT8 default and its FP32 source) on held-out frames of assets/vtest.avi plus the
images given, as each CPU kind would, and measures INT8 against FP32 (the host runs both; an emulated kind runs
INT8 only, against the host's FP32, since emulated FP32 takes most of the time): precision, recall, F1, mAP@0.5
and score drift. Prints one JSON line per kind, image and model
{"cpu","image","model","detections":[{"class","score","box"}]}, one agreement line per kind and a summary.
What passes: on x64-host, INT8 against FP32 on the whole held-out set (assets/images/heldout and the frames: the
emulated kinds are too slow for it); on every other kind, its INT8 detections against x64-host's INT8 detections
on the frames ("sameAsHost": F1 and the largest score difference), so that the host's figure holds for it too.
CPU kinds:
  x64-host      this machine, natively (the output says whether its CPU has VNNI)
  x64-haswell   qemu-x86_64 -cpu Haswell: AVX2 without VNNI (onnxruntime's saturating u8×s8 kernels)
  arm64-a72     qemu-aarch64 -cpu cortex-a72: arm64 without the dot-product extension
  arm64-max     qemu-aarch64 -cpu max with asimddp: arm64 with dot product
The arm64 kinds build .cache/arm64 first (scripts/arm64.sh build: once, several minutes; then seconds).
Emulation is slow: minutes per image on Haswell and arm64 max, about a minute on the Cortex-A72.
  --cpus a,b          kinds to run (default: all four)
  --frames N          held-out vtest frames (40–79 s) to add to the images (default 3; 0: only the images given)
  --quick             the bounded form for CI: --frames 2
  --model NAME        the model to judge (default: the manifest's default)
  --reference NAME    the reference (default: the judged model's quantization.from)
  --models-dir DIR    folder with manifest.json and the model files (default: the project's models/)
  --min-f1 F          fail when the host's held-out F1, or a kind's F1 against the host, is below F (default 0.95)
  --heldout DIR       the host's held-out images (default assets/images/heldout when present; 'none': only the frames)
  --threshold S       operating score threshold for precision, recall, F1 and drift (default 0.35)
  --jobs N            kinds run at once (default: the number of CPUs, at most 2)
  --json              JSON lines only: detections, then one {"cpu","agreement"} line per kind
exit codes: 0 every kind at or above --min-f1, 1 a kind below it, 2 bad usage or a kind that failed to run
`;

class UsageError extends Error {}

const KINDS = ['x64-host', 'x64-haswell', 'arm64-a72', 'arm64-max'] as const;
type Kind = (typeof KINDS)[number];
const DESCRIPTION: Record<Kind, string> = {
  'x64-host': 'x86-64, this machine',
  'x64-haswell': 'x86-64 Haswell (qemu): AVX2, no VNNI',
  'arm64-a72': 'arm64 Cortex-A72 (qemu): no dot product',
  'arm64-max': 'arm64 max (qemu): dot product',
};
/** Held-out frames: calibration used vtest.avi 0–40 s. */
const FRAME_TIMES = [45, 60, 75, 52, 68];

interface Options {
  kinds: Kind[];
  images: string[];
  frames: number;
  model: string | undefined;
  reference: string | undefined;
  modelsDir: string;
  heldout: string | undefined;
  minF1: number;
  threshold: number;
  jobs: number;
  json: boolean;
}

function number(name: string, value: string | undefined, fallback: number, check: (n: number) => boolean, what: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || !check(n)) throw new UsageError(`--${name} must be ${what}, got '${value}'`);
  return n;
}

export function parseOptions(argv: string[]): Options | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        cpus: { type: 'string' },
        frames: { type: 'string' },
        quick: { type: 'boolean' },
        model: { type: 'string' },
        reference: { type: 'string' },
        'models-dir': { type: 'string' },
        'min-f1': { type: 'string' },
        threshold: { type: 'string' },
        jobs: { type: 'string' },
        heldout: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return 'help';
  const kinds =
    values.cpus === undefined
      ? [...KINDS]
      : values.cpus
          .split(',')
          .map((k) => k.trim())
          .filter(Boolean);
  for (const k of kinds)
    if (!(KINDS as readonly string[]).includes(k)) throw new UsageError(`unknown CPU kind '${k}' in --cpus; known: ${KINDS.join(', ')}`);
  if (kinds.length === 0) throw new UsageError('--cpus names no CPU kind');
  // Every other kind is judged against the host's detections, so the host always runs, first.
  if (!kinds.includes('x64-host')) kinds.unshift('x64-host');
  const defaultHeldout = join(projectRoot, 'assets', 'images', 'heldout');
  const heldout = values.heldout === 'none' ? undefined : (values.heldout ?? (existsSync(defaultHeldout) ? defaultHeldout : undefined));
  if (heldout !== undefined && !existsSync(heldout))
    throw new UsageError(`--heldout ${heldout} does not exist: give a folder of images, or 'none'`);
  if (values.quick && values.frames !== undefined) throw new UsageError('--quick sets --frames 2; give one of them');
  const frames = values.quick
    ? 2
    : number(
        'frames',
        values.frames,
        3,
        (n) => Number.isInteger(n) && n >= 0 && n <= FRAME_TIMES.length,
        `an integer from 0 to ${FRAME_TIMES.length}`,
      );
  if (frames === 0 && positionals.length === 0) throw new UsageError('--frames 0 and no image given: nothing to check');
  for (const img of positionals) if (!existsSync(img)) throw new UsageError(`image ${img} does not exist`);
  return {
    kinds: [...new Set(kinds)] as Kind[],
    images: positionals.map((p) => resolve(p)),
    frames,
    model: values.model,
    reference: values.reference,
    modelsDir: resolve(values['models-dir'] ?? join(projectRoot, 'models')),
    heldout: heldout === undefined ? undefined : resolve(heldout),
    minF1: number('min-f1', values['min-f1'], 0.95, (n) => n >= 0 && n <= 1, 'between 0 and 1'),
    threshold: number(
      'threshold',
      values.threshold,
      0.35,
      (n) => n > 0.05 && n <= 1,
      'above 0.05 (the ranking threshold for mAP) and at most 1',
    ),
    jobs: number('jobs', values.jobs, Math.min(2, availableParallelism()), (n) => Number.isInteger(n) && n >= 1, 'a positive integer'),
    json: values.json ?? false,
  };
}

/** Runs a command (never through a shell); resolves with its stdout, rejects naming the command and its stderr's tail. */
async function run(cmd: string, args: string[], opts: { cwd?: string; inheritStderr?: boolean } = {}): Promise<string> {
  const r = await runCommand(cmd, args, { cwd: opts.cwd ?? projectRoot, ...(opts.inheritStderr && { inheritStderr: true }) });
  if (r.code === 0) return r.stdout;
  const detail = r.stderr ? `:\n${stderrTail(r, 8)}` : '';
  throw new Error(`${[cmd, ...args].join(' ')} ${r.signal ? `was killed by ${r.signal}` : `exited with ${r.code}`}${detail}`);
}

/** The held-out vtest frames as PNG files in .cache/check-cpus (extracted once with ffmpeg). */
async function heldOutFrames(count: number): Promise<string[]> {
  const video = join(projectRoot, 'assets', 'vtest.avi');
  if (count > 0 && !existsSync(video))
    throw new Error(`${video} is missing: run bash scripts/setup.sh (it fetches the sample clip), or give images and --frames 0`);
  const dir = join(projectRoot, '.cache', 'check-cpus');
  mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  for (const t of FRAME_TIMES.slice(0, count)) {
    const file = join(dir, `vtest-${t}s.png`);
    if (!existsSync(file))
      await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-ss', String(t), '-i', video, '-frames:v', '1', file]);
    files.push(file);
  }
  return files;
}

/** This machine's VNNI, from /proc/cpuinfo's flags (AVX-512 VNNI or AVX-VNNI). */
function hostVnni(): string {
  const flags = /^flags\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.split(' ') ?? [];
  const vnni = ['avx512_vnni', 'avx_vnni'].filter((f) => flags.includes(f));
  return vnni.length ? `VNNI (${vnni.join(', ')})` : flags.includes('avx2') ? 'AVX2, no VNNI' : 'no AVX2, no VNNI';
}

function command(kind: Kind, workerArgs: string[]): [string, string[]] {
  const worker = join(projectRoot, 'dist', 'scripts', 'cpu-detect.js');
  const armWorker = join(projectRoot, '.cache', 'arm64', 'app', 'dist', 'scripts', 'cpu-detect.js');
  switch (kind) {
    case 'x64-host':
      return [process.execPath, [worker, ...workerArgs]];
    case 'x64-haswell':
      return ['qemu-x86_64-static', ['-cpu', 'Haswell', process.execPath, worker, ...workerArgs]];
    case 'arm64-a72':
      return ['bash', [join(projectRoot, 'scripts', 'arm64.sh'), 'node', 'a72', armWorker, ...workerArgs]];
    case 'arm64-max':
      return ['bash', [join(projectRoot, 'scripts', 'arm64.sh'), 'node', 'max', armWorker, ...workerArgs]];
  }
}

interface ImageResult {
  model: string;
  sha256: string;
  image: string;
  ms: number;
  detections: (Box & { class: string })[];
}
interface KindResult {
  kind: Kind;
  description: string;
  seconds: number;
  lines: ImageResult[];
  features?: string;
  error?: string;
  /** INT8 against FP32 on the frames. */
  agreement?: Agreement;
  /** x64-host only: INT8 against FP32 on the held-out set. */
  heldout?: Agreement;
  /** Other kinds: INT8 against x64-host's INT8 on the frames, and the largest score difference of matched boxes. */
  sameAsHost?: Agreement;
}

function detectionsOf(r: Pick<KindResult, 'kind' | 'lines'>, model: string, image: string): ImageResult['detections'] {
  const line = r.lines.find((l) => l.model === model && l.image === image);
  if (!line) throw new Error(`${r.kind}: no output for model ${model} on ${image}`);
  return line.detections;
}

/**
 * Runs one kind. The host runs both models (on the frames and the held-out set); an emulated kind runs only the
 * INT8 model, against the host's FP32 detections (`host`): emulated FP32 costs most of the time and is not what
 * differs between CPUs.
 */
async function runKind(
  kind: Kind,
  opts: Options,
  judged: string,
  reference: string,
  images: string[],
  host?: KindResult,
  heldoutImages: string[] = [],
): Promise<KindResult> {
  const description = kind === 'x64-host' ? `${DESCRIPTION[kind]}: ${hostVnni()}` : DESCRIPTION[kind];
  const t0 = performance.now();
  const models = host ? ['--model', judged] : ['--model', judged, '--model', reference];
  const [cmd, args] = command(kind, ['--models-dir', opts.modelsDir, ...models, ...images, ...heldoutImages]);
  if (!opts.json)
    process.stderr.write(`[check-cpus] ${kind}: ${images.length + heldoutImages.length} image(s) × ${models.length / 2} model(s)…\n`);
  let out: string;
  try {
    out = await run(cmd, args);
  } catch (err) {
    return { kind, description, seconds: (performance.now() - t0) / 1000, lines: [], error: (err as Error).message };
  }
  const seconds = (performance.now() - t0) / 1000;
  const parsed = out
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { cpu?: { features?: string } } & ImageResult);
  const features = parsed.find((l) => l.cpu)?.cpu?.features;
  const lines = parsed.filter((l) => !l.cpu);
  const pick = (model: string, image: string): ImageResult['detections'] =>
    detectionsOf(model === reference && host ? host : { kind, lines }, model, image);
  const frames = (set: string[]): FrameDetections[] =>
    set.map((image) => {
      const all = pick(judged, image);
      return {
        aAll: all,
        a: all.filter((d) => d.score >= opts.threshold),
        b: pick(reference, image).filter((d) => d.score >= opts.threshold),
      };
    });
  return {
    kind,
    description,
    seconds,
    lines,
    features,
    agreement: compareDetections(frames(images)),
    ...(heldoutImages.length ? { heldout: compareDetections(frames(heldoutImages)) } : {}),
  };
}

const f3 = (v: number): string => v.toFixed(3);

/** The kind's INT8 detections against the host's on the same images: the host's are the reference. */
function againstHost(r: KindResult, host: KindResult, judged: string, images: string[], threshold: number): Agreement {
  return compareDetections(
    images.map((image) => {
      const all = detectionsOf(r, judged, image);
      return {
        aAll: all,
        a: all.filter((d) => d.score >= threshold),
        b: detectionsOf(host, judged, image).filter((d) => d.score >= threshold),
      };
    }),
  );
}

const agreementJson = (a: Agreement): Record<string, unknown> => ({
  images: a.frames,
  referenceBoxes: a.reference,
  detections: a.detections,
  truePositives: a.truePositives,
  precision: Number(a.precision.toFixed(4)),
  recall: Number(a.recall.toFixed(4)),
  f1: Number(a.f1.toFixed(4)),
  map50: Number(a.map50.toFixed(4)),
  scoreDrift: {
    mean: Number(a.scoreDrift.mean.toFixed(4)),
    meanAbs: Number(a.scoreDrift.meanAbs.toFixed(4)),
    maxAbs: Number(a.scoreDrift.maxAbs.toFixed(4)),
  },
});

async function main(argv: string[]): Promise<number> {
  let opts: Options;
  try {
    const parsed = parseOptions(argv);
    if (parsed === 'help') {
      process.stdout.write(help);
      return 0;
    }
    opts = parsed;
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`check-cpus: ${err.message}\n\n${help}`);
    return 2;
  }
  const manifest = loadManifest(opts.modelsDir);
  const judged = resolveModel(manifest, opts.model);
  const from = (judged.spec.quantization as { from?: unknown } | undefined)?.from;
  const referenceName = opts.reference ?? (typeof from === 'string' ? from : undefined);
  if (!referenceName) {
    process.stderr.write(
      `check-cpus: model '${judged.name}' in ${manifest.file} records no quantization.from; name its FP32 source with --reference\n`,
    );
    return 2;
  }
  const reference = resolveModel(manifest, referenceName);
  const images = [...(await heldOutFrames(opts.frames)), ...opts.images];
  const heldoutImages =
    opts.heldout === undefined
      ? []
      : readdirSync(opts.heldout)
          .filter((f) => IMAGE_EXTENSIONS.has(extname(f).toLowerCase()))
          .sort()
          .map((f) => join(opts.heldout!, f));
  if (opts.heldout !== undefined && heldoutImages.length === 0) {
    process.stderr.write(
      `check-cpus: ${opts.heldout} holds no images; fetch them with bash scripts/fetch-images.sh, or give --heldout none\n`,
    );
    return 2;
  }

  if (opts.kinds.some((k) => k.startsWith('arm64'))) {
    const t0 = performance.now();
    // Its progress goes to stderr, also under --json (stdout stays JSON lines).
    await run('bash', [join(projectRoot, 'scripts', 'arm64.sh'), 'build'], { inheritStderr: true });
    if (!opts.json) process.stderr.write(`[check-cpus] arm64 tree ready in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  }

  // Each kind's lines go out as soon as it is done (an emulated kind takes minutes); the summary waits for all.
  const out = (line: unknown): void => {
    process.stdout.write(`${JSON.stringify(line)}\n`);
  };
  let failed = false;
  let below = false;
  const report = (r: KindResult): void => {
    const { kind } = r;
    for (const l of r.lines) {
      out({
        cpu: kind,
        image: l.image,
        model: l.model,
        detections: l.detections
          .filter((d) => d.score >= opts.threshold)
          .map((d) => ({ class: d.class, score: Number(d.score.toFixed(3)), box: d.box.map((v) => Number(v.toFixed(1))) })),
      });
    }
    if (r.error || !r.agreement) {
      failed = true;
      if (opts.json) out({ cpu: kind, error: r.error });
      else process.stdout.write(`${kind}: FAILED — ${r.error}\n`);
      return;
    }
    // The host is judged on the held-out set (or the frames without one), every other kind against the host.
    const judgedBy = kind === 'x64-host' ? (r.heldout ?? r.agreement) : r.sameAsHost!;
    const pass = judgedBy.f1 >= opts.minF1;
    if (!pass) below = true;
    out({
      cpu: kind,
      description: r.description,
      ...(r.features ? { features: r.features } : {}),
      model: judged.name,
      sha256: judged.spec.sha256,
      reference: reference.name,
      agreement: agreementJson(r.agreement),
      ...(r.heldout ? { heldout: { path: opts.heldout, ...agreementJson(r.heldout) } } : {}),
      ...(r.sameAsHost ? { sameAsHost: agreementJson(r.sameAsHost) } : {}),
      threshold: opts.threshold,
      minF1: opts.minF1,
      pass,
      seconds: Number(r.seconds.toFixed(1)),
    });
  };

  const results = new Map<Kind, KindResult>();
  const finish = (r: KindResult): void => {
    results.set(r.kind, r);
    if (!opts.json) process.stderr.write(`[check-cpus] ${r.kind}: ${r.error ? 'failed' : 'done'} in ${r.seconds.toFixed(1)} s\n`);
    report(r);
  };
  let host: KindResult;
  try {
    host = await runKind('x64-host', opts, judged.name, reference.name, images, undefined, heldoutImages);
  } catch (err) {
    host = { kind: 'x64-host', description: DESCRIPTION['x64-host'], seconds: 0, lines: [], error: (err as Error).message };
  }
  finish(host);
  if (host.error) return 2;
  const queue = opts.kinds.filter((k) => k !== 'x64-host');
  await Promise.all(
    Array.from({ length: Math.min(opts.jobs, queue.length) }, async () => {
      for (let kind = queue.shift(); kind; kind = queue.shift()) {
        let r: KindResult;
        try {
          r = await runKind(kind, opts, judged.name, reference.name, images, host);
          if (!r.error) r.sameAsHost = againstHost(r, host, judged.name, images, opts.threshold);
        } catch (err) {
          r = { kind, description: DESCRIPTION[kind], seconds: 0, lines: [], error: (err as Error).message };
        }
        finish(r);
      }
    }),
  );
  if (!opts.json) {
    process.stdout.write(
      `\n${judged.name} (sha256 ${judged.spec.sha256.slice(0, 12)}…) against ${reference.name} on ${images.length} frame(s), score >= ` +
        `${opts.threshold}, IoU >= 0.5, same class\n`,
    );
    if (host.heldout) {
      const h = host.heldout;
      process.stdout.write(
        `x64-host on the held-out set (${h.frames} images of ${opts.heldout}): F1 ${f3(h.f1)}  P ${f3(h.precision)}  R ${f3(h.recall)}  ` +
          `mAP50 ${f3(h.map50)}  ${h.reference} ref boxes  ${h.f1 >= opts.minF1 ? 'ok' : 'BELOW'} (must be >= ${opts.minF1})\n`,
      );
    }
    for (const kind of opts.kinds) {
      const r = results.get(kind)!;
      if (!r.agreement) continue;
      const a = r.agreement;
      process.stdout.write(
        `${kind.padEnd(12)} F1 ${f3(a.f1)}  P ${f3(a.precision)}  R ${f3(a.recall)}  mAP50 ${f3(a.map50)}  ` +
          `drift ${a.scoreDrift.mean >= 0 ? '+' : ''}${f3(a.scoreDrift.mean)} (|mean| ${f3(a.scoreDrift.meanAbs)}, max ${f3(a.scoreDrift.maxAbs)})  ` +
          `${a.reference} ref boxes  ${r.seconds.toFixed(0)} s  [${r.description}]\n`,
      );
      if (r.sameAsHost) {
        const h = r.sameAsHost;
        process.stdout.write(
          `${''.padEnd(12)} against x64-host's INT8: F1 ${f3(h.f1)}, largest score difference ${f3(h.scoreDrift.maxAbs)}  ` +
            `${h.f1 >= opts.minF1 ? 'ok' : 'BELOW'} (must be >= ${opts.minF1})\n`,
        );
      }
    }
  }
  return failed ? 2 : below ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`check-cpus: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
  },
);
