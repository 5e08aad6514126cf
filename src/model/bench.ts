import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { inputTensor, loadModelSession } from '../vision/inference.js';
import { loadManifest, resolveModel, type ModelSpec } from '../vision/manifest.js';
import { Preprocessor, type ModelInput } from '../vision/preprocess.js';
import { readFrameSet } from './frames.js';

/** One real frame of the sample clip (or a flat grey one when it is absent) as each model's input. */
export async function benchInput(modelsDir: string, spec: ModelSpec): Promise<ModelInput> {
  const [, , h, w] = spec.input.shape;
  const pre = Preprocessor.forModel(spec);
  const clip = join(modelsDir, '..', 'assets', 'vtest.avi');
  try {
    for await (const img of readFrameSet({ path: clip, frames: 1, start: 20, end: 21 })) return pre.run(img).slice();
  } catch {
    // No clip on this machine: a grey frame still times the model.
  }
  return pre.run({ width: w, height: h, data: new Uint8Array(w * h * 3).fill(128) }).slice();
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/**
 * Median ms/inference of each model at each thread count. Models alternate run by run, so load from other
 * processes hits them alike and the ratios (against the first model) are fair on a busy machine.
 */
export async function benchModels(
  modelsDir: string,
  names: string[],
  threadCounts: number[],
  runs: number,
): Promise<{ threads: number; results: { name: string; precision: string; ms: number }[] }[]> {
  const manifest = loadManifest(modelsDir);
  const models = names.map((n) => resolveModel(manifest, n));
  const out = [];
  for (const threads of threadCounts) {
    const sessions = [];
    for (const m of models) sessions.push({ m, s: await loadModelSession(m, threads), x: await benchInput(modelsDir, m.spec) });
    try {
      const times = sessions.map(() => [] as number[]);
      for (const { m, s, x } of sessions) for (let i = 0; i < 3; i++) await s.session.run({ [m.spec.input.name]: inputTensor(m.spec, x) });
      for (let r = 0; r < runs; r++) {
        for (let k = 0; k < sessions.length; k++) {
          const { m, s, x } = sessions[k]!;
          const feed = { [m.spec.input.name]: inputTensor(m.spec, x) };
          const t0 = performance.now();
          await s.session.run(feed);
          times[k]!.push(performance.now() - t0);
        }
      }
      out.push({ threads, results: sessions.map(({ m }, k) => ({ name: m.name, precision: m.spec.precision, ms: median(times[k]!) })) });
    } finally {
      for (const { s } of sessions) await s.session.release();
    }
  }
  return out;
}
