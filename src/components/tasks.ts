import { createHash, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import type { Component, ComponentContext } from '../agent/index.js';
import { encodeJpeg } from '../common/jpeg.js';
import { StagedConfig } from '../config/index.js';
import { canonicalJson, parsePublicKey, verifyTask } from '../common/signing.js';
import { gatewayTopics, type GatewayTopics } from '../common/topics.js';
import { storeEvidence } from '../evidence/store.js';
import { grabFrame } from '../ingest/index.js';
import type { InboxState, StateMessage, TaskRecord, TaskRow } from '../outbox/index.js';
import { PtzError, PtzHub, runRound, runVerify, type PtzCamera } from '../ptz/index.js';
import { patrolRound, ptzContext, ptzTaskProblem, queueOf, verifyTarget, type PatrolTask, type VerifyTask } from './ptz-tasks.js';
import { runConfigTask, type ConfigOutcome } from './config-task.js';
import {
  finalStates,
  TASK_STATE_SCHEMA_ID,
  taskSchema,
  type Task,
  type TaskReason,
  type TaskStateName,
  type TaskStatePayload,
} from '../tasks/index.js';

/** Largest task payload stored as text; a longer one (always rejected) is stored as its sha256. */
const MAX_STORED = 64 * 1024;
/** Longest schema problem put in a state's detail. */
const DETAIL_CHARS = 500;
/**
 * Kinds that may resume after a restart: none yet. A snapshot is quick and the service can send it again; a
 * config task is held in memory only; patrol and verify (later) will resume from their checkpoint.
 */
const RESUMABLE: ReadonlySet<string> = new Set();
/** The queue config tasks run in, one at a time: they have no camera, and no camera's tasks wait for them. */
const CONFIG_QUEUE = '_config';

type ConfigTask = Extract<Task, { kind: 'config' }>;

/** What a cancel did to its target (a cancel task and the request task/cancel report it). */
export type CancelResult =
  /** canceling: a running patrol or verify was told to stop; its canceled state follows once it has. */
  | { ok: true; state: 'canceled' | 'canceling' }
  | { ok: false; reason: 'unknown_target' | 'not_cancelable'; detail: string; state?: InboxState };

/** Why a running patrol or verify stopped: a cancel task or the request task/cancel. */
class TaskCanceled extends Error {
  constructor(by: string) {
    super(`canceled by ${by}`);
    this.name = 'TaskCanceled';
  }
}

interface Outcome {
  state: TaskStateName;
  reason?: TaskReason;
  detail?: string;
  progress?: number;
  result?: Record<string, unknown>;
}

/**
 * A config task is stored as its sha256 too, whatever its size: the config may hold secrets, which stay out of the
 * inbox (the task waits in memory; after a restart it fails interrupted and the centre sends it again).
 */
function stored(canon: string, kind: string | null): string {
  return canon.length <= MAX_STORED && kind !== 'config' ? canon : `sha256:${createHash('sha256').update(canon).digest('hex')}`;
}

function problemText(error: z.ZodError): string {
  const text = error.issues
    .slice(0, 3)
    .map((i) => (i.path.length > 0 ? `${i.path.join('.')}: ${i.message}` : i.message))
    .join('; ');
  return text.length > DETAIL_CHARS ? `${text.slice(0, DETAIL_CHARS - 1)}…` : text;
}

function kindOf(json: unknown): string | null {
  if (typeof json !== 'object' || json === null) return null;
  const kind = (json as Record<string, unknown>).kind;
  return typeof kind === 'string' && kind.length <= 32 ? kind : null;
}

/**
 * The task inbox's runner (docs/decisions/0047-task-inbox.md): takes tasks from {prefix}/{gw}/task/{taskId},
 * checks them (schema, topic id, signature, issuedAt window, expiry, duplicates), stores them in the outbox's
 * tasks table and publishes every state through the outbox. Tasks run one at a time per camera, in arrival order.
 */
export class Tasks implements Component {
  readonly name = 'tasks';
  private ctx: ComponentContext | undefined;
  private topics: GatewayTopics | undefined;
  private key: KeyObject | undefined;
  private unsubscribe: (() => void) | undefined;
  private readonly queues = new Map<string, string[]>();
  private readonly running = new Map<string, Promise<void>>();
  /** Running tasks' abort controllers: stop() aborts them (a patrol in its dwell must not hold up shutdown). */
  private readonly aborts = new Map<string, AbortController>();
  /** Queued config tasks, kept here only (see stored()). */
  private readonly configs = new Map<string, ConfigTask>();
  /** Ends a config task's wait for its cameras when the agent stops. */
  private abort = new AbortController();
  private stopping = false;

  /** `ptz`: the PTZ cameras' movers, shared with the patrol schedules; `now`: the clock (default Date.now). */
  constructor(
    private readonly ptz: PtzHub = new PtzHub(),
    private readonly now: () => number = Date.now,
  ) {}

  start(ctx: ComponentContext): void {
    this.ctx = ctx;
    this.stopping = false;
    this.abort = new AbortController();
    if (ctx.configFile) StagedConfig.removeLeftovers(ctx.configFile.path);
    this.topics = gatewayTopics(ctx.config.mqtt.prefix, ctx.config.gateway.id);
    const { publicKey } = ctx.config.tasks;
    this.key = publicKey === undefined ? undefined : parsePublicKey(publicKey);
    for (const row of ctx.outbox.tasks.open()) {
      if (row.state === 'running' && !RESUMABLE.has(row.kind ?? '')) {
        this.move(row, 'failed', { state: 'failed', reason: 'interrupted', detail: 'the agent stopped while the task ran' });
        ctx.log.warn(
          { task: row.id, kind: row.kind },
          `task ${row.id} (${row.kind}) was running when the agent stopped; failed it as interrupted`,
        );
      } else if (row.state === 'accepted' && row.kind === 'config') {
        this.move(row, 'failed', {
          state: 'failed',
          reason: 'interrupted',
          detail: 'the agent stopped before the config task ran; its config is kept in memory only (it may hold secrets): send it again',
        });
      } else if (row.state === 'accepted' && row.cameraId !== null) {
        this.enqueue(queueOf(row.kind, row.cameraId, parseOrNull(row.payload)), row.id);
      }
    }
    this.ptz.start(ctx.config.cameras, ctx.cameras, ctx.log);
    this.unsubscribe = ctx.uplink.subscribe(this.topics.tasks, z.unknown(), (json, topic) => this.receive(json, topic));
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.queues.clear();
    for (const c of this.aborts.values()) c.abort(new PtzError('stopped', 'the agent is stopping'));
    this.configs.clear();
    this.abort.abort();
    await Promise.allSettled([...this.running.values()]);
    this.ptz.stop();
  }

  /** Synchronous up to the first write, so the task is stored before the broker gets its PUBACK. */
  private receive(json: unknown, topic: string): void {
    const ctx = this.ctx!;
    const id = topic.slice(this.topics!.base.length + '/task/'.length);
    const canon = stored(canonicalJson(json), kindOf(json));
    const existing = ctx.outbox.tasks.get(id);
    const parsed = taskSchema.safeParse(json);
    if (existing) return this.again(existing, canon, parsed.success ? parsed.data : undefined, json);

    const record: TaskRecord = { id, kind: kindOf(json), cameraId: null, payload: canon, version: 1 };
    if (!parsed.success) return this.reject(record, 'bad_task', problemText(parsed.error));
    const task = parsed.data;
    record.kind = task.kind;
    record.version = task.version ?? 1;
    if (task.id !== id)
      return this.reject(record, 'bad_task', `id ${JSON.stringify(task.id)} is not the topic's task id ${JSON.stringify(id)}`);
    const refused = this.trustProblem(task, json as Record<string, unknown>);
    if (refused) return this.reject(record, refused.reason, refused.detail);
    if (task.expiresAt !== undefined && Date.parse(task.expiresAt) <= this.now()) {
      this.insert(record, 'expired', {
        state: 'expired',
        reason: 'expired',
        detail: `expiresAt ${task.expiresAt} had passed when it arrived`,
      });
      return;
    }
    if (task.kind === 'config') return this.acceptConfig(record, task);
    if (task.kind === 'cancel') return this.cancel(record, task.target);
    const camera = ctx.config.cameras.find((c) => c.id === task.camera);
    if (!camera) return this.reject(record, 'unknown_camera', `no camera ${task.camera} on this gateway`);
    const problem =
      task.kind === 'patrol' || task.kind === 'verify' || (task.kind === 'snapshot' && task.preset !== undefined)
        ? ptzTaskProblem(task, camera, ctx.outbox)
        : null;
    if (problem) return this.reject(record, problem.reason, problem.detail);
    record.cameraId = task.camera;
    this.insert(record, 'accepted', { state: 'accepted' });
    this.enqueue(queueOf(task.kind, task.camera, task), id);
  }

  /** A task id seen before: a redelivery, a replay, a newer version or a clash. */
  private again(row: TaskRow, canon: string, task: Task | undefined, json: unknown): void {
    const ctx = this.ctx!;
    if (row.payload === canon) {
      if (!finalStates.has(row.state)) {
        ctx.log.debug({ task: row.id }, `task ${row.id} delivered again; it is already ${row.state}`);
        return;
      }
      this.move(row, row.state, {
        state: 'rejected',
        reason: 'replay',
        detail: `task ${row.id} was sent again after it ended (${row.state}); not run again`,
      });
      return;
    }
    const version = task?.version ?? 1;
    if (task && task.id === row.id && row.state === 'accepted' && version > row.version && task.kind === row.kind) {
      const refused = this.trustProblem(task, json as Record<string, unknown>);
      if (!refused) {
        const cameraId = 'camera' in task ? task.camera : null;
        if (cameraId === row.cameraId) {
          ctx.outbox.tasks.replace(
            { id: row.id, kind: task.kind, cameraId, payload: canon, version },
            'accepted',
            null,
            this.message(row.id, { state: 'accepted' }),
          );
          if (task.kind === 'config') this.configs.set(row.id, task);
          ctx.log.info({ task: row.id, version }, `task ${row.id} replaced by its version ${version} while queued`);
          return;
        }
      }
    }
    this.move(row, row.state, {
      state: 'rejected',
      reason: 'duplicate_id',
      detail: `another task with id ${row.id} is already ${row.state}; this one (a different payload) is not run`,
    });
  }

  private trustProblem(task: Task, json: Record<string, unknown>): { reason: TaskReason; detail: string } | null {
    const { requireSignature, clockSkewSeconds } = this.ctx!.config.tasks;
    if (task.signature === undefined) {
      if (requireSignature) return { reason: 'unsigned', detail: 'this gateway takes signed tasks only (tasks.requireSignature)' };
    } else if (this.key !== undefined && !verifyTask(json, this.key)) {
      return { reason: 'bad_signature', detail: "the signature does not verify with the gateway's tasks.publicKey" };
    }
    const skew = Math.abs(Date.parse(task.issuedAt) - this.now());
    if (skew > clockSkewSeconds * 1000) {
      return {
        reason: 'stale',
        detail: `issuedAt ${task.issuedAt} is ${Math.round(skew / 1000)} s from the gateway's clock (at most ${clockSkewSeconds} s)`,
      };
    }
    return null;
  }

  private cancel(record: TaskRecord, targetId: string): void {
    const inbox = this.ctx!.outbox.tasks;
    this.insert(record, 'running', { state: 'accepted' });
    const self = inbox.get(record.id)!;
    this.move(self, 'running', { state: 'running' });
    const done = this.cancelQueued(targetId, `task ${record.id}`);
    if (done.ok) this.move(self, 'succeeded', { state: 'succeeded', result: { target: targetId } });
    else this.move(self, 'failed', { state: 'failed', reason: done.reason, detail: done.detail });
  }

  /**
   * Cancels task `targetId` if it is queued: it ends `canceled`, its detail naming `by` (a cancel task, the request
   * task/cancel). A running patrol or verify is stopped (the round's camera goes home) and ends `canceled` with
   * what it did so far. Other running tasks (a snapshot, a config) and finished ones cannot be canceled; an unknown
   * id is said so.
   */
  cancelQueued(targetId: string, by: string): CancelResult {
    const target = this.ctx!.outbox.tasks.get(targetId);
    if (!target) return { ok: false, reason: 'unknown_target', detail: `no task ${targetId} on this gateway` };
    const running = this.aborts.get(targetId);
    if (target.state === 'running' && running && (target.kind === 'patrol' || target.kind === 'verify')) {
      running.abort(new TaskCanceled(by));
      return { ok: true, state: 'canceling' };
    }
    if (target.state !== 'accepted') {
      return {
        ok: false,
        reason: 'not_cancelable',
        detail: `task ${targetId} is ${target.state}; only a queued task, or a running patrol or verify, can be canceled`,
        state: target.state,
      };
    }
    this.move(target, 'canceled', { state: 'canceled', reason: 'canceled', detail: `canceled by ${by}` });
    this.configs.delete(targetId);
    return { ok: true, state: 'canceled' };
  }

  /** A config task: queued in memory (never with its config in the inbox) and run in the config queue. */
  private acceptConfig(record: TaskRecord, task: ConfigTask): void {
    if (this.ctx!.configFile === undefined) {
      return this.reject(record, 'not_supported_yet', 'this agent was started without a config file, so it has none to replace');
    }
    this.insert(record, 'accepted', { state: 'accepted' });
    this.configs.set(record.id, task);
    this.enqueue(CONFIG_QUEUE, record.id);
  }

  private async runConfig(row: TaskRow): Promise<void> {
    const ctx = this.ctx!;
    const task = this.configs.get(row.id);
    this.configs.delete(row.id);
    if (row.state !== 'accepted' || !task) return;
    try {
      if (this.expiredInQueue(row, task.expiresAt)) return;
      this.move(row, 'running', { state: 'running' });
      let outcome: ConfigOutcome | null;
      try {
        outcome = await runConfigTask(ctx, row.id, task.config, this.abort.signal);
      } catch (err) {
        outcome = { state: 'failed', reason: 'internal', detail: (err as Error).message.slice(0, DETAIL_CHARS) };
      }
      if (outcome === null) {
        ctx.log.warn(
          { task: row.id },
          `config task ${row.id}: the agent stops before its cameras streamed; the config file stays as it was`,
        );
        return;
      }
      if (outcome.state === 'failed')
        ctx.log.warn({ task: row.id, reason: outcome.reason }, `config task ${row.id} failed (${outcome.reason}): ${outcome.detail}`);
      this.move(row, outcome.state, outcome);
    } catch (err) {
      ctx.log.error(
        { task: row.id, err: (err as Error).message },
        `config task ${row.id}: cannot record its state; the next start reports it interrupted`,
      );
    }
  }

  private enqueue(cameraId: string, id: string): void {
    const queue = this.queues.get(cameraId) ?? [];
    queue.push(id);
    this.queues.set(cameraId, queue);
    this.pump(cameraId);
  }

  /** Starts the next queued task of the camera unless one runs. */
  private pump(cameraId: string): void {
    if (this.stopping || this.running.has(cameraId)) return;
    const queue = this.queues.get(cameraId);
    const id = queue?.shift();
    if (id === undefined) return;
    const run = this.runOne(id).finally(() => {
      this.running.delete(cameraId);
      this.pump(cameraId);
    });
    this.running.set(cameraId, run);
  }

  private async runOne(id: string): Promise<void> {
    const ctx = this.ctx!;
    const row = ctx.outbox.tasks.get(id);
    if (row?.kind === 'config') return this.runConfig(row);
    if (row?.state !== 'accepted') return;
    try {
      const task = taskSchema.parse(JSON.parse(row.payload));
      if (this.expiredInQueue(row, task.expiresAt)) return;
      this.move(row, 'running', { state: 'running' });
      const controller = new AbortController();
      this.aborts.set(id, controller);
      let result: Record<string, unknown>;
      if (task.kind === 'snapshot' && task.preset !== undefined)
        result = await this.presetSnapshot(task.camera, task.preset, id, controller.signal);
      else if (task.kind === 'snapshot') result = await this.snapshot(task.camera, id);
      else if (task.kind === 'patrol') result = await this.patrol(task, row, controller.signal);
      else if (task.kind === 'verify') result = await this.verify(task, id, controller.signal);
      else throw new Error(`kind ${task.kind} cannot be queued`);
      this.move(row, 'succeeded', { state: 'succeeded', result });
    } catch (err) {
      const text = (err as Error).message;
      ctx.log.warn({ task: id, err: text }, `task ${id} failed: ${text}`);
      try {
        const now = ctx.outbox.tasks.get(id);
        const reason: TaskReason =
          err instanceof PtzError ? (err.reason === 'stopped' || err.reason === 'busy' ? 'interrupted' : err.reason) : 'capture_failed';
        const partial = (err as { partial?: Record<string, unknown> }).partial;
        const detail = text.slice(0, DETAIL_CHARS);
        if (now && !finalStates.has(now.state)) {
          if (err instanceof TaskCanceled)
            this.move(now, 'canceled', { state: 'canceled', reason: 'canceled', detail, ...(partial && { result: partial }) });
          else this.move(now, 'failed', { state: 'failed', reason, detail, ...(partial && { result: partial }) });
        }
      } catch (err2) {
        // The outbox itself failed (full disk, closed): the row stays running and the next start fails it as interrupted.
        ctx.log.error(
          { task: id, err: (err2 as Error).message },
          `task ${id}: cannot record its failure; the next start reports it interrupted`,
        );
      }
    } finally {
      this.aborts.delete(id);
    }
  }

  /** A patrol round: the config's (round) or the task's own stops; a progress state after each stop. */
  private async patrol(task: PatrolTask, row: TaskRow, signal: AbortSignal): Promise<Record<string, unknown>> {
    const ctx = this.ctx!;
    const camera = ctx.config.cameras.find((c) => c.id === task.camera);
    const round = camera && patrolRound(task, camera);
    if (!round) throw new Error(`camera ${task.camera} or its round ${task.round} is no longer in the config`);
    const ptz = await this.ptz.get(task.camera);
    if (!ptz) throw new PtzError('camera_unreachable', `camera ${task.camera} cannot be moved (no PTZ control)`);
    const lease = await ptz.acquire('patrol', task.id, { wait: true, signal });
    try {
      const result = await runRound({
        ptz,
        lease,
        round,
        ...ptzContext(ctx),
        evidenceName: `task-${task.id}`,
        signal,
        onStop: (i, stop) => {
          if (stop.error === undefined && i < round.stops.length - 1)
            this.move(row, 'running', { state: 'progress', progress: (i + 1) / round.stops.length, result: { stop: i + 1, ...stop } });
        },
      });
      return { ...result };
    } finally {
      lease.release();
    }
  }

  /** Verify after disposal: the event's (or the task's) view, zone and rule, evaluated again. */
  private async verify(task: VerifyTask, taskId: string, signal: AbortSignal): Promise<Record<string, unknown>> {
    const ctx = this.ctx!;
    const camera = ctx.config.cameras.find((c) => c.id === task.camera);
    if (!camera) throw new Error(`camera ${task.camera} is no longer in the config`);
    const target = verifyTarget(task, ctx.outbox);
    if ('reason' in target) throw new Error(target.detail);
    const zone = (target.preset === undefined ? camera.zones : camera.presets?.find((p) => p.id === target.preset)?.zones)?.find(
      (z) => z.id === target.zone,
    );
    const rule = zone?.rules.find((r) => r.id === target.rule);
    const ruleSeconds = rule && 'seconds' in rule && typeof rule.seconds === 'number' ? rule.seconds : 0;
    const seconds = task.seconds ?? Math.min(600, Math.max(20, ruleSeconds + 15));
    const result = await runVerify({
      target,
      seconds,
      camera,
      cameras: ctx.cameras,
      ptz: await this.ptz.get(task.camera),
      ...ptzContext(ctx),
      evidenceName: `verify-${taskId}`,
      signal,
    });
    return { ...result };
  }

  /** One frame of the camera's main stream, stored as a JPEG under {dataDir}/evidence with its sha256. */
  private async snapshot(cameraId: string, taskId: string): Promise<Record<string, unknown>> {
    const { config, dataDir } = this.ctx!;
    const camera = config.cameras.find((c) => c.id === cameraId);
    if (!camera) throw new Error(`camera ${cameraId} is no longer in the config`);
    const url = camera.source.url ?? camera.source.file;
    if (url === undefined) throw new Error(`camera ${cameraId} has no stream to grab`);
    const frame = await grabFrame({ cameraId, url });
    const jpeg = await encodeJpeg(frame, config.evidence.jpegQuality);
    const ts = this.now();
    const saved = storeEvidence(dataDir, `task-${taskId}`, ts, jpeg);
    return { camera: cameraId, file: saved.file, sha256: saved.sha256, bytes: saved.bytes, width: frame.width, height: frame.height };
  }

  /** A queued task whose expiresAt has passed when its turn comes ends expired (true); otherwise false. */
  private expiredInQueue(row: TaskRow, expiresAt: string | undefined): boolean {
    if (expiresAt === undefined || Date.parse(expiresAt) > this.now()) return false;
    this.move(row, 'expired', { state: 'expired', reason: 'expired', detail: `expiresAt ${expiresAt} passed while it was queued` });
    return true;
  }

  /** A PTZ camera's lease holder, manual hold and moves in the last hour (camera/list). */
  ptzState(cameraId: string): PtzCamera['state'] | undefined {
    return this.ptz.stateOf(cameraId);
  }

  /** A snapshot from a preset: the camera is taken as a verification takes it, moved, grabbed, sent home. */
  private async presetSnapshot(cameraId: string, preset: string, taskId: string, signal: AbortSignal): Promise<Record<string, unknown>> {
    const ptz = await this.ptz.get(cameraId);
    if (!ptz) throw new PtzError('camera_unreachable', `camera ${cameraId} cannot be moved (no PTZ control)`);
    const lease = await ptz.acquire('verify', taskId, { wait: true, signal });
    try {
      const arrived = await lease.goto(preset);
      return { ...(await this.snapshot(cameraId, taskId)), preset, arrived };
    } finally {
      try {
        if (!(lease.signal.reason instanceof PtzError) && !signal.aborted) await lease.home();
      } catch (err) {
        this.ctx!.log.warn({ camera: cameraId, err: (err as Error).message }, `camera ${cameraId}: could not go home after the snapshot`);
      }
      lease.release();
    }
  }

  private reject(record: TaskRecord, reason: TaskReason, detail: string): void {
    this.ctx!.log.warn({ task: record.id, kind: record.kind, reason }, `task ${record.id} rejected (${reason}): ${detail}`);
    this.insert(record, 'rejected', { state: 'rejected', reason, detail });
  }

  private insert(record: TaskRecord, state: InboxState, outcome: Outcome): void {
    this.ctx!.outbox.tasks.insert(record, state, outcome.reason ?? null, this.message(record.id, outcome));
  }

  /** Stores the row's new state and publishes `outcome` (a replay or clash publishes a state the row keeps not). */
  private move(row: TaskRow, state: InboxState, outcome: Outcome): void {
    const reason = state === row.state ? row.reason : (outcome.reason ?? null);
    this.ctx!.outbox.tasks.move(row.id, state, reason, this.message(row.id, outcome));
    row.state = state;
  }

  private message(taskId: string, outcome: Outcome): StateMessage {
    return {
      topic: this.topics!.taskState(taskId),
      build: (seq, at, gatewaySeq): TaskStatePayload => ({
        schema: TASK_STATE_SCHEMA_ID,
        taskId,
        state: outcome.state,
        at: new Date(at).toISOString(),
        seq,
        gatewaySeq,
        ...(outcome.reason === undefined ? {} : { reason: outcome.reason }),
        ...(outcome.detail === undefined ? {} : { detail: outcome.detail }),
        ...(outcome.progress === undefined ? {} : { progress: Math.round(outcome.progress * 1000) / 1000 }),
        ...(outcome.result === undefined ? {} : { result: outcome.result }),
      }),
    };
  }
}

/** A stored payload's JSON, or null (a payload kept as its sha256). */
function parseOrNull(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
