/**
 * One camera's ffmpeg, supervised: the stream's state machine (connecting, streaming, stalled, backoff, failed,
 * ended), spawning ffmpeg and reaping it, the last-frame watchdog (stall-watchdog.ts), restarts with backoff
 * (sooner when the camera's port answers again, reachability.ts), and which run's bytes count. The bytes
 * themselves become frames in frame-assembler.ts; ffmpeg's arguments and error lines are ffmpeg.ts's.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { safeUrl } from '../log.js';
import type { Frame } from '../common/frame.js';
import { frameBytes } from '../common/frame.js';
import { backoffDelay, defaultBackoff, type BackoffOptions } from '../common/backoff.js';
import { ffmpegArgs, parseInput, scrubCredentials, StderrTail, type Input } from './ffmpeg.js';
import { FrameAssembler, readStraightIntoFrames } from './frame-assembler.js';
import { probeUntilBack, unreadableFile } from './reachability.js';
import { StallWatchdog } from './stall-watchdog.js';

/**
 * connecting: ffmpeg started, no frame yet · streaming: frames arrive · stalled: no frame within
 * stallSeconds, ffmpeg is being killed · backoff: waiting to restart after a disconnect · failed: will not
 * retry by itself (missing file, ffmpeg not runnable); start() tries again · ended: a file source without
 * loop reached its end.
 */
export type StreamState = 'connecting' | 'streaming' | 'stalled' | 'backoff' | 'failed' | 'ended';

export interface SourceState {
  cameraId: string;
  state: StreamState;
  reason?: string;
  /** In 'backoff': how long until the next attempt. */
  retryInMs?: number;
}

export interface FrameSourceOptions {
  cameraId: string;
  /** rtsp://…, rtsps://…, file://… or a local file path. May carry credentials: never logged as is. */
  url: string;
  /** File sources only: start over at the end instead of ending. */
  loop?: boolean;
  fps: number;
  width: number;
  height: number;
  /** The frames' layout: yuv420p (default; see OutputFormat) or rgb24. */
  pixelFormat?: 'rgb24' | 'yuv420p';
  /** No frame for this long (also after a start) counts as a stall: ffmpeg is killed and restarted. */
  stallSeconds?: number;
  backoff?: BackoffOptions;
  ffmpegPath?: string;
  log: Logger;
}

export interface FrameSourceStats {
  /** Frames handed to 'frame' listeners. */
  frames: number;
  /** Frames replaced by a newer one before listeners got them, because the event loop was behind. */
  dropped: number;
  /** ffmpeg processes started. */
  spawns: number;
}

interface FrameSourceEvents {
  frame: [Frame];
  state: [SourceState];
}

type FfmpegChild = ChildProcessByStdio<null, Readable, Readable>;

/** A stop() that ffmpeg ignores (it does, when blocked on a frozen server) ends in SIGKILL after this. */
const stopGraceMs = 2000;

/**
 * One camera's frames: a supervised ffmpeg child that decodes the stream to raw YUV 4:2:0 (or RGB24) at the configured
 * size and rate. Any ffmpeg exit is a disconnect (on server loss it exits 0); a last-frame watchdog kills
 * a silent one; restarts back off exponentially with jitter. ffmpeg is started through
 * `setpriv --pdeathsig KILL` so that it dies with this process even when this process is SIGKILLed
 * (docs/decisions/0005-ffmpeg-dies-with-the-agent.md).
 *
 * Each 'frame' carries a fresh buffer the listener may keep. Listeners that fall behind do not build a
 * queue here: completed frames wait in two slots (frame-assembler.ts) until the event loop is free, and a newer one
 * replaces the oldest (counted in stats().dropped).
 */
export class FrameSource extends EventEmitter<FrameSourceEvents> {
  readonly cameraId: string;
  private readonly input: Input;
  private readonly loop: boolean;
  private readonly backoffOpts: BackoffOptions;
  private readonly ffmpegPath: string;
  private readonly args: string[];
  private readonly log: Logger;
  private readonly frames: FrameAssembler;
  private readonly watchdog: StallWatchdog;

  private state: StreamState | undefined;
  private running = false;
  private child: FfmpegChild | undefined;
  private childExited: Promise<void> | undefined;
  /** Why the current child is being killed by us, so its exit is not reported as a plain disconnect. */
  private killReason: string | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private cancelProbe: (() => void) | undefined;
  private attempt = 0;
  /** Why the last run ended; a retry's 'connecting' state carries it, so a status taken mid-retry still says why. */
  private lastFailure: string | undefined;
  private readonly counters = { frames: 0, spawns: 0 };

  constructor(opts: FrameSourceOptions) {
    super();
    for (const key of ['fps', 'width', 'height'] as const) {
      if (!(opts[key] > 0)) throw new Error(`camera ${opts.cameraId}: ${key} must be a positive number, got ${opts[key]}`);
    }
    this.cameraId = opts.cameraId;
    this.input = parseInput(opts.cameraId, opts.url);
    const pixelFormat = opts.pixelFormat ?? 'yuv420p';
    if (pixelFormat === 'yuv420p' && (opts.width % 2 !== 0 || opts.height % 2 !== 0)) {
      throw new Error(`camera ${opts.cameraId}: detect size ${opts.width}x${opts.height} must be even both ways (frames are YUV 4:2:0)`);
    }
    this.backoffOpts = opts.backoff ?? defaultBackoff;
    this.ffmpegPath = opts.ffmpegPath ?? 'ffmpeg';
    this.args = ffmpegArgs(this.input, opts, opts.loop ?? false);
    this.log = opts.log;
    this.loop = opts.loop ?? false;
    const layout = { width: opts.width, height: opts.height, pixelFormat, frameBytes: frameBytes(pixelFormat, opts.width, opts.height) };
    this.frames = new FrameAssembler(layout, (frames) => this.deliver(frames));
    this.watchdog = new StallWatchdog((opts.stallSeconds ?? 10) * 1000, (silentMs) => this.stalled(silentMs));
  }

  /**
   * Gives a frame's buffer back for the frames to come. Only for a consumer that is certain nothing reads the
   * frame any more: the next frame is written into it. A buffer never given back is simply garbage-collected.
   */
  recycle(data: Uint8Array): void {
    this.frames.recycle(data);
  }

  /** The stream's address for people and logs: credentials stripped. */
  get displayUrl(): string {
    return this.input.kind === 'rtsp' ? safeUrl(this.input.url) : this.input.path;
  }

  get currentState(): StreamState | undefined {
    return this.state;
  }

  /** The running ffmpeg's pid, if one is running. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  stats(): FrameSourceStats {
    return { frames: this.counters.frames, dropped: this.frames.dropped, spawns: this.counters.spawns };
  }

  /** Starts (or, after 'failed' or 'ended', starts again) supervising the stream. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.attempt = 0;
    void this.connect();
  }

  /** Stops supervision and ffmpeg; resolves once ffmpeg has exited and been reaped. */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    this.stopProbing();
    this.watchdog.stop();
    this.frames.clear();
    const child = this.child;
    const exited = this.childExited;
    if (!child || !exited) return;
    child.kill('SIGTERM');
    const escalate = setTimeout(() => child.kill('SIGKILL'), stopGraceMs);
    try {
      await exited;
    } finally {
      clearTimeout(escalate);
    }
  }

  private setState(state: StreamState, reason?: string, retryInMs?: number): void {
    this.state = state;
    const change: SourceState = { cameraId: this.cameraId, state };
    if (reason !== undefined) change.reason = reason;
    if (retryInMs !== undefined) change.retryInMs = retryInMs;
    // Debug only: the owner of the source reports state changes (it gets them as 'state' events).
    this.log.debug({ stream: this.displayUrl, state, reason, retryInMs }, `camera ${this.cameraId}: ${state}`);
    this.emit('state', change);
  }

  private async connect(): Promise<void> {
    if (this.input.kind === 'file') {
      const problem = await unreadableFile(this.input.path);
      if (!this.running) return;
      if (problem) {
        // Retrying cannot help until someone fixes the file or the config; start() tries again.
        this.running = false;
        this.setState('failed', `camera ${this.cameraId}: cannot read video file ${this.input.path}: ${problem}`);
        return;
      }
    }
    this.setState('connecting', this.attempt > 0 && this.lastFailure ? `retry ${this.attempt} after: ${this.lastFailure}` : undefined);
    this.spawnFfmpeg();
  }

  private spawnFfmpeg(): void {
    const child: FfmpegChild = spawn('setpriv', ['--pdeathsig', 'KILL', '--', this.ffmpegPath, ...this.args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: a Ctrl-C on the agent's terminal reaches the agent, which then stops ffmpeg.
      detached: true,
    });
    this.child = child;
    this.counters.spawns++;
    this.killReason = undefined;
    this.frames.restart();
    let spawnError: string | undefined;
    let sawFrame = false;
    const tail = new StderrTail();
    this.childExited = new Promise((resolve) => {
      child.on('error', (err) => {
        spawnError = `cannot run setpriv: ${err.message}`;
      });
      child.stderr.on('data', (chunk: Buffer) => tail.push(chunk));
      const progressed = (completed: boolean): void => {
        if (!completed) return;
        this.watchdog.progress();
        if (!sawFrame) {
          sawFrame = true;
          this.attempt = 0;
          this.setState('streaming');
        }
      };
      // A child that a stop() replaced (start() called before it exited) has no say in the new run, and its
      // last bytes go to a scratch buffer rather than into the new run's frame.
      const scratch = Buffer.allocUnsafe(64 * 1024);
      const reader = readStraightIntoFrames(child.stdout, {
        buffer: () => (this.child === child ? this.frames.target() : scratch),
        callback: (n) => {
          if (this.child === child) progressed(this.frames.filledBy(n));
        },
      });
      if (!reader) {
        child.stdout.on('data', (chunk: Buffer) => {
          if (this.child === child) progressed(this.frames.assemble(chunk));
        });
      }
      const stdoutDrained = reader
        ? new Promise<void>((done) => {
            reader.on('error', (err) => this.log.debug({ err: err.message }, `camera ${this.cameraId}: ffmpeg output pipe error`));
            reader.on('close', () => done());
          })
        : Promise.resolve();
      // 'close' rather than 'exit', and after the reader's own close: stdout is drained by then, so no frame
      // arrives after the run ended.
      child.on('close', (code, signal) => {
        void stdoutDrained.then(() => {
          if (this.child === child) {
            this.child = undefined;
            this.runEnded(code, signal, spawnError ?? tail.reason(this.input), sawFrame);
          }
          resolve();
        });
      });
    });
    this.log.debug({ ffmpegPid: child.pid, args: this.args.map(scrubCredentials) }, `camera ${this.cameraId}: ffmpeg started`);
    this.watchdog.start();
  }

  private deliver(frames: readonly Frame[]): void {
    for (const frame of frames) {
      if (!this.running) return;
      this.counters.frames++;
      this.emit('frame', frame);
    }
  }

  private stalled(silentMs: number): void {
    const child = this.child;
    if (!child) return;
    this.killReason = `no frame for ${Math.round(silentMs / 1000)} s`;
    this.setState('stalled', this.killReason);
    // SIGKILL: a stalled ffmpeg ignores SIGTERM (measured, shared/notes/infra-facts.md).
    child.kill('SIGKILL');
  }

  private runEnded(code: number | null, signal: NodeJS.Signals | null, stderrReason: string | undefined, sawFrame: boolean): void {
    this.watchdog.stop();
    if (!this.running) return;
    const exit = signal ? `ffmpeg killed by ${signal}` : `ffmpeg exited with code ${code}`;
    if (this.input.kind === 'file') {
      if (code === 0 && !this.killReason && !this.loop) {
        this.running = false;
        this.setState('ended', `end of file ${this.input.path}`);
        return;
      }
      if (!sawFrame && !this.killReason) {
        // A local file that ffmpeg cannot decode (or an ffmpeg that cannot run) fails the same way every time.
        this.running = false;
        this.setState('failed', `camera ${this.cameraId}: cannot decode video file ${this.input.path}: ${stderrReason ?? exit}`);
        return;
      }
    } else if (code === 127 && !sawFrame) {
      // setpriv's "failed to execute": ffmpeg is missing; backing off would not install it.
      this.running = false;
      this.setState('failed', stderrReason ?? exit);
      return;
    }
    const reason = this.killReason ?? stderrReason ?? (code === 0 ? 'stream ended' : exit);
    this.lastFailure = reason;
    const delay = backoffDelay(this.attempt++, this.backoffOpts);
    this.setState('backoff', reason, delay);
    this.restartTimer = setTimeout(() => this.retryNow(), delay);
    if (this.input.kind === 'rtsp') {
      // During the backoff: the retry starts at once when the camera's port answers again (reachability.ts).
      this.cancelProbe = probeUntilBack(
        this.input.url,
        () => this.restartTimer !== undefined,
        () => this.retryNow(),
      );
    }
  }

  private retryNow(): void {
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    this.stopProbing();
    void this.connect();
  }

  private stopProbing(): void {
    this.cancelProbe?.();
    this.cancelProbe = undefined;
  }
}
