import { loadAddon, type Addon } from '../native.js';

/**
 * glibc's malloc mmap and trim thresholds for the agent process, bytes. With the defaults (dynamic, from
 * 128 KiB), onnxruntime running in the detector's worker thread returned memory to the kernel after each
 * inference and faulted it in again on the next (~300 minor page faults per inference) and ran 30–50 % slower
 * than on the main thread; 8 MiB left that unchanged, 32 MiB removed most of it
 * (docs/decisions/0021-malloc-thresholds-addon.md; the top pad below removed the rest). 32 MiB is also glibc's
 * largest allowed mmap threshold on 64-bit.
 */
export const MALLOC_THRESHOLD_BYTES = 32 * 1024 * 1024;

/**
 * glibc's malloc top pad, bytes: how much free memory an arena keeps at its top when it trims, and what stops a
 * thread arena deleting a 64 MiB heap that became free. The thresholds alone still left ~150 minor faults per
 * inference in the detector's worker (and, in phases, ~300 on a main-thread loop): every inference's 1.7 MB output
 * lives until V8 collects it, and tens of MB of them are then freed at once. 8 MiB left 10–80 faults; 64 MiB left
 * 3–6, and the detector ran 82–85 frames/s instead of 66–70 (docs/decisions/0031-malloc-top-pad.md).
 * Mostly address space: an arena grows by the pad untouched. What it costs is freed memory kept instead of given
 * back: in the 30-minute soak (4 cameras 1280×720) RSS settled at ~245 MB, max 249.9 (the target is 300).
 */
export const MALLOC_TOP_PAD_BYTES = 64 * 1024 * 1024;

export type MallocTuning = { tuned: true } | { tuned: false; reason: string };

/** native/malloc_tune.c: mallopt of the mmap and trim thresholds and the top pad; false when glibc refused one. */
export interface MallocAddon {
  tune(mmapThreshold: number, trimThreshold: number, topPad: number): boolean;
}

/** The addon, or why not (not built, not glibc, or EDGEPATROL_MALLOC_TUNING=off). */
export function mallocAddon(): Addon<MallocAddon> {
  return loadAddon<MallocAddon>('malloc_tune', 'EDGEPATROL_MALLOC_TUNING');
}

let result: MallocTuning | undefined;

/**
 * Sets the thresholds and the top pad once per process through the project's native addon (native/malloc_tune.c, built by
 * `npm ci` or `npm run build:native`), unless the environment has EDGEPATROL_MALLOC_TUNING=off; later calls return
 * the first result. Never throws: without the addon (not built, or not glibc) the agent works, with slower
 * inference, and the result says why.
 */
export function tuneMalloc(): MallocTuning {
  if (result) return result;
  const native = mallocAddon();
  if (!native.ok) return (result = { tuned: false, reason: native.reason });
  return (result = native.addon.tune(MALLOC_THRESHOLD_BYTES, MALLOC_THRESHOLD_BYTES, MALLOC_TOP_PAD_BYTES)
    ? { tuned: true }
    : { tuned: false, reason: 'mallopt refused the thresholds or the top pad (not glibc?)' });
}
