import type { ComponentContext } from '../agent/index.js';
import type { CameraConfig } from '../config/index.js';
import type { Outbox } from '../outbox/index.js';
import { isPtzCamera, type RoundStop, type VerifyTarget } from '../ptz/index.js';
import type { patrolTaskSchema, snapshotTaskSchema, TaskReason, verifyTaskSchema } from '../tasks/index.js';
import type { z } from 'zod';

export type PatrolTask = z.output<typeof patrolTaskSchema>;
export type VerifyTask = z.output<typeof verifyTaskSchema>;
export type SnapshotTask = z.output<typeof snapshotTaskSchema>;

/**
 * The queue a task waits in: one per camera, and a second one for verifications, so that a verification is not
 * stuck behind a patrol of the same camera: it takes the camera from the patrol through the PTZ lease instead.
 * A snapshot from a preset waits with the verifications (it takes the camera as they do). `payload`: the task's JSON.
 */
export function queueOf(kind: string | null, cameraId: string, payload: unknown): string {
  const atPreset = kind === 'snapshot' && typeof payload === 'object' && payload !== null && 'preset' in payload;
  return kind === 'verify' || atPreset ? `${cameraId}/verify` : cameraId;
}

/** The round a patrol task asks for: the camera's configured one, or the task's own stops. */
export function patrolRound(task: PatrolTask, camera: CameraConfig): { id: string; stops: RoundStop[] } | undefined {
  if (task.stops) return { id: task.id, stops: task.stops };
  const round = camera.patrols?.find((p) => p.id === task.round);
  return round && { id: round.id, stops: round.stops };
}

interface Problem {
  reason: TaskReason;
  detail: string;
}

/** Why a patrol or verify task cannot run on this camera (checked when it arrives), or null. */
export function ptzTaskProblem(task: PatrolTask | VerifyTask | SnapshotTask, camera: CameraConfig, outbox: Outbox): Problem | null {
  const presets = (camera.presets ?? []).map((p) => p.id);
  if (task.kind === 'snapshot') {
    if (!isPtzCamera(camera))
      return { reason: 'not_ptz', detail: `camera ${camera.id} has no onvif and presets: it cannot look from preset ${task.preset}` };
    if (task.preset !== undefined && !presets.includes(task.preset))
      return { reason: 'unknown_preset', detail: `camera ${camera.id} has no preset ${task.preset} (its presets: ${presets.join(', ')})` };
    return null;
  }
  if (task.kind === 'patrol') {
    if (!isPtzCamera(camera)) return { reason: 'not_ptz', detail: `camera ${camera.id} has no onvif and presets: it cannot patrol` };
    if (task.round !== undefined && !camera.patrols?.some((p) => p.id === task.round)) {
      const known = (camera.patrols ?? []).map((p) => p.id).join(', ') || 'none';
      return { reason: 'unknown_round', detail: `camera ${camera.id} has no patrol ${task.round} (its patrols: ${known})` };
    }
    const missing = (task.stops ?? []).find((s) => !presets.includes(s.preset));
    if (missing)
      return {
        reason: 'unknown_preset',
        detail: `camera ${camera.id} has no preset ${missing.preset} (its presets: ${presets.join(', ') || 'none'})`,
      };
    return null;
  }
  const target = verifyTarget(task, outbox);
  if ('reason' in target) return target;
  if (target.preset !== undefined && !isPtzCamera(camera))
    return { reason: 'not_ptz', detail: `camera ${camera.id} has no onvif and presets: it cannot look from preset ${target.preset}` };
  if (target.preset !== undefined && !presets.includes(target.preset))
    return {
      reason: 'unknown_preset',
      detail: `camera ${camera.id} has no preset ${target.preset} (its presets: ${presets.join(', ') || 'none'})`,
    };
  const zones = target.preset === undefined ? camera.zones : (camera.presets?.find((p) => p.id === target.preset)?.zones ?? []);
  const zone = zones.find((z) => z.id === target.zone);
  if (!zone?.rules.some((r) => r.id === target.rule)) {
    const where = target.preset === undefined ? `camera ${camera.id}` : `camera ${camera.id}, preset ${target.preset}`;
    return { reason: 'bad_task', detail: `${where} has no zone ${target.zone} with rule ${target.rule}` };
  }
  return null;
}

/** A verify task's target: its own fields, or those of the event it names (looked up in the outbox). */
export function verifyTarget(task: VerifyTask, outbox: Outbox): VerifyTarget | Problem {
  if (task.eventId === undefined)
    return {
      camera: task.camera,
      zone: task.zone!,
      rule: task.rule!,
      ...(task.preset !== undefined && { preset: task.preset }),
    };
  const row = outbox.eventMessage(task.eventId);
  if (!row) return { reason: 'unknown_event', detail: `no event ${task.eventId} in this gateway's outbox (evicted, or another gateway's)` };
  const event = JSON.parse(row.payload) as { camera?: { id?: string }; zone?: string; rule?: { id?: string }; view?: string };
  if (event.camera?.id !== task.camera)
    return { reason: 'bad_task', detail: `event ${task.eventId} is of camera ${event.camera?.id}, not ${task.camera}` };
  if (typeof event.zone !== 'string' || typeof event.rule?.id !== 'string')
    return { reason: 'unknown_event', detail: `event ${task.eventId} names no zone and rule` };
  return {
    camera: task.camera,
    zone: event.zone,
    rule: event.rule.id,
    eventId: task.eventId,
    ...(event.view !== undefined && { preset: event.view }),
    ...(row.evidenceSha256 !== null && { originalSha256: row.evidenceSha256 }),
  };
}

/** What a patrol round or a verification needs of a component's context: its bus and where evidence goes. */
export function ptzContext(ctx: ComponentContext): {
  bus: ComponentContext['bus'];
  dataDir: string;
  jpegQuality: number;
  log: ComponentContext['log'];
} {
  return { bus: ctx.bus, dataDir: ctx.dataDir, jpegQuality: ctx.config.evidence.jpegQuality, log: ctx.log };
}
