import { z } from 'zod';

/**
 * The task contract (docs/asyncapi.yaml, docs/decisions/0047-task-inbox.md): what the task service sends down on
 * {prefix}/{gw}/task/{taskId} and the states the gateway publishes on …/task/{taskId}/state. Each zod schema is
 * the TypeScript type, the agent's check and, through src/uplink/schemas.ts, the JSON Schema in docs/schemas/.
 */

export const TASK_SCHEMA_ID = 'edgepatrol.task/1';
export const TASK_STATE_SCHEMA_ID = 'edgepatrol.task-state/1';

/** A task id is one MQTT topic level: it is the last level of the task's topic and of its state topic. */
export const taskIdSchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[^/+#\s]+$/, { error: "a task id must not contain '/', '+', '#' or white space (it is a topic level)" });

const cameraId = z.string().min(1).max(64).describe('a camera id of the gateway config');

const common = {
  schema: z.literal(TASK_SCHEMA_ID),
  id: taskIdSchema.describe("the task's id; must equal the last level of the topic it is published on"),
  issuedAt: z.iso
    .datetime({ offset: true })
    .describe("when the service issued the task; more than tasks.clockSkewSeconds from the gateway's clock: rejected stale"),
  expiresAt: z.iso
    .datetime({ offset: true })
    .optional()
    .describe('a task that arrives, or is still queued, after this time ends expired without running'),
  version: z
    .number()
    .int()
    .min(1)
    .max(2 ** 31)
    .optional()
    .describe('a higher version of a task that is still queued replaces it; default 1'),
  signature: z
    .string()
    .max(200)
    .optional()
    .describe(
      "base64 Ed25519 signature over the canonical JSON of the task without this field (required when the gateway's tasks.requireSignature)",
    ),
};

const stepId = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_-]+$/, { error: "only letters, digits, '_' and '-'" });

export const snapshotTaskSchema = z.strictObject({
  ...common,
  kind: z.literal('snapshot'),
  camera: cameraId.describe('the camera whose main stream is grabbed'),
  preset: stepId
    .optional()
    .describe('a PTZ camera is moved to this preset first (taking it from a patrol, as verify does) and sent home after'),
});

export const cancelTaskSchema = z.strictObject({
  ...common,
  kind: z.literal('cancel'),
  target: taskIdSchema.describe('the id of the queued task to cancel'),
});

export const configTaskSchema = z.strictObject({
  ...common,
  kind: z.literal('config'),
  config: z
    .record(z.string(), z.unknown())
    .describe(
      "a whole gateway config, as the config file holds it (docs/config.md): checked as at start, applied as a reload, rolled back when a camera it adds or changes does not stream within tasks.configTimeoutSeconds, then written to the gateway's config file. A value config/get shows as *** keeps the running value",
    ),
});

export const patrolTaskSchema = z
  .strictObject({
    ...common,
    kind: z.literal('patrol'),
    camera: cameraId.describe('a PTZ camera of the gateway (one with onvif and presets)'),
    round: stepId.optional().describe("one of the camera's patrols in the gateway config (cameras[].patrols[].id)"),
    stops: z
      .array(
        z.strictObject({
          preset: stepId.describe('a preset id of the camera (cameras[].presets[].id)'),
          dwellSeconds: z.number().positive().max(3600).default(30).describe('how long its rules run once the picture is still'),
        }),
      )
      .min(1)
      .max(64)
      .optional()
      .describe('the stops of a round not in the config, in order'),
  })
  .superRefine((t, ctx) => {
    if ((t.round === undefined) === (t.stops === undefined))
      ctx.addIssue({ code: 'custom', path: ['round'], message: 'give round (a patrol of the config) or stops, not both and not neither' });
  });

export const verifyTaskSchema = z
  .strictObject({
    ...common,
    kind: z.literal('verify'),
    camera: cameraId,
    eventId: z.string().min(1).max(64).optional().describe('the event to verify: its camera view (preset), zone and rule are looked up'),
    preset: stepId.optional().describe("without eventId: the PTZ preset to look from (absent: the camera's own view)"),
    zone: stepId.optional().describe('without eventId: the zone'),
    rule: stepId.optional().describe('without eventId: the rule id in the zone'),
    seconds: z
      .number()
      .min(5)
      .max(600)
      .optional()
      .describe("how long the rule is evaluated once the view is still (default: the rule's own seconds + 15, at least 20)"),
  })
  .superRefine((t, ctx) => {
    if (t.eventId === undefined && (t.zone === undefined || t.rule === undefined))
      ctx.addIssue({ code: 'custom', path: ['eventId'], message: 'give eventId, or zone and rule (and preset for a PTZ view)' });
  });

export const taskSchema = z.discriminatedUnion('kind', [
  snapshotTaskSchema,
  cancelTaskSchema,
  configTaskSchema,
  patrolTaskSchema,
  verifyTaskSchema,
]);
export type Task = z.infer<typeof taskSchema>;
export type TaskKind = Task['kind'];
export const taskKinds: readonly TaskKind[] = ['patrol', 'verify', 'snapshot', 'config', 'cancel'];

/**
 * accepted: in the inbox, queued; running; progress (running, with progress); then one final state: succeeded,
 * failed, rejected (never queued), expired, canceled.
 */
export const taskStates = ['accepted', 'rejected', 'running', 'progress', 'succeeded', 'failed', 'expired', 'canceled'] as const;
export type TaskStateName = (typeof taskStates)[number];
export const finalStates: ReadonlySet<TaskStateName> = new Set(['rejected', 'succeeded', 'failed', 'expired', 'canceled']);

export const taskReasons = [
  'bad_task',
  'duplicate_id',
  'replay',
  'stale',
  'unsigned',
  'bad_signature',
  'expired',
  'not_supported_yet',
  'unknown_camera',
  'unknown_target',
  'not_cancelable',
  'canceled',
  'interrupted',
  'capture_failed',
  'invalid_config',
  'rolled_back',
  'internal',
  'not_ptz',
  'unknown_round',
  'unknown_preset',
  'unknown_event',
  'preempted',
  'manual_control',
  'moves_capped',
  'not_arrived',
  'camera_unreachable',
] as const;
export type TaskReason = (typeof taskReasons)[number];

export const taskStatePayloadSchema = z
  .strictObject({
    schema: z.literal(TASK_STATE_SCHEMA_ID),
    taskId: taskIdSchema,
    state: z.enum(taskStates),
    at: z.iso.datetime().describe('when the gateway entered this state'),
    seq: z
      .number()
      .int()
      .min(1)
      .describe('1, 2, 3, … per task: states of one task in the order they happened; de-duplicate by (taskId, seq)'),
    gatewaySeq: z
      .number()
      .int()
      .min(1)
      .describe("the gateway's own seq, the sequence events and alerts carry as seq: task states take numbers of it too"),
    reason: z.enum(taskReasons).optional().describe('why: with rejected, failed, expired and canceled'),
    detail: z.string().max(500).optional().describe('a person-readable explanation, e.g. the schema problem of a bad_task'),
    progress: z.number().min(0).max(1).optional().describe('with progress: the fraction done'),
    result: z
      .record(z.string(), z.unknown())
      .optional()
      .describe(
        'with succeeded: what the task produced (snapshot: camera, file, sha256, bytes, width, height; config: added, removed, changed, unchanged, needsRestart; patrol: its stops; verify: verdict, evidence); with progress: the stop just done; with a patrol failed: the stops done so far',
      ),
  })
  .superRefine((s, ctx) => {
    if ((s.state === 'rejected' || s.state === 'failed') && s.reason === undefined)
      ctx.addIssue({ code: 'custom', path: ['reason'], message: `a ${s.state} state carries a reason` });
  });
export type TaskStatePayload = z.infer<typeof taskStatePayloadSchema>;
