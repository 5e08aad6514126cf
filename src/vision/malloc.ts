import { loadAddon } from '../native.js';

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
  const native = loadAddon<{ tune: (mmapThreshold: number, trimThreshold: number) => boolean }>('malloc_tune', 'EDGEPATROL_MALLOC_TUNING');
  if (!native.ok) return (result = { tuned: false, reason: native.reason });
  return (result = native.addon.tune(MALLOC_THRESHOLD_BYTES, MALLOC_THRESHOLD_BYTES)
    ? { tuned: true }
    : { tuned: false, reason: 'mallopt refused the thresholds (not glibc?)' });
}
