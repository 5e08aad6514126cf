import { constants } from 'node:fs';
import { access, writeFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { openDetector, type Detection, type Detector, type RgbFrame } from '../vision/index.js';
import { readVideoFrames, VideoError } from '../vision/video.js';
import { drawBoxes } from '../evidence/draw.js';
import { decodeImage, encodeJpeg } from '../common/jpeg.js';
import { EXIT, parseCommandArgs, reportError, UsageError, writeJson, type CommandIo } from './io.js';

const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.tif', '.tiff', '.gif', '.avif']);

const help = `usage: edgepatrol detect <image-or-video> [options]

Runs the detector on one image or on frames sampled from a video and prints the detections,
one line each: class, score, box x1 y1 x2 y2 in pixels of the input.
Files ending in ${[...IMAGE_EXTENSIONS].join(' ')} are read as images; anything else as a video (with ffmpeg).
  --json            one JSON document per line: {"detections":[{"class","score","box":[x1,y1,x2,y2]}]};
                    for a video one per sampled frame, with "frame" (index) and "time" (seconds);
                    nothing else goes to stdout, errors go to stderr
  --annotate FILE   write a JPEG with boxes and labels; for a video, of the first sampled frame
                    that has detections (the first frame if none has)
  --model NAME      model from the manifest (default: the manifest's default)
  --models-dir DIR  folder with manifest.json and the model files (default: the project's models/)
  --fps N           video frames sampled per second of video (default 1)
  --max-frames N    stop a video after N sampled frames
  --threshold S     minimum score, 0 to 1 (default 0.35)
  --threads N       onnxruntime intra-op threads (default 1)
exit codes: 0 done, 1 bad usage, unreadable input, or a missing or refused model
`;

function positiveNumber(name: string, value: string | undefined, integer: boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new UsageError(`--${name} must be a positive ${integer ? 'integer' : 'number'}, got '${value}'`);
  }
  return n;
}

const options = {
  json: { type: 'boolean' },
  annotate: { type: 'string' },
  model: { type: 'string' },
  'models-dir': { type: 'string' },
  fps: { type: 'string' },
  'max-frames': { type: 'string' },
  threshold: { type: 'string' },
  threads: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function parse(argv: string[]) {
  const { values, positionals } = parseCommandArgs(argv, options, { positionals: true });
  if (values.help) return { help: true as const };
  if (positionals.length !== 1)
    throw new UsageError(positionals.length ? `one input file expected, got ${positionals.length}` : 'an input file is required');
  const threshold = values.threshold === undefined ? undefined : Number(values.threshold);
  if (threshold !== undefined && !(threshold >= 0 && threshold <= 1))
    throw new UsageError(`--threshold must be between 0 and 1, got '${values.threshold}'`);
  return {
    help: false as const,
    input: positionals[0]!,
    json: values.json ?? false,
    annotate: values.annotate,
    model: values.model,
    modelsDir: values['models-dir'],
    fps: positiveNumber('fps', values.fps, false) ?? 1,
    maxFrames: positiveNumber('max-frames', values['max-frames'], true),
    threshold,
    threads: positiveNumber('threads', values.threads, true),
  };
}

const round = (v: number, digits: number): number => Number(v.toFixed(digits));

function jsonDetections(dets: Detection[]): { class: string; score: number; box: number[] }[] {
  return dets.map((d) => ({ class: d.class, score: round(d.score, 3), box: d.box.map((v) => round(v, 1)) }));
}

function plainLine(d: Detection, prefix: string): string {
  return `${prefix}${d.class} ${d.score.toFixed(3)} ${d.box.map((v) => Math.round(v)).join(' ')}\n`;
}

async function writeAnnotated(file: string, frame: RgbFrame, dets: Detection[]): Promise<void> {
  drawBoxes(
    frame,
    dets.map((d) => ({ box: d.box, label: `${d.class} ${d.score.toFixed(2)}`, classId: d.classId })),
  );
  try {
    await writeFile(file, await encodeJpeg(frame, 85));
  } catch (err) {
    throw new Error(`cannot write --annotate file ${file}: ${(err as Error).message}`);
  }
}

export async function detectCommand(argv: string[], io: CommandIo = process): Promise<number> {
  let opts: ReturnType<typeof parse>;
  try {
    opts = parse(argv);
  } catch (err) {
    return reportError(io, 'detect', err, help);
  }
  if (opts.help) {
    io.stdout.write(help);
    return EXIT.ok;
  }
  const { input } = opts;
  try {
    await access(input, constants.R_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    io.stderr.write(`edgepatrol detect: cannot read input file ${input}: ${why}\n`);
    return EXIT.failed;
  }

  // A reader that goes away (`edgepatrol detect clip.avi | head`) ends the run quietly instead of crashing it.
  let outputClosed = false;
  const onStdoutError = (): void => {
    outputClosed = true;
  };
  if (io.stdout === process.stdout) process.stdout.on('error', onStdoutError);
  let detector: Detector | undefined;
  try {
    const open = (): Promise<Detector> =>
      openDetector({ model: opts.model, modelsDir: opts.modelsDir, threads: opts.threads, scoreThreshold: opts.threshold });
    if (IMAGE_EXTENSIONS.has(extname(input).toLowerCase())) {
      let image;
      try {
        image = await decodeImage(input);
      } catch (err) {
        throw new Error(`cannot decode image ${input}: ${(err as Error).message}`);
      }
      const frame: RgbFrame = { ...image, ts: Date.now() };
      detector = await open();
      const dets = await detector.detect(frame);
      if (opts.json) writeJson(io, { detections: jsonDetections(dets) });
      else for (const d of dets) io.stdout.write(plainLine(d, ''));
      if (opts.annotate) await writeAnnotated(opts.annotate, frame, dets);
      return EXIT.ok;
    }

    detector = await open();
    let chosen: { frame: RgbFrame; dets: Detection[] } | undefined;
    for await (const frame of readVideoFrames(input, { fps: opts.fps, maxFrames: opts.maxFrames })) {
      const dets = await detector.detect(frame);
      const time = round(frame.time, 3);
      if (opts.json) writeJson(io, { frame: frame.index, time, detections: jsonDetections(dets) });
      else for (const d of dets) io.stdout.write(plainLine(d, `frame ${frame.index} t=${time.toFixed(2)}s `));
      if (!chosen || (chosen.dets.length === 0 && dets.length > 0)) chosen = { frame, dets };
      if (outputClosed) break;
    }
    if (!chosen) throw new VideoError(`${input}: no frames decoded`);
    if (opts.annotate) await writeAnnotated(opts.annotate, chosen.frame, chosen.dets);
    return EXIT.ok;
  } catch (err) {
    // ModelError, VideoError and decode/write failures already name the file and what to do.
    return reportError(io, 'detect', err, help, { modelExit: EXIT.failed });
  } finally {
    process.stdout.off('error', onStdoutError);
    await detector?.close();
  }
}
