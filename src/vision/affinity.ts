import { readdirSync } from 'node:fs';
import { loadAddon, type Addon } from '../native.js';

/** native/sched.c */
interface SchedAddon {
  threadId(): number;
  /** The CPUs thread `tid` (0: the calling thread) may run on, or -errno. */
  getAffinity(tid: number): number[] | number;
  /** 0, or -errno. */
  setAffinity(tid: number, cpus: number[]): number;
}

/** The addon, once per thread, or why not. EDGEPATROL_CPU_PINNING=off leaves every thread where the kernel puts it. */
export function schedAddon(): Addon<SchedAddon> {
  return loadAddon<SchedAddon>('sched', 'EDGEPATROL_CPU_PINNING');
}

/** Which CPUs the inference gets and which the rest of the agent, or why the CPUs are not split. */
export type CpuPlan = { ok: true; inference: number[]; others: number[] } | { ok: false; reason: string };

/**
 * Splits the CPUs the agent may use: the last `inferenceThreads` for the detectors' inference threads, the rest
 * for everything else. Not split when that would leave nothing for the rest (decoding needs a core too).
 */
export function planCpus(allowed: readonly number[], inferenceThreads: number): CpuPlan {
  if (!Number.isInteger(inferenceThreads) || inferenceThreads < 1)
    throw new RangeError(`inferenceThreads must be a positive integer, got ${inferenceThreads}`);
  const cpus = [...new Set(allowed)].sort((a, b) => a - b);
  if (cpus.length <= inferenceThreads) {
    return {
      ok: false,
      reason:
        `${cpus.length} CPU${cpus.length === 1 ? '' : 's'} for ${inferenceThreads} inference ` +
        `thread${inferenceThreads === 1 ? '' : 's'} leaves none for decoding`,
    };
  }
  return { ok: true, inference: cpus.slice(-inferenceThreads), others: cpus.slice(0, -inferenceThreads) };
}

/** The CPUs this process may run on (its main thread's affinity), or why they are not known. */
export function allowedCpus(): { ok: true; cpus: number[] } | { ok: false; reason: string } {
  const sched = schedAddon();
  if (!sched.ok) return { ok: false, reason: sched.reason };
  const cpus = sched.addon.getAffinity(process.pid);
  return typeof cpus === 'number' ? { ok: false, reason: `sched_getaffinity failed with errno ${-cpus}` } : { ok: true, cpus };
}

/** Lets only the calling thread (and threads it creates later) run on `cpus`; undefined, or why not. */
export function pinThisThread(cpus: readonly number[]): string | undefined {
  const sched = schedAddon();
  if (!sched.ok) return sched.reason;
  const err = sched.addon.setAffinity(0, [...cpus]);
  return err === 0 ? undefined : `sched_setaffinity(${cpus.join(',')}) failed with errno ${-err}`;
}

const sameSet = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Moves every thread of this process to `cpus`, except those already kept to exactly `skip` (the inference
 * threads, which pinned themselves). Threads and processes the moved threads create later inherit `cpus`: the
 * main thread's future ffmpeg children among them. Returns how many threads were moved, kept and failed.
 */
export function pinProcessThreads(cpus: readonly number[], skip?: readonly number[]): { moved: number; kept: number; failed: number } {
  const result = { moved: 0, kept: 0, failed: 0 };
  const sched = schedAddon();
  if (!sched.ok) return result;
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return result;
  }
  for (const name of tids) {
    const tid = Number(name);
    const now = sched.addon.getAffinity(tid);
    if (typeof now === 'number') continue; // exited meanwhile
    if (skip && sameSet(now, skip)) {
      result.kept++;
      continue;
    }
    if (sched.addon.setAffinity(tid, [...cpus]) === 0) result.moved++;
    else result.failed++;
  }
  return result;
}
