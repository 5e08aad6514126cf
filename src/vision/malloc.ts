import { createRequire } from 'node:module';
import { join } from 'node:path';
import { projectRoot } from '../version.js';

/**
 * glibc's malloc mmap and trim thresholds for the agent process, bytes. With the defaults (dynamic, from
 * 128 KiB), onnxruntime running in the detector's worker thread returned memory to the kernel after each
 * inference and faulted it in again on the next (~300 minor page faults per inference) and ran 30–50 % slower
 * than on the main thread; 8 MiB left that unchanged, 32 MiB removed it (docs/decisions.md, "Page faults in the
 * detector's worker thread"). 32 MiB is also glibc's largest allowed mmap threshold on 64-bit.
 */
export const MALLOC_THRESHOLD_BYTES = 32 * 1024 * 1024;

export type MallocTuning = { tuned: true } | { tuned: false; reason: string };

let result: MallocTuning | undefined;

/**
 * Sets the thresholds once per process through the project's native addon (native/malloc_tune.c, built by
 * `npm ci` or `npm run build:native`), unless the environment has EDGEPATROL_MALLOC_TUNING=off; later calls return
 * the first result. Never throws: without the addon (not built, or not glibc) the agent works, with slower
 * inference, and the result says why.
 */
export function tuneMalloc(): MallocTuning {
  if (result) return result;
  // An operator's way out should a platform misbehave with it, and the benchmark's baseline.
  if (process.env.EDGEPATROL_MALLOC_TUNING === 'off') return (result = { tuned: false, reason: 'switched off by EDGEPATROL_MALLOC_TUNING=off' });
  const addon = join(projectRoot, 'build', 'Release', 'malloc_tune.node');
  try {
    const { tune } = createRequire(import.meta.url)(addon) as { tune: (mmapThreshold: number, trimThreshold: number) => boolean };
    result = tune(MALLOC_THRESHOLD_BYTES, MALLOC_THRESHOLD_BYTES)
      ? { tuned: true }
      : { tuned: false, reason: 'mallopt refused the thresholds (not glibc?)' };
  } catch (err) {
    result = { tuned: false, reason: `cannot load ${addon} (${(err as Error).message.split('\n')[0]}); build it with npm run build:native` };
  }
  return result;
}
