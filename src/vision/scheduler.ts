/**
 * The one inference queue all cameras share: it runs up to `concurrency` items at a time (one onnxruntime
 * session per model in a worker thread that takes them one by one; more items in flight keep that worker busy
 * while the main thread preprocesses the next and finishes the previous one), visiting the cameras
 * ("lanes") round-robin so a busy camera cannot starve a quiet one. Each lane holds at most `depth` items; when the worker is behind, a new item
 * pushes out the lane's oldest, which is counted as dropped (Frigate's skipped fps). Within a lane items run
 * in arrival order, so a tracker sees its frames in time order. Memory is bounded by lanes × depth items.
 */

export interface LaneStats {
  /** Items waiting now. */
  queued: number;
  /** Items pushed. */
  pushed: number;
  /** Items pushed out by newer ones before they ran. */
  dropped: number;
  /** Items run (successfully or not). */
  done: number;
  /** Items whose run threw. */
  failed: number;
  /** Sum over run items of the time they waited in the queue, ms. */
  waitMs: number;
  /** Sum over run items of their run time, ms. */
  runMs: number;
}

export interface SchedulerOptions<T> {
  /** Items a lane may hold; at least 1. */
  depth: number;
  /**
   * Items running at once, across lanes; default 1. With more than one, a lane's items may overlap: `run` must
   * finish them in start order if order matters (the worker detector does: it answers in call order).
   */
  concurrency?: number;
  /** Does the work for one item. A throw is counted and passed to `onError`; the worker carries on. */
  run: (lane: string, item: T) => Promise<void>;
  onError?: (lane: string, err: unknown) => void;
  /** Told about each item pushed out of its lane by a newer one (counted as dropped); it will not run. */
  onDrop?: (lane: string, item: T) => void;
  /** Clock, ms (tests). */
  now?: () => number;
}

interface Lane<T> {
  id: string;
  items: { item: T; at: number }[];
  stats: LaneStats;
  /** Items of this lane running now. */
  running: number;
  /** Called when `running` falls to zero (removeLane waits on them). */
  drained: (() => void)[];
}

export class InferenceScheduler<T> {
  private readonly depth: number;
  private readonly lanes: Lane<T>[] = [];
  private readonly byId = new Map<string, Lane<T>>();
  private next = 0;
  private readonly concurrency: number;
  private active = 0;
  private idleWaiters: (() => void)[] = [];
  private closed = false;
  private readonly now: () => number;

  constructor(private readonly opts: SchedulerOptions<T>) {
    if (!Number.isInteger(opts.depth) || opts.depth < 1) throw new RangeError(`queue depth must be a whole number ≥ 1, got ${opts.depth}`);
    this.depth = opts.depth;
    this.concurrency = opts.concurrency ?? 1;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1)
      throw new RangeError(`concurrency must be a whole number ≥ 1, got ${opts.concurrency}`);
    this.now = opts.now ?? (() => performance.now());
  }

  /** Adds a lane (a camera); pushing to an unknown lane adds it too. */
  addLane(id: string): void {
    if (this.byId.has(id)) return;
    const lane: Lane<T> = {
      id,
      items: [],
      stats: { queued: 0, pushed: 0, dropped: 0, done: 0, failed: 0, waitMs: 0, runMs: 0 },
      running: 0,
      drained: [],
    };
    this.lanes.push(lane);
    this.byId.set(id, lane);
  }

  /** Queues an item; drops (and counts) the lane's oldest when the lane is full. Ignored once closed. */
  push(laneId: string, item: T): void {
    if (this.closed) return;
    this.addLane(laneId);
    const lane = this.byId.get(laneId)!;
    lane.stats.pushed++;
    if (lane.items.length >= this.depth) {
      const old = lane.items.shift()!;
      lane.stats.dropped++;
      this.opts.onDrop?.(laneId, old.item);
    }
    lane.items.push({ item, at: this.now() });
    this.pump();
  }

  stats(laneId: string): LaneStats {
    const lane = this.byId.get(laneId);
    if (!lane) return { queued: 0, pushed: 0, dropped: 0, done: 0, failed: 0, waitMs: 0, runMs: 0 };
    return { ...lane.stats, queued: lane.items.length };
  }

  /** Resolves when nothing is queued or running. */
  async idle(): Promise<void> {
    if (this.active === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Takes a lane out (a camera a reload restarts or removes): its queued items go to onDrop (not counted: the lane
   * and its stats go), and the returned promise settles once its running items have. Items pushed to `id`
   * afterwards start a new lane. Other lanes carry on untouched.
   */
  async removeLane(id: string): Promise<void> {
    const lane = this.byId.get(id);
    if (!lane) return;
    this.byId.delete(id);
    const at = this.lanes.indexOf(lane);
    this.lanes.splice(at, 1);
    if (this.next > at) this.next--;
    if (this.lanes.length === 0 || this.next >= this.lanes.length) this.next = 0;
    for (const { item } of lane.items.splice(0)) this.opts.onDrop?.(id, item);
    if (lane.running > 0) await new Promise<void>((resolve) => lane.drained.push(resolve));
  }

  /** Refuses new items, discards queued ones (not counted as dropped) and waits for the running ones. */
  async close(): Promise<void> {
    this.closed = true;
    for (const lane of this.lanes) lane.items.length = 0;
    await this.idle();
  }

  private take(): { lane: Lane<T>; item: T; at: number } | null {
    for (let i = 0; i < this.lanes.length; i++) {
      const lane = this.lanes[(this.next + i) % this.lanes.length]!;
      const head = lane.items.shift();
      if (head) {
        this.next = (this.next + i + 1) % this.lanes.length;
        return { lane, ...head };
      }
    }
    return null;
  }

  /** Starts queued items while fewer than `concurrency` run; each one that ends starts the next. */
  private pump(): void {
    while (this.active < this.concurrency) {
      const job = this.take();
      if (!job) break;
      this.active++;
      void this.runJob(job);
    }
    if (this.active === 0) for (const wake of this.idleWaiters.splice(0)) wake();
  }

  private async runJob({ lane, item, at }: { lane: Lane<T>; item: T; at: number }): Promise<void> {
    const start = this.now();
    lane.stats.waitMs += start - at;
    lane.running++;
    try {
      await this.opts.run(lane.id, item);
    } catch (err) {
      lane.stats.failed++;
      this.opts.onError?.(lane.id, err);
    }
    lane.stats.done++;
    lane.stats.runMs += this.now() - start;
    if (--lane.running === 0) for (const wake of lane.drained.splice(0)) wake();
    this.active--;
    this.pump();
  }
}
