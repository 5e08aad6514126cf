import type { ScopedBus } from '../agent/index.js';
import { PtzError, type Arrived, type Lease, type PtzCamera } from './camera.js';
import { keepJpeg, type EvidenceOptions } from './evidence.js';

export interface RoundStop {
  preset: string;
  dwellSeconds: number;
}

/** What one stop of a round saw. */
export interface StopResult {
  preset: string;
  /** How the camera got there; absent when it did not. */
  arrived?: Arrived;
  /** When detection began and ended at the stop (ISO). */
  from?: string;
  to?: string;
  /** Events started (or instant) at this stop, by id. */
  events: string[];
  /** A JPEG of the view once it was still. */
  evidence?: { file: string; sha256: string; bytes: number };
  /** Why the stop was cut short or skipped. */
  error?: string;
}

export interface RoundResult {
  round: string;
  camera: string;
  stops: StopResult[];
  /** Whether the camera went home afterwards. */
  home: boolean;
}

export interface RoundOptions extends EvidenceOptions {
  ptz: PtzCamera;
  lease: Lease;
  round: { id: string; stops: readonly RoundStop[] };
  bus: ScopedBus;
  /** Names the stops' evidence files: `{evidenceName}-{preset}`. */
  evidenceName: string;
  /** Aborts the round as the lease's signal does (the task is canceled, the agent stops). */
  signal?: AbortSignal;
  /** After each stop (the progress states of a patrol task). */
  onStop?: (index: number, stop: StopResult) => void;
}

/**
 * One patrol round: for each stop, move there (detection paused while moving), wait until it is still, run the
 * preset's own view for the stop's dwell and keep a JPEG of it; then home. A lease aborted (a verification took the
 * camera, a person steers it, the agent stops) ends the round where it is: the error says why, the stops done are
 * kept, and the camera goes home unless a person has it. Other failures at one stop (not arrived) end the round too.
 */
export async function runRound(o: RoundOptions): Promise<RoundResult> {
  const { ptz, lease, round } = o;
  const signal = o.signal ? AbortSignal.any([lease.signal, o.signal]) : lease.signal;
  const stops: StopResult[] = [];
  let failure: unknown;
  const started = new Map<string, string[]>();
  let current: string | undefined;
  const offEvents = o.bus.on('event.stored', (e) => {
    if (e.cameraId !== ptz.id || current === undefined) return;
    if (e.state === 'started' || e.state === 'instant') started.get(current)?.push(e.eventId);
  });
  try {
    for (const [i, stop] of round.stops.entries()) {
      const result: StopResult = { preset: stop.preset, events: [] };
      stops.push(result);
      try {
        signal.throwIfAborted();
        result.arrived = await lease.goto(stop.preset);
        current = stop.preset;
        started.set(current, result.events);
        result.from = new Date().toISOString();
        result.evidence = await keepFrame(o, stop.preset);
        await sleep(stop.dwellSeconds * 1000, signal);
        result.to = new Date().toISOString();
      } catch (err) {
        result.error = (err as Error).message;
        throw err;
      } finally {
        current = undefined;
        o.onStop?.(i, result);
      }
    }
  } catch (err) {
    failure = err;
  } finally {
    offEvents();
  }
  // A person steering the camera keeps it; a verification that took it moves it itself.
  // The agent stopping leaves it too: it goes home at the next start.
  const leaveIt =
    failure instanceof PtzError && (failure.reason === 'manual_control' || failure.reason === 'preempted' || failure.reason === 'stopped');
  // A round capped before its first move never left home.
  const neverLeft = stops.every((s) => !s.arrived) && failure instanceof PtzError && failure.reason === 'moves_capped';
  let home = false;
  if (!leaveIt && !neverLeft) {
    try {
      await lease.home();
      home = true;
    } catch (err) {
      o.log.warn({ camera: ptz.id, err: (err as Error).message }, `camera ${ptz.id}: could not go home after round ${round.id}`);
    }
  }
  if (failure) throw Object.assign(failure as Error, { partial: { round: round.id, camera: ptz.id, stops, home } });
  return { round: round.id, camera: ptz.id, stops, home };
}

async function keepFrame(o: RoundOptions, preset: string): Promise<StopResult['evidence']> {
  try {
    return await keepJpeg(o, o.ptz.id, `${o.evidenceName}-${preset}`, await o.ptz.nextFrame());
  } catch (err) {
    o.log.warn({ camera: o.ptz.id, preset, err: (err as Error).message }, `camera ${o.ptz.id}: no evidence at ${preset}`);
    return undefined;
  }
}

/** Waits `ms`, or throws the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
