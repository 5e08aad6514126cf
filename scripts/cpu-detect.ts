// One CPU kind's half of scripts/check-cpus.sh: runs the agent's detector (openDetector: the worker thread and
// onnxruntime session `edgepatrol detect` uses) on images, one model after the other, and prints one JSON line
// per model and image. check-cpus starts it natively, under qemu-x86_64 -cpu Haswell, or in the arm64 tree under
// qemu-aarch64, and compares what the lines say; it is not meant to be run by hand.
// Usage: node dist/scripts/cpu-detect.js --models-dir DIR --model NAME [--model NAME…] [--threshold S] IMAGE…
// Output: {"cpu":{"arch","features"}} first, then per model and image
//   {"model","sha256","image","width","height","ms","detections":[{"class","classId","score","box"}]}
// with every detection scoring ≥ --threshold (default 0.05: low, so the caller can rank for mAP and cut at its
// operating threshold itself; NMS keeps the same boxes above any cut, so one run serves both).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { decodeImage } from '../src/common/jpeg.js';
import { openDetector, type Detector } from '../src/vision/index.js';

const round = (v: number, digits: number): number => Number(v.toFixed(digits));

/** What this process sees of its CPU: on arm64 the Features line onnxruntime reads; on x86 qemu shows the host's flags, so none. */
function cpuFeatures(): string | undefined {
  if (process.arch !== 'arm64') return undefined;
  try {
    return /^Features\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { 'models-dir': { type: 'string' }, model: { type: 'string', multiple: true }, threshold: { type: 'string' } },
  });
  const threshold = Number(values.threshold ?? '0.05');
  if (!values['models-dir'] || !values.model?.length || positionals.length === 0 || !(threshold >= 0 && threshold <= 1)) {
    process.stderr.write('usage: cpu-detect --models-dir DIR --model NAME [--model NAME…] [--threshold S] IMAGE…\n');
    return 2;
  }
  process.stdout.write(`${JSON.stringify({ cpu: { arch: process.arch, features: cpuFeatures() } })}\n`);
  const images = [];
  for (const file of positionals) {
    try {
      images.push({ file, ...(await decodeImage(file)) });
    } catch (err) {
      throw new Error(`cannot decode image ${file}: ${(err as Error).message}`);
    }
  }
  for (const model of values.model) {
    let detector: Detector | undefined;
    try {
      // Under emulation on a busy machine one inference can take minutes; the agent's 60 s watchdog would end the worker.
      detector = await openDetector({
        modelsDir: values['models-dir'],
        model,
        scoreThreshold: threshold,
        maxDetections: 1000,
        timeoutMs: 30 * 60_000,
      });
      for (const img of images) {
        const t0 = performance.now();
        const dets = await detector.detect({ width: img.width, height: img.height, data: img.data, ts: 0 });
        process.stdout.write(
          `${JSON.stringify({
            model: detector.model.name,
            sha256: detector.model.sha256,
            image: img.file,
            width: img.width,
            height: img.height,
            ms: Math.round(performance.now() - t0),
            detections: dets.map((d) => ({
              class: d.class,
              classId: d.classId,
              score: round(d.score, 5),
              box: d.box.map((v) => round(v, 2)),
            })),
          })}\n`,
        );
      }
    } finally {
      await detector?.close();
    }
  }
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`cpu-detect (${process.arch}): ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
