import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { constants, promises as fs } from 'node:fs';
import { connect, Socket, type SocketConstructorOpts } from 'node:net';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { safeUrl } from '../log.js';
import type { Frame } from '../common/frame.js';
import { frameBytes } from '../common/frame.js';
import { backoffDelay, defaultBackoff, type BackoffOptions } from '../common/backoff.js';
import { ffmpegArgs, parseInput, scrubCredentials, StderrTail, type Input } from './ffmpeg.js';

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
 * Frame buffers kept for reuse per camera. Allocating one per frame (1.3 MB at 768×576) made V8 run a full
 * mark-compact several times a second for the external memory alone (docs/decisions.md). The list only ever holds
 * buffers that were in use at once a moment before (a frame being read, two waiting, the queue's and the
 * detector's), so it costs memory only where a camera's frames pile up: at 79 fps offered to one camera, 2 idle
 * buffers still left 33 full collections in 22 s, 4 left 16 and 6 left 6; at 2 fps it never holds more than 2–3.
 */
const FRAME_POOL = 6;

/**
 * Frames that completed within one turn of the event loop and are all delivered. Two, not one: ffmpeg sometimes
 * writes two frames back to back (catching up after network jitter), and with one slot the first was dropped
 * even at 2 fps (0–2 per camera a minute with 16 cameras, docs/decisions.md). More than two only happens when
 * the loop itself is behind, and then the newest are the ones worth detecting.
 */
const PENDING_FRAMES = 2;

/**
 * One camera's frames: a supervised ffmpeg child that decodes the stream to raw YUV 4:2:0 (or RGB24) at the configured
 * size and rate. Any ffmpeg exit is a disconnect (on server loss it exits 0); a last-frame watchdog kills
 * a silent one; restarts back off exponentially with jitter. ffmpeg is started through
 * `setpriv --pdeathsig KILL` so that it dies with this process even when this process is SIGKILLed
 * (docs/decisions.md, "ffmpeg dies with the agent").
 *
 * Each 'frame' carries a fresh buffer the listener may keep. Listeners that fall behind do not build a
 * queue here: completed frames wait in PENDING_FRAMES slots until the event loop is free, and a newer one
 * replaces the oldest (counted in stats().dropped).
 */
export class FrameSource extends EventEmitter<FrameSourceEvents> {
  readonly cameraId: string;
  private readonly input: Input;
  private readonly width: number;
  private readonly height: number;
  private readonly pixelFormat: 'rgb24' | 'yuv420p';
  private readonly loop: boolean;
  private readonly frameBytes: number;
  private readonly stallMs: number;
  private readonly backoffOpts: BackoffOptions;
  private readonly ffmpegPath: string;
  private readonly args: string[];
  private readonly log: Logger;

  private state: StreamState | undefined;
  private running = false;
  private child: FfmpegChild | undefined;
  private childExited: Promise<void> | undefined;
  /** Why the current child is being killed by us, so its exit is not reported as a plain disconnect. */
  private killReason: string | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private stallTimer: NodeJS.Timeout | undefined;
  private stallCheck: NodeJS.Immediate | undefined;
  private lastProgressAt = 0;
  private attempt = 0;
  /** Why the last run ended; a retry's 'connecting' state carries it, so a status taken mid-retry still says why. */
  private lastFailure: string | undefined;
  private assembling: Buffer;
  /** Frame buffers given back by consumers (`recycle`), reused before allocating: see FRAME_POOL. */
  private readonly free: Buffer[] = [];
  private filled = 0;
  /** Completed frames not yet delivered, oldest first (at most PENDING_FRAMES). */
  private pending: Frame[] = [];
  private deliverScheduled: NodeJS.Immediate | undefined;
  private readonly counters: FrameSourceStats = { frames: 0, dropped: 0, spawns: 0 };

  constructor(opts: FrameSourceOptions) {
    super();
    for (const key of ['fps', 'width', 'height'] as const) {
      if (!(opts[key] > 0)) throw new Error(`camera ${opts.cameraId}: ${key} must be a positive number, got ${opts[key]}`);
    }
    this.cameraId = opts.cameraId;
    this.input = parseInput(opts.cameraId, opts.url);
    this.pixelFormat = opts.pixelFormat ?? 'yuv420p';
    if (this.pixelFormat === 'yuv420p' && (opts.width % 2 !== 0 || opts.height % 2 !== 0)) {
      throw new Error(`camera ${opts.cameraId}: detect size ${opts.width}x${opts.height} must be even both ways (frames are YUV 4:2:0)`);
    }
    this.frameBytes = frameBytes(this.pixelFormat, opts.width, opts.height);
    this.stallMs = (opts.stallSeconds ?? 10) * 1000;
    this.backoffOpts = opts.backoff ?? defaultBackoff;
    this.ffmpegPath = opts.ffmpegPath ?? 'ffmpeg';
    this.args = ffmpegArgs(this.input, opts, opts.loop ?? false);
    this.log = opts.log;
    this.assembling = Buffer.allocUnsafe(this.frameBytes);
    this.width = opts.width;
    this.height = opts.height;
    this.loop = opts.loop ?? false;
  }

  /**
   * Gives a frame's buffer back for the frames to come. Only for a consumer that is certain nothing reads the
   * frame any more: the next frame is written into it. A buffer never given back is simply garbage-collected.
   */
  recycle(data: Uint8Array): void {
    if (!(data instanceof Buffer) || data.length !== this.frameBytes || this.free.length >= FRAME_POOL) return;
    // Given back twice would hand one buffer to two frames.
    if (data === this.assembling || this.free.includes(data)) return;
    this.free.push(data);
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
    return { ...this.counters };
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
    this.clearStallTimer();
    clearImmediate(this.deliverScheduled);
    this.deliverScheduled = undefined;
    this.pending = [];
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
    this.filled = 0;
    let spawnError: string | undefined;
    let sawFrame = false;
    const tail = new StderrTail();
    this.childExited = new Promise((resolve) => {
      child.on('error', (err) => { spawnError = `cannot run setpriv: ${err.message}`; });
      child.stderr.on('data', (chunk: Buffer) => tail.push(chunk));
      const progressed = (completed: boolean): void => {
        if (completed && !sawFrame) {
          sawFrame = true;
          this.attempt = 0;
          this.setState('streaming');
        }
      };
      // A child that a stop() replaced (start() called before it exited) has no say in the new run, and its
      // last bytes go to a scratch buffer rather than into the new run's frame.
      const scratch = Buffer.allocUnsafe(64 * 1024);
      const reader = readStraightIntoFrames(child.stdout, {
        buffer: () => (this.child === child ? this.assembling.subarray(this.filled) : scratch),
        callback: (n) => {
          if (this.child === child) progressed(this.filledBy(n));
        },
      });
      if (!reader) {
        child.stdout.on('data', (chunk: Buffer) => {
          if (this.child === child) progressed(this.assemble(chunk));
        });
      }
      const stdoutDrained = reader ? new Promise<void>((done) => {
        reader.on('error', (err) => this.log.debug({ err: err.message }, `camera ${this.cameraId}: ffmpeg output pipe error`));
        reader.on('close', () => done());
      }) : Promise.resolve();
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
    this.lastProgressAt = Date.now();
    this.armStallTimer(this.stallMs);
  }

  /** `n` more bytes were read into the frame being assembled; returns whether that completed it. */
  private filledBy(n: number): boolean {
    this.filled += n;
    if (this.filled < this.frameBytes) return false;
    this.offer(this.assembling);
    this.assembling = this.free.pop() ?? Buffer.allocUnsafe(this.frameBytes);
    this.filled = 0;
    this.lastProgressAt = Date.now();
    return true;
  }

  /** Copies stdout bytes into whole frames (when ffmpeg's pipe could not be read in place); returns whether at least one frame completed. */
  private assemble(chunk: Buffer): boolean {
    let completed = false;
    let offset = 0;
    while (offset < chunk.length) {
      const n = Math.min(chunk.length - offset, this.frameBytes - this.filled);
      chunk.copy(this.assembling, this.filled, offset, offset + n);
      offset += n;
      if (this.filledBy(n)) completed = true;
    }
    return completed;
  }

  private offer(data: Buffer): void {
    if (this.pending.length >= PENDING_FRAMES) {
      this.counters.dropped++;
      this.recycle(this.pending.shift()!.data);
    }
    const ts = Date.now();
    this.pending.push(this.pixelFormat === 'yuv420p'
      ? { width: this.width, height: this.height, data, ts, format: 'yuv420p' }
      : { width: this.width, height: this.height, data, ts });
    // Delivered after the current burst of pipe reads: when the loop is behind, only the newest frames go out.
    this.deliverScheduled ??= setImmediate(() => {
      this.deliverScheduled = undefined;
      const frames = this.pending;
      this.pending = [];
      for (const frame of frames) {
        if (!this.running) return;
        this.counters.frames++;
        this.emit('frame', frame);
      }
    });
  }

  private armStallTimer(delayMs: number): void {
    this.stallTimer = setTimeout(() => {
      // Decided after the next poll phase: when the event loop itself was blocked (a long synchronous task),
      // frames ffmpeg wrote meanwhile are still unread in the pipe, and must count before calling it a stall.
      this.stallTimer = undefined;
      this.stallCheck = setImmediate(() => this.checkStall());
    }, delayMs);
  }

  private checkStall(): void {
    this.stallCheck = undefined;
    const silentMs = Date.now() - this.lastProgressAt;
    // Re-armed lazily rather than per frame: one timer per stall period, whatever the frame rate.
    if (silentMs < this.stallMs) return this.armStallTimer(this.stallMs - silentMs);
    const child = this.child;
    if (!child) return;
    this.killReason = `no frame for ${Math.round(silentMs / 1000)} s`;
    this.setState('stalled', this.killReason);
    // SIGKILL: a stalled ffmpeg ignores SIGTERM (measured, shared/notes/infra-facts.md).
    child.kill('SIGKILL');
  }

  private clearStallTimer(): void {
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    clearImmediate(this.stallCheck);
    this.stallCheck = undefined;
  }

  private runEnded(code: number | null, signal: NodeJS.Signals | null, stderrReason: string | undefined, sawFrame: boolean): void {
    this.clearStallTimer();
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
    if (this.input.kind === 'rtsp') this.probeUntilBack(this.input.url);
  }

  private retryNow(): void {
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    this.stopProbing();
    void this.connect();
  }

  /**
   * During a backoff, checks once a second whether the camera's RTSP port accepts TCP connections (no
   * ffmpeg, a few syscalls). When it refused or timed out and then accepts again, the camera (or the
   * network) is back and the retry starts at once, so streaming resumes within about a second of its
   * return however long the backoff had grown. A camera that accepts connections but fails otherwise
   * (401, 404) never turns from unreachable to reachable and keeps its backoff.
   */
  private probeUntilBack(url: string): void {
    const target = rtspAddress(url);
    if (!target) return;
    let wasDown = false;
    const probe = (): void => {
      this.probeTimer = setTimeout(() => {
        const socket = connect({ host: target.host, port: target.port });
        let settled = false;
        const done = (up: boolean): void => {
          if (settled) return;
          settled = true;
          clearTimeout(timeout);
          socket.destroy();
          if (this.restartTimer === undefined) return;
          if (up && wasDown) return this.retryNow();
          wasDown ||= !up;
          probe();
        };
        const timeout = setTimeout(() => done(false), PROBE_TIMEOUT_MS);
        socket.once('connect', () => done(true));
        socket.once('error', () => done(false));
      }, PROBE_INTERVAL_MS);
    };
    probe();
  }

  private stopProbing(): void {
    clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
  }
}

const PROBE_INTERVAL_MS = 500;
/** A camera that takes longer to accept a TCP connection counts as unreachable for the probe. */
const PROBE_TIMEOUT_MS = 2000;

/** Host and port of an RTSP URL (default ports 554 / 322 for rtsps), or undefined when it does not parse. */
export function rtspAddress(url: string): { host: string; port: number } | undefined {
  try {
    const u = new URL(url);
    const host = u.hostname.replace(/^\[|\]$/g, '');
    return { host, port: u.port ? Number(u.port) : u.protocol === 'rtsps:' ? 322 : 554 };
  } catch {
    return undefined;
  }
}

/** Why a local file cannot be read, or undefined if it can. */
async function unreadableFile(path: string): Promise<string | undefined> {
  try {
    const st = await fs.stat(path);
    if (!st.isFile()) return 'not a regular file';
    await fs.access(path, constants.R_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'no such file (check the camera url in the config)';
    if (code === 'EACCES') return 'permission denied (the agent user cannot read it)';
    return (err as Error).message;
  }
}

/** What net.Socket's `onread` takes: the buffer the next read fills, and how many bytes it put there. */
interface InPlaceRead {
  buffer: () => Uint8Array;
  callback: (bytes: number) => void;
}

/**
 * ffmpeg's stdout re-wrapped as a socket whose reads land straight in the frame being assembled (net.Socket's
 * `onread`), or undefined when this Node's child stdout has no pipe handle to re-wrap (the caller then copies
 * 'data' chunks). The stream path allocated a 64 KiB buffer per read and copied it into the frame: at 80 frames/s
 * of 768×576 that was 100 MB/s of short-lived buffers, and V8's helper threads spent 25 % of a core on them
 * against 13 % with this (docs/decisions.md). child_process creates the pipe before we can pass `onread`, hence
 * the hand-over of its handle, which Node keeps as `_handle`.
 */
function readStraightIntoFrames(stdout: Readable, onread: InPlaceRead): Socket | undefined {
  const owner = stdout as unknown as { _handle?: { useUserBuffer?: unknown } | null };
  const handle = owner._handle;
  if (!handle || typeof handle.useUserBuffer !== 'function') return undefined;
  owner._handle = null;
  stdout.destroy();
  return new Socket({ handle, readable: true, writable: false, onread } as SocketConstructorOpts);
}
