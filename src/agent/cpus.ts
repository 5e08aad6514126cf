import type { Logger } from 'pino';
import { allowedCpus, pinProcessThreads, planCpus, type CpuPlan } from '../vision/affinity.js';

type Split = { inference: number[]; others: number[] };

/**
 * model.pinCores: the inference threads on CPUs of their own, decoding and the rest of the agent on the others.
 * plan() before the detectors open (their worker threads are pinned as they start), pinOthers() before any
 * ffmpeg starts (children inherit the main thread's CPUs), release() when the agent stops.
 */
export class CpuPinning {
  /** The CPUs the process had before pinning (release() gives them back); undefined when they were not read. */
  allowed: number[] | undefined;
  private planned: CpuPlan | undefined;
  private pinned: Split | undefined;

  constructor(private readonly log: Logger) {}

  /** The CPU split for `inferenceThreads`, or why there is none (logged). */
  plan(inferenceThreads: number): CpuPlan {
    const allowed = allowedCpus();
    const plan = allowed.ok ? planCpus(allowed.cpus, inferenceThreads) : allowed;
    if (allowed.ok) this.allowed = allowed.cpus;
    // Too few CPUs is how the gateway is; a missing addon is a broken install.
    if (!plan.ok)
      this.log[allowed.ok ? 'info' : 'warn']({ reason: plan.reason }, `inference threads share the cores with decoding: ${plan.reason}`);
    this.planned = plan;
    return plan;
  }

  /** The inference CPUs of the plan, when there is one. */
  get inference(): number[] | undefined {
    return this.planned?.ok ? this.planned.inference : undefined;
  }

  /** Moves this process's other threads off the inference CPUs, and checks the inference threads are on them. */
  pinOthers(): void {
    if (!this.planned?.ok) return;
    const plan = this.planned;
    const r = pinProcessThreads(plan.others, plan.inference);
    if (r.moved > 0) this.pinned = { inference: plan.inference, others: plan.others };
    if (r.kept === 0 || r.failed > 0) {
      this.log.warn(
        { inference: plan.inference, others: plan.others, ...r },
        `CPU pinning incomplete: ${r.kept} thread(s) on the inference CPUs, ${r.failed} thread(s) could not be moved; inference shares its cores with decoding`,
      );
    } else {
      this.log.info(
        { inference: plan.inference, others: plan.others },
        `inference on CPU ${plan.inference.join(',')} alone; decoding and the rest of the agent on CPU ${plan.others.join(',')}`,
      );
    }
  }

  /** While pinned: the inference CPUs and those of everything else. */
  get split(): Split | undefined {
    return this.pinned;
  }

  /** The process may go on (tests, benches, an embedding program): its threads get all their CPUs back. */
  release(): void {
    if (this.pinned && this.allowed) pinProcessThreads(this.allowed);
    this.pinned = undefined;
  }
}
