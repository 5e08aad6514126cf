import type { Cameras, ScopedBus } from '../agent/index.js';
import type { CameraConfig } from '../config/index.js';
import { greyThumb } from '../rules/index.js';
import type { RgbFrame } from '../vision/types.js';
import { greySpread, PtzError, type Arrived, type PtzCamera } from './camera.js';
import { keepJpeg, keepRgb, type EvidenceOptions } from './evidence.js';
import { sleep } from './patrol.js';

/** What is verified: one rule of one zone, at a preset (PTZ) or in the camera's own view. */
export interface VerifyTarget {
  camera: string;
  preset?: string;
  zone: string;
  rule: string;
  /** The earlier event this checks, and its evidence's sha256 when known. */
  eventId?: string;
  originalSha256?: string;
}

export type Verdict = 'resolved' | 'still_present' | 'inconclusive';
export type InconclusiveWhy = 'view_blocked' | 'not_at_preset' | 'stream_down' | 'not_evaluated';

export interface VerifyResult {
  verdict: Verdict;
  /** With inconclusive: why. */
  why?: InconclusiveWhy;
  detail: string;
  camera: string;
  preset?: string;
  zone: string;
  rule: string;
  eventId?: string;
  /** The violation's event seen during the check (still_present). */
  seenEvent?: string;
  seconds: number;
  frames: number;
  detections: number;
  arrived?: Arrived;
  original?: { sha256: string };
  evidence?: { file: string; sha256: string; bytes: number };
}

export interface VerifyOptions extends EvidenceOptions {
  target: VerifyTarget;
  seconds: number;
  camera: CameraConfig;
  cameras: Cameras;
  /** The camera's mover when it is a PTZ camera. */
  ptz?: PtzCamera;
  bus: ScopedBus;
  /** Names the fresh evidence file. */
  evidenceName: string;
  signal?: AbortSignal;
}

/** Below this grey spread (0-255) a frame shows nothing: a covered lens, a wall, a dark night. */
const BLOCKED_SPREAD = 6;

/**
 * Verify after disposal: go to the view (a PTZ camera takes a verify lease, outranking patrols), let it settle, run
 * the same rule for `seconds` and say whether the violation is still there. still_present: the rule fired (or an
 * event of it is open at the end); resolved: the stream ran, the detector ran and the rule did not hold;
 * inconclusive: the camera did not get to the preset, the view was blocked, the stream was down or nothing was
 * evaluated. A fresh JPEG is kept beside the original's sha256 either way.
 */
export async function runVerify(o: VerifyOptions): Promise<VerifyResult> {
  const { target, cameras } = o;
  const base = {
    camera: target.camera,
    ...(target.preset !== undefined && { preset: target.preset }),
    zone: target.zone,
    rule: target.rule,
    ...(target.eventId !== undefined && { eventId: target.eventId }),
    seconds: o.seconds,
    ...(target.originalSha256 !== undefined && { original: { sha256: target.originalSha256 } }),
  };
  const lease = o.ptz
    ? await o.ptz.acquire('verify', target.eventId ?? `${target.zone}/${target.rule}`, { wait: true, signal: o.signal })
    : undefined;
  try {
    let arrived: Arrived | undefined;
    if (lease) {
      try {
        arrived = target.preset !== undefined ? await lease.goto(target.preset) : await lease.home();
      } catch (err) {
        if (err instanceof PtzError && (err.reason === 'not_arrived' || err.reason === 'camera_unreachable')) {
          return { ...base, verdict: 'inconclusive', why: 'not_at_preset', detail: err.message, frames: 0, detections: 0 };
        }
        throw err;
      }
    } else if (target.preset !== undefined) {
      throw new Error(`camera ${target.camera} is not a PTZ camera (no onvif and presets): it has no preset ${target.preset}`);
    }

    let frames = 0;
    let blocked = 0;
    let last: RgbFrame | undefined;
    let detections = 0;
    let seen: string | undefined;
    const stopTap = cameras.tapFrames(target.camera, (frame) => {
      frames++;
      if (greySpread(greyThumb(frame)) < BLOCKED_SPREAD) blocked++;
      if (frames % 5 === 1 || !last) {
        last = keepRgb(frame);
      }
    });
    const offDetected = o.bus.on('frame.detected', (e) => {
      if (e.cameraId === target.camera) detections++;
    });
    const offHit = o.bus.on('rule.hit', (e) => {
      if (e.cameraId !== target.camera || e.hit.zoneId !== target.zone || e.hit.ruleId !== target.rule) return;
      if (e.hit.state !== 'ended') seen ??= e.hit.eventId;
    });
    const signal = o.signal && lease ? AbortSignal.any([lease.signal, o.signal]) : (lease?.signal ?? o.signal);
    try {
      const end = Date.now() + o.seconds * 1000;
      // Ends early once the violation is seen: nothing later can change the answer.
      while (Date.now() < end && seen === undefined) await sleep(Math.min(250, end - Date.now()), signal);
    } finally {
      stopTap();
      offDetected();
      offHit();
    }
    const open = cameras.viewState(target.camera).open.find((e) => e.zoneId === target.zone && e.ruleId === target.rule);
    seen ??= open?.eventId;
    const evidence = last ? await keepJpeg(o, target.camera, o.evidenceName, last) : undefined;
    const counts = { frames, detections, ...(arrived && { arrived }), ...(evidence && { evidence }) };
    if (seen !== undefined)
      return {
        ...base,
        ...counts,
        verdict: 'still_present',
        seenEvent: seen,
        detail: `zone ${target.zone}, rule ${target.rule} still holds (event ${seen})`,
      };
    if (frames < 2)
      return {
        ...base,
        ...counts,
        verdict: 'inconclusive',
        why: 'stream_down',
        detail: `camera ${target.camera} delivered ${frames} frames in ${o.seconds} s`,
      };
    if (blocked / frames > 0.8)
      return {
        ...base,
        ...counts,
        verdict: 'inconclusive',
        why: 'view_blocked',
        detail: `${blocked} of ${frames} frames show nothing (covered lens, wall, darkness)`,
      };
    if (detections === 0)
      return {
        ...base,
        ...counts,
        verdict: 'inconclusive',
        why: 'not_evaluated',
        detail: `the detector did not run on camera ${target.camera} in ${o.seconds} s`,
      };
    return {
      ...base,
      ...counts,
      verdict: 'resolved',
      detail: `zone ${target.zone}, rule ${target.rule} did not hold in ${o.seconds} s (${detections} detector runs over ${frames} frames)`,
    };
  } finally {
    if (lease) {
      try {
        const reason: unknown = lease.signal.reason ?? o.signal?.reason;
        const leaveIt = reason instanceof PtzError && reason.reason !== 'preempted';
        if (target.preset !== undefined && !leaveIt) await lease.home();
      } catch (err) {
        o.log.warn({ camera: target.camera, err: (err as Error).message }, `camera ${target.camera}: could not go home after verifying`);
      }
      lease.release();
    }
  }
}
