import { constants } from 'node:os';
import type { Component, ComponentContext } from '../agent/index.js';
import type { CameraStatus } from '../agent/stats.js';
import type { StreamState } from '../ingest/index.js';
import { loadAddon, type Addon } from '../native.js';

/** native/notify.c: one datagram to systemd's notification socket, without libsystemd. */
export interface NotifyAddon {
  /** Sends `text` to the unix datagram socket `socketPath` (a leading '@': abstract); 0, or -errno. */
  notify(socketPath: string, text: string): number;
}

/** The addon, or why not (not built, or EDGEPATROL_SD_NOTIFY=off). */
export function notifyAddon(): Addon<NotifyAddon> {
  return loadAddon<NotifyAddon>('notify', 'EDGEPATROL_SD_NOTIFY');
}

/**
 * States in which a camera without new frames is not hung: the supervisor knows about it and acts (stalled:
 * ffmpeg is being killed; backoff: a restart is timed) or has given up on purpose (failed, ended).
 */
const KNOWN_STATES: ReadonlySet<StreamState> = new Set(['stalled', 'backoff', 'failed', 'ended']);

/** A watchdog check that runs later than this after its time says the event loop was blocked (logged). */
const LATE_MS = 1000;

/** What a liveness check needs of each camera beyond its status. */
export interface CameraLimits {
  /** The camera's stallSeconds, ms: a connect longer than this should have ended in 'stalled'. */
  stallMs: number;
  /** One frame period at the camera's detect.fps, ms. */
  frameMs: number;
}

/** Where each camera's frames were at the last check, and when they last moved. */
export type FrameMarks = Map<string, { framesIn: number; movedAt: number }>;

/**
 * Whether the frame path of each camera is alive; the problems found, one per camera, empty when all are.
 * A camera is alive when its frames-in counter moved since the last check, or it is in a state the supervisor
 * handles (KNOWN_STATES), or it is connecting within its stall period (plus one check interval), or it is
 * streaming and its last frame is less than two frame periods old (a camera slower than the checks). Updates
 * `marks`.
 */
export function frameProblems(
  cameras: readonly CameraStatus[],
  limits: ReadonlyMap<string, CameraLimits>,
  marks: FrameMarks,
  now: number,
  intervalMs: number,
): string[] {
  const problems: string[] = [];
  for (const cam of cameras) {
    const mark = marks.get(cam.id);
    const framesIn = cam.totals.framesIn;
    // The first sighting is a baseline, not a verdict.
    if (!mark || framesIn !== mark.framesIn) {
      marks.set(cam.id, { framesIn, movedAt: now });
      continue;
    }
    const limit = limits.get(cam.id) ?? { stallMs: 10_000, frameMs: 1000 };
    if (KNOWN_STATES.has(cam.state)) continue;
    if (cam.state === 'connecting') {
      const connectingMs = now - Date.parse(cam.since);
      if (connectingMs <= limit.stallMs + intervalMs) continue;
      problems.push(
        `camera ${cam.id}: connecting for ${Math.round(connectingMs / 1000)} s, past its stall period of ${limit.stallMs / 1000} s`,
      );
      continue;
    }
    const silentMs = now - mark.movedAt;
    if (silentMs < 2 * limit.frameMs) continue;
    problems.push(`camera ${cam.id}: ${cam.state} but no frame for ${(silentMs / 1000).toFixed(1)} s`);
  }
  return problems;
}

/** The one-line STATUS= text: cameras streaming, the others by state, the outbox's pending rows. */
export function statusLine(cameras: readonly CameraStatus[], outboxPending: number | string): string {
  const streaming = cameras.filter((c) => c.state === 'streaming').length;
  const others = cameras.filter((c) => c.state !== 'streaming').map((c) => `${c.id} ${c.state}`);
  return `${streaming}/${cameras.length} cameras streaming${others.length ? ` (${others.join(', ')})` : ''}, outbox pending ${outboxPending}`;
}

const errnoNames = new Map(Object.entries(constants.errno).map(([name, code]) => [code, name]));

/**
 * systemd's service notifications (sd_notify) when the agent runs as a Type=notify unit: READY=1 with a STATUS=
 * line once the core runs, WATCHDOG=1 every WATCHDOG_USEC/2 while the frame path and the outbox are alive
 * (frameProblems; a hang stops the pings and systemd restarts the agent), STOPPING=1 on stop. Does nothing
 * without NOTIFY_SOCKET (not under systemd, or Type=simple).
 */
export class SystemdNotify implements Component {
  readonly name = 'systemd';
  private timer: NodeJS.Timeout | undefined;
  private send: ((text: string) => void) | undefined;

  start(ctx: ComponentContext): void {
    const socket = process.env.NOTIFY_SOCKET;
    if (!socket) return;
    const native = notifyAddon();
    if (!native.ok) {
      ctx.log.warn(`systemd notifications off: ${native.reason}; a Type=notify unit then times out waiting for READY=1`);
      return;
    }
    let lastError = 0;
    this.send = (text) => {
      const result = native.addon.notify(socket, text);
      // Once per kind of failure: a watchdog ping repeats every few seconds.
      if (result < 0 && result !== lastError) {
        const name = errnoNames.get(-result) ?? `errno ${-result}`;
        ctx.log.warn(
          { socket, errno: -result },
          `systemd notification to NOTIFY_SOCKET=${socket} failed: ${name}; check the unit's NotifyAccess and sandboxing`,
        );
      }
      lastError = Math.min(result, 0);
    };

    const { cameras, outbox, log, bus } = ctx;
    const pending = (): number | string => {
      try {
        return outbox.stats().pending;
      } catch {
        return 'unknown';
      }
    };
    this.send(`READY=1\nSTATUS=${statusLine(cameras.status(), pending())}`);
    // A reload (SIGHUP, ExecReload): RELOADING=1 (with MONOTONIC_USEC, which systemd 253+ wants beside it) while the
    // config is read and cameras restart, then READY=1 again, whether it was applied or refused.
    bus.on('config.reloading', () => {
      const usec = process.hrtime.bigint() / 1000n;
      this.send?.(`RELOADING=1\nMONOTONIC_USEC=${usec}\nSTATUS=reloading the config`);
    });
    bus.on('config.reloaded', (r) => {
      const what = r.result === 'applied' ? 'config reloaded' : 'config reload refused';
      this.send?.(`READY=1\nSTATUS=${what}; ${statusLine(cameras.status(), pending())}`);
    });

    const intervalMs = watchdogIntervalMs(log);
    if (intervalMs === undefined) return;
    // Read at each check: a reload may add cameras or change their rates.
    const limitsNow = () =>
      new Map(ctx.config.cameras.map((c) => [c.id, { stallMs: c.stallSeconds * 1000, frameMs: 1000 / c.detect.fps }]));
    const slow = ctx.config.cameras.filter((c) => c.stallSeconds * 1000 >= intervalMs).map((c) => c.id);
    if (slow.length) {
      // Then a stopped camera misses checks before its own stall watchdog restarts it, and systemd restarts the agent.
      log.warn(
        { cameras: slow, intervalMs },
        `systemd watchdog checks every ${intervalMs / 1000} s, not above the stallSeconds of ${slow.join(', ')}: raise WatchdogSec above 2 x stallSeconds`,
      );
    }
    const marks: FrameMarks = new Map();
    frameProblems(cameras.status(), limitsNow(), marks, Date.now(), intervalMs);
    const check = (dueAt: number): void => {
      const now = Date.now();
      // The timer's own lateness is the event loop's: a long synchronous task held it. The ping still goes now
      // that the loop runs again; a block longer than WatchdogSec has already missed pings and systemd acts.
      if (now - dueAt > LATE_MS) log.warn({ lateMs: now - dueAt }, `event loop blocked: the watchdog check ran ${now - dueAt} ms late`);
      try {
        const list = cameras.status();
        const problems = frameProblems(list, limitsNow(), marks, now, intervalMs);
        let outboxPending: number | undefined;
        try {
          outboxPending = outbox.stats().pending;
        } catch (err) {
          problems.push(`outbox does not answer: ${(err as Error).message}`);
        }
        if (problems.length || outboxPending === undefined) {
          log.warn({ problems }, `no systemd watchdog ping (systemd restarts the agent if this lasts): ${problems.join('; ')}`);
        } else {
          this.send?.(`WATCHDOG=1\nSTATUS=${statusLine(list, outboxPending)}`);
        }
      } catch (err) {
        log.warn({ err }, `no systemd watchdog ping: the liveness check failed: ${(err as Error).message}`);
      }
      this.schedule(check, intervalMs);
    };
    this.schedule(check, intervalMs);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.send?.('STOPPING=1\nSTATUS=stopping');
    this.send = undefined;
  }

  private schedule(check: (dueAt: number) => void, intervalMs: number): void {
    const dueAt = Date.now() + intervalMs;
    this.timer = setTimeout(() => check(dueAt), intervalMs);
    this.timer.unref();
  }
}

/**
 * Half of WATCHDOG_USEC in ms (systemd's advice: ping at half the timeout), or undefined when the unit has no
 * watchdog, the value is not a positive number, or WATCHDOG_PID names another process.
 */
function watchdogIntervalMs(log: ComponentContext['log']): number | undefined {
  const usec = process.env.WATCHDOG_USEC;
  if (!usec) return undefined;
  const watchdogPid = process.env.WATCHDOG_PID;
  if (watchdogPid && Number(watchdogPid) !== process.pid) return undefined;
  const value = Number(usec);
  if (!Number.isFinite(value) || value <= 0) {
    log.warn(`no systemd watchdog pings: WATCHDOG_USEC=${usec} is not a positive number of microseconds`);
    return undefined;
  }
  return value / 2000;
}
