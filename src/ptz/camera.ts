import type { Logger } from 'pino';
import type { Cameras } from '../agent/index.js';
import type { CameraConfig, PresetConfig } from '../config/index.js';
import { OnvifDevice, type PtzVector } from '../onvif/index.js';
import { configView, greyThumb, type Thumb, type ViewInput } from '../rules/index.js';
import type { Frame, RgbFrame } from '../vision/types.js';
import { keepRgb } from './evidence.js';

/** Who may hold a camera: a verification outranks a patrol; a person steering it by hand outranks both. */
export type LeaseKind = 'verify' | 'patrol';
const PRIORITY: Record<LeaseKind, number> = { verify: 2, patrol: 1 };

export type PtzFailure = 'preempted' | 'manual_control' | 'moves_capped' | 'not_arrived' | 'camera_unreachable' | 'busy' | 'stopped';

/** Why a PTZ step could not be done; `reason` is what a task state reports. */
export class PtzError extends Error {
  constructor(
    readonly reason: PtzFailure,
    message: string,
  ) {
    super(message);
    this.name = 'PtzError';
  }
}

/** How the camera got to a view. */
export interface Arrived {
  /** What told us it had arrived: MoveStatus, Position, or only the time. */
  by: 'move-status' | 'position' | 'time';
  /** From the move command to arrival. */
  moveMs: number;
  /** From arrival to a still picture (or to giving up on one). */
  stableMs: number;
  /** Whether the picture stopped changing before ptz.stableTimeoutSeconds. */
  stable: boolean;
}

/** One holder's use of the camera: moves happen through it; `signal` aborts when someone outranks it. */
export interface Lease {
  readonly kind: LeaseKind;
  readonly holder: string;
  readonly signal: AbortSignal;
  /** Moves to the preset, waits until it has arrived and the picture is still, then runs the preset's view. */
  goto(presetId: string): Promise<Arrived>;
  /** Moves home and runs the camera's own view again. */
  home(): Promise<Arrived>;
  /** Gives the camera up; idempotent. */
  release(): void;
}

export interface PtzCameraOptions {
  camera: CameraConfig;
  cameras: Cameras;
  log: Logger;
  /** Default: an OnvifDevice from camera.onvif. */
  device?: OnvifDevice;
  now?: () => number;
}

interface Holder {
  kind: LeaseKind;
  id: string;
  controller: AbortController;
  released: Promise<void>;
  done: () => void;
}

const HOUR = 3_600_000;
/**
 * Frame pairs in a row that must differ by less than ptz.stableDifference: one pair is not enough, a picture still
 * sweeping can repeat itself for a moment (a pan reversing, a scan back and forth).
 */
const STILL_PAIRS = 3;

/**
 * One PTZ camera's mover: a lease per camera (one user at a time, verify before patrol), moves capped per hour,
 * arrival by MoveStatus, Position or time, then a still picture before the preset's view runs; detection is paused
 * while the camera moves. It watches the camera's position while it should stand still: a position it did not set
 * means a person is steering the camera, and patrols and verifications leave it alone for ptz.manualHoldSeconds
 * (docs/decisions/0049-ptz-patrols-and-verify.md).
 */
export class PtzCamera {
  readonly id: string;
  private readonly device: OnvifDevice;
  private readonly now: () => number;
  private profile: string | undefined;
  private holder: Holder | undefined;
  private readonly waiting: Array<{ kind: LeaseKind; wake: () => void }> = [];
  private readonly moves: number[] = [];
  private moving = false;
  /** Where the agent last put the camera (its position after arrival), when the camera reports one. */
  private expected: PtzVector | undefined;
  private homePosition: PtzVector | undefined;
  private manualUntil = 0;
  private driftTimer: NodeJS.Timeout | undefined;
  private checking = false;
  private stopped = false;
  /** The rules are paused because the camera is away from home with nobody holding it. */
  private awayPaused = false;

  constructor(private readonly opts: PtzCameraOptions) {
    const cam = opts.camera;
    this.id = cam.id;
    if (!cam.onvif) throw new Error(`camera ${cam.id} has no onvif section: it cannot be moved`);
    this.device =
      opts.device ??
      new OnvifDevice({ address: cam.onvif.url, user: cam.onvif.user, password: cam.onvif.password, log: opts.log, timeoutMs: 5000 });
    this.now = opts.now ?? Date.now;
  }

  private get ptz(): CameraConfig['ptz'] {
    return this.opts.camera.ptz;
  }

  /** Finds the PTZ profile, sends the camera home (it may have been left at a preset by a crash) and starts watching. */
  async start(): Promise<void> {
    this.profile = await this.profileToken();
    try {
      await this.moveHome();
    } catch (err) {
      this.opts.log.warn(
        { camera: this.id, err: (err as Error).message },
        `camera ${this.id}: could not send it home at start: ${(err as Error).message}`,
      );
    }
    this.driftTimer = setInterval(() => void this.checkDrift(), this.ptz.driftCheckSeconds * 1000);
    this.driftTimer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.driftTimer) clearInterval(this.driftTimer);
    this.holder?.controller.abort(new PtzError('stopped', `camera ${this.id}: the agent is stopping`));
  }

  /** Moves in the last hour. */
  get movesLastHour(): number {
    this.prune();
    return this.moves.length;
  }

  /** Who holds the camera now, and until when manual control keeps others away. */
  get state(): { holder?: { kind: LeaseKind; id: string }; manualUntil?: string; movesLastHour: number } {
    return {
      ...(this.holder && { holder: { kind: this.holder.kind, id: this.holder.id } }),
      ...(this.manualUntil > this.now() && { manualUntil: new Date(this.manualUntil).toISOString() }),
      movesLastHour: this.movesLastHour,
    };
  }

  /**
   * Takes the camera for `kind`. A lower-ranked holder is aborted (reason preempted) and given up first. A holder
   * of the same or higher rank: `wait` true waits for it, false throws busy. Manual control throws manual_control.
   */
  async acquire(kind: LeaseKind, id: string, opts: { wait?: boolean; signal?: AbortSignal } = {}): Promise<Lease> {
    for (;;) {
      if (this.stopped) throw new PtzError('stopped', `camera ${this.id}: the agent is stopping`);
      this.checkManual();
      opts.signal?.throwIfAborted();
      const held = this.holder;
      if (!held) break;
      if (PRIORITY[kind] > PRIORITY[held.kind]) {
        this.opts.log.info(
          { camera: this.id, by: `${kind} ${id}`, from: `${held.kind} ${held.id}` },
          `camera ${this.id}: ${kind} ${id} takes the camera from ${held.kind} ${held.id}`,
        );
        held.controller.abort(new PtzError('preempted', `camera ${this.id} was taken by ${kind} ${id}`));
        await held.released;
        continue;
      }
      if (!opts.wait) throw new PtzError('busy', `camera ${this.id} is in use by ${held.kind} ${held.id}`);
      await new Promise<void>((wake) => this.waiting.push({ kind, wake }));
    }
    let done!: () => void;
    const released = new Promise<void>((r) => (done = r));
    const holder: Holder = { kind, id, controller: new AbortController(), released, done };
    this.holder = holder;
    const release = (): void => {
      if (this.holder !== holder) return;
      this.holder = undefined;
      holder.done();
      // Higher-ranked waiters first.
      this.waiting.sort((a, b) => PRIORITY[b.kind] - PRIORITY[a.kind]);
      this.waiting.shift()?.wake();
    };
    const guard = async <T>(step: () => Promise<T>): Promise<T> => {
      holder.controller.signal.throwIfAborted();
      return step();
    };
    return {
      kind,
      holder: id,
      signal: holder.controller.signal,
      goto: (presetId) => guard(() => this.moveTo(presetId, holder.controller.signal)),
      home: () => this.moveHome(),
      release,
    };
  }

  /** A frame of the camera's stream as RGB (copied), within `timeoutMs`. */
  nextFrame(timeoutMs = 5000): Promise<RgbFrame> {
    return new Promise((resolve, reject) => {
      const stop = this.opts.cameras.tapFrames(this.id, (frame) => {
        stop();
        clearTimeout(timer);
        resolve(keepRgb(frame));
      });
      const timer = setTimeout(() => {
        stop();
        reject(new Error(`camera ${this.id}: no frame from its stream within ${timeoutMs} ms`));
      }, timeoutMs);
    });
  }

  private preset(presetId: string): PresetConfig {
    const preset = this.opts.camera.presets?.find((p) => p.id === presetId);
    if (!preset) {
      const known = (this.opts.camera.presets ?? []).map((p) => p.id).join(', ') || 'none';
      throw new Error(`camera ${this.id} has no preset ${presetId} (its presets: ${known})`);
    }
    return preset;
  }

  private async moveTo(presetId: string, signal: AbortSignal): Promise<Arrived> {
    const preset = this.preset(presetId);
    const { token, id, ...fields } = preset;
    const view: ViewInput = { id, ...fields };
    return this.move(
      `preset ${presetId}`,
      (profile) => this.device.gotoPreset(profile, token ?? id),
      token ?? id,
      async () => {
        await this.opts.cameras.setView(this.id, view);
      },
      signal,
    );
  }

  private async moveHome(): Promise<Arrived> {
    const arrived = await this.move(
      'home',
      (profile) => this.device.gotoHomePosition(profile),
      '',
      async () => {
        await this.opts.cameras.setView(this.id, configView(this.opts.camera));
      },
      undefined,
      true,
    );
    this.homePosition = this.expected;
    this.awayPaused = false;
    return arrived;
  }

  /**
   * Pauses the rules (open events end view_changed), sends the move, waits for arrival and a still picture, then
   * swaps the view and resumes. A move past the hourly cap throws moves_capped, unless it is going home.
   */
  private async move(
    what: string,
    send: (profile: string) => Promise<void>,
    presetToken: string,
    setView: () => Promise<void>,
    signal: AbortSignal | undefined,
    isHome = false,
  ): Promise<Arrived> {
    const profile = this.profile ?? (this.profile = await this.profileToken());
    if (!isHome && this.movesLastHour >= this.ptz.maxMovesPerHour) {
      throw new PtzError(
        'moves_capped',
        `camera ${this.id}: ${this.moves.length} moves in the last hour reach ptz.maxMovesPerHour (${this.ptz.maxMovesPerHour}); not moving to ${what}`,
      );
    }
    this.moving = true;
    try {
      await this.opts.cameras.pause(this.id, 'view_changed');
      const started = this.now();
      try {
        await send(profile);
      } catch (err) {
        throw new PtzError('camera_unreachable', `camera ${this.id}: moving to ${what} failed: ${(err as Error).message}`);
      }
      this.moves.push(started);
      const arrival = await this.device.waitUntilArrived(profile, presetToken, {
        timeoutMs: this.ptz.moveTimeoutSeconds * 1000,
        tolerance: this.ptz.tolerance,
        minSettleMs: this.ptz.settleSeconds * 1000,
      });
      if (!arrival.arrived)
        throw new PtzError(
          'not_arrived',
          `camera ${this.id}: not at ${what} after ${this.ptz.moveTimeoutSeconds} s (ptz.moveTimeoutSeconds)`,
        );
      const moveMs = this.now() - started;
      signal?.throwIfAborted();
      const still = await this.waitStill(signal);
      this.expected = await this.position();
      await setView();
      this.opts.cameras.resume(this.id);
      this.opts.log.info(
        { camera: this.id, to: what, by: arrival.by, moveMs, stableMs: still.ms, stable: still.stable },
        `camera ${this.id}: at ${what} (${arrival.by}, moved in ${moveMs} ms, still after ${still.ms} ms)`,
      );
      return { by: arrival.by, moveMs, stableMs: still.ms, stable: still.stable };
    } finally {
      this.moving = false;
    }
  }

  /** Waits until STILL_PAIRS frame pairs in a row differ by less than ptz.stableDifference (mean grey), or the stable timeout. */
  private waitStill(signal: AbortSignal | undefined): Promise<{ stable: boolean; ms: number }> {
    const start = this.now();
    const limit = this.ptz.stableTimeoutSeconds * 1000;
    return new Promise((resolve, reject) => {
      let last: Thumb | undefined;
      let pairs = 0;
      const finish = (stable: boolean): void => {
        stop();
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve({ stable, ms: this.now() - start });
      };
      const onAbort = (): void => {
        stop();
        clearTimeout(timer);
        reject(signal?.reason);
      };
      const stop = this.opts.cameras.tapFrames(this.id, (frame: Frame) => {
        const thumb = greyThumb(frame);
        pairs = last && meanDifference(last, thumb) < this.ptz.stableDifference ? pairs + 1 : 0;
        last = thumb;
        if (pairs >= STILL_PAIRS) finish(true);
      });
      const timer = setTimeout(() => {
        this.opts.log.warn(
          { camera: this.id },
          `camera ${this.id}: the picture did not settle within ${limit / 1000} s; evaluating anyway`,
        );
        finish(false);
      }, limit);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private async position(): Promise<PtzVector | undefined> {
    try {
      return (await this.device.getStatus(this.profile!)).position;
    } catch {
      return undefined;
    }
  }

  private checkManual(): void {
    if (this.manualUntil > this.now())
      throw new PtzError(
        'manual_control',
        `camera ${this.id} is being steered by hand; patrols and verifications wait until ${new Date(this.manualUntil).toISOString()} (ptz.manualHoldSeconds)`,
      );
  }

  /**
   * Reads the position while the camera should stand still. Away from where the agent left it: a person steers
   * it; the holder is aborted (manual_control) and nobody takes the camera for ptz.manualHoldSeconds. Away from
   * home with nobody holding it: the camera's own rules pause until it is back; once the hold is over it is sent home.
   */
  private async checkDrift(): Promise<void> {
    if (this.checking || this.moving || this.stopped || !this.profile) return;
    this.checking = true;
    try {
      const at = await this.position();
      if (!at || this.moving) return;
      const tol = this.ptz.tolerance * 2;
      if (this.expected && !near(at, this.expected, tol)) {
        this.manualUntil = this.now() + this.ptz.manualHoldSeconds * 1000;
        this.expected = at;
        this.opts.log.warn(
          { camera: this.id, position: at, holder: this.holder && `${this.holder.kind} ${this.holder.id}` },
          `camera ${this.id}: moved by someone else (manual control); leaving it alone for ${this.ptz.manualHoldSeconds} s`,
        );
        this.holder?.controller.abort(new PtzError('manual_control', `camera ${this.id} was moved by hand`));
      }
      if (this.holder) return;
      const away = this.homePosition !== undefined && !near(at, this.homePosition, tol);
      if (away && !this.awayPaused) {
        this.awayPaused = true;
        await this.opts.cameras.pause(this.id, 'view_changed');
        this.opts.log.info({ camera: this.id }, `camera ${this.id}: away from home; its rules pause until it is back`);
      } else if (!away && this.awayPaused) {
        this.awayPaused = false;
        this.opts.cameras.resume(this.id);
        this.opts.log.info({ camera: this.id }, `camera ${this.id}: back home; its rules run again`);
      }
      if (away && this.manualUntil <= this.now()) await this.moveHome();
    } catch (err) {
      this.opts.log.debug({ camera: this.id, err: (err as Error).message }, 'ptz: position check failed');
    } finally {
      this.checking = false;
    }
  }

  private prune(): void {
    const since = this.now() - HOUR;
    while (this.moves.length > 0 && this.moves[0]! < since) this.moves.shift();
  }

  private async profileToken(): Promise<string> {
    const cam = this.opts.camera;
    const want = cam.ptz.profile ?? cam.onvif?.profile;
    let profiles;
    try {
      profiles = await this.device.getProfiles();
    } catch (err) {
      throw new PtzError('camera_unreachable', `camera ${this.id}: reading its media profiles failed: ${(err as Error).message}`);
    }
    const chosen = want !== undefined ? profiles.find((p) => p.token === want) : profiles.find((p) => p.ptz);
    if (!chosen) {
      throw new PtzError(
        'camera_unreachable',
        want !== undefined
          ? `camera ${this.id} has no media profile ${want} (ptz.profile / onvif.profile); it has ${profiles.map((p) => p.token).join(', ')}`
          : `camera ${this.id} has no media profile with PTZ: it cannot be moved`,
      );
    }
    return chosen.token;
  }
}

function near(a: PtzVector, b: PtzVector, tol: number): boolean {
  const d = (x: number | undefined, y: number | undefined): number => (x === undefined || y === undefined ? 0 : Math.abs(x - y));
  return d(a.pan, b.pan) <= tol && d(a.tilt, b.tilt) <= tol && d(a.zoom, b.zoom) <= tol;
}

/** Mean absolute difference of two grey thumbnails, in grey levels. */
export function meanDifference(a: Thumb, b: Thumb): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
}

/** Standard deviation of a grey thumbnail: near 0 for a covered lens or a wall. */
export function greySpread(t: Thumb): number {
  let sum = 0;
  let sq = 0;
  for (const v of t) {
    sum += v;
    sq += v * v;
  }
  const mean = sum / t.length;
  return Math.sqrt(Math.max(0, sq / t.length - mean * mean));
}
