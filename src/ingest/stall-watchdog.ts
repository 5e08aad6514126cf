/**
 * The last-frame watchdog of an ffmpeg run: no frame for stallMs (counted from the run's start, then from the
 * last frame) is a stall, reported once to `onStall`. One timer per stall period whatever the frame rate, and
 * the verdict waits for the next poll phase so that frames already in the pipe count.
 */
export class StallWatchdog {
  private timer: NodeJS.Timeout | undefined;
  private check: NodeJS.Immediate | undefined;
  private lastProgressAt = 0;

  constructor(
    private readonly stallMs: number,
    private readonly onStall: (silentMs: number) => void,
  ) {}

  /** A run started: it counts as progress, and the watch begins. */
  start(): void {
    this.lastProgressAt = Date.now();
    this.arm(this.stallMs);
  }

  /** A frame arrived. */
  progress(): void {
    this.lastProgressAt = Date.now();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    clearImmediate(this.check);
    this.check = undefined;
  }

  private arm(delayMs: number): void {
    this.timer = setTimeout(() => {
      // Decided after the next poll phase: when the event loop itself was blocked (a long synchronous task),
      // frames ffmpeg wrote meanwhile are still unread in the pipe, and must count before calling it a stall.
      this.timer = undefined;
      this.check = setImmediate(() => this.checkStall());
    }, delayMs);
  }

  private checkStall(): void {
    this.check = undefined;
    const silentMs = Date.now() - this.lastProgressAt;
    // Re-armed lazily rather than per frame: one timer per stall period, whatever the frame rate.
    if (silentMs < this.stallMs) return this.arm(this.stallMs - silentMs);
    this.onStall(silentMs);
  }
}
