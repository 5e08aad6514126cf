import { z } from 'zod';
import { taskIdSchema, taskReasons } from '../tasks/index.js';

/**
 * Requests sent down on {prefix}/{gatewayId}/request/{verb} and their answers on …/response/{verb} (or the
 * request's MQTT 5 Response Topic), as Zigbee2MQTT does: `{status: "ok", data}` or `{status: "error", error}`,
 * with the caller's `transaction` echoed. The component that answers is src/components/requests.ts; these
 * schemas are the TypeScript types, its checks, `tail --check`'s and the JSON Schemas in docs/schemas/.
 */

/** The verbs the gateway answers. */
export const REQUEST_VERBS = [
  'config/get',
  'camera/list',
  'camera/snapshot',
  'outbox/stats',
  'model/list',
  'task/list',
  'task/cancel',
] as const;
export type RequestVerb = (typeof REQUEST_VERBS)[number];

export const REQUEST_ERROR_CODES = [
  'bad_request',
  'unknown_verb',
  'not_found',
  'unavailable',
  'busy',
  'unknown_target',
  'not_cancelable',
  'internal',
] as const;
export type RequestErrorCode = (typeof REQUEST_ERROR_CODES)[number];

export const transactionSchema = z
  .union([z.string().max(256), z.number()])
  .describe("the caller's id of the request, echoed in the answer (for MQTT 3 clients, which have no Correlation Data)");

/** Payload of a verb that takes no argument; `{}` or `{"transaction": …}`. */
export const noArgumentsRequestSchema = z.strictObject({ transaction: transactionSchema.optional() });

export const cameraSnapshotRequestSchema = z.strictObject({
  camera: z.string().min(1).max(128).describe('the camera id, as in camera/list'),
  transaction: transactionSchema.optional(),
});

/** The states a task holds in the inbox (`progress` is published, never held). */
export const INBOX_STATES = ['accepted', 'rejected', 'running', 'succeeded', 'failed', 'expired', 'canceled'] as const;
/** Most tasks task/list answers with. */
export const MAX_TASK_LIST = 1000;

export const taskListRequestSchema = z.strictObject({
  state: z.enum(INBOX_STATES).optional().describe('only the tasks in this state'),
  limit: z.number().int().min(1).max(MAX_TASK_LIST).optional().describe('the newest this many (default 100)'),
  transaction: transactionSchema.optional(),
});

export const taskCancelRequestSchema = z.strictObject({
  id: taskIdSchema.describe('the queued task to cancel, as a cancel task would'),
  transaction: transactionSchema.optional(),
});

/** The payload schema of each verb: unknown fields are refused (bad_request). */
export const requestSchemas = {
  'config/get': noArgumentsRequestSchema,
  'camera/list': noArgumentsRequestSchema,
  'camera/snapshot': cameraSnapshotRequestSchema,
  'outbox/stats': noArgumentsRequestSchema,
  'model/list': noArgumentsRequestSchema,
  'task/list': taskListRequestSchema,
  'task/cancel': taskCancelRequestSchema,
} as const satisfies Record<RequestVerb, z.ZodType>;

/** Every request payload, for docs/schemas/request.schema.json. */
export const requestPayloadSchema = z.union([
  noArgumentsRequestSchema,
  cameraSnapshotRequestSchema,
  taskListRequestSchema,
  taskCancelRequestSchema,
]);

const configData = z
  .record(z.string(), z.unknown())
  .describe('the running config with defaults filled in; every password, credential in a URL and secret query value is "***"');

const cameraSource = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('rtsp'),
    host: z.string().describe('host:port of the main stream, without credentials'),
    detectHost: z.string().optional().describe('host:port of the sub-stream the detector decodes, when there is one'),
  }),
  z.strictObject({ kind: z.literal('file'), file: z.string().describe('the video file (bench, demo, tests)') }),
]);

const cameraEntry = z.strictObject({
  id: z.string(),
  name: z.string(),
  state: z.enum(['connecting', 'streaming', 'stalled', 'backoff', 'failed', 'ended']),
  reason: z.string().optional(),
  since: z.string().describe('when the camera entered its state (ISO time)'),
  view: z.string().optional().describe("the view the camera's rules run on, when not the config's own (a PTZ preset)"),
  paused: z.string().optional().describe("why the camera's rules are paused; absent while they run"),
  decodeFps: z.number(),
  detectFps: z.number(),
  skippedFps: z.number(),
  motionRatio: z.number(),
  inferenceMs: z.number(),
  framesIn: z.number().int().describe('frames decoded since the camera started'),
  events: z.number().int().describe('events stored since the camera started'),
  source: cameraSource,
  onvif: z.strictObject({ host: z.string().describe('host:port of the ONVIF device service') }).nullable(),
  presets: z.array(z.string()).describe('ids of the PTZ presets in the config'),
  ptz: z
    .strictObject({
      holder: z
        .strictObject({ kind: z.enum(['verify', 'patrol']), id: z.string() })
        .optional()
        .describe('who has the camera now: a verification or a patrol (task id, or `schedule <round>`)'),
      manualUntil: z
        .string()
        .optional()
        .describe('a person steered the camera: patrols and verifications leave it alone until then (ISO time)'),
      movesLastHour: z.number().int().describe('moves in the last hour (ptz.maxMovesPerHour caps them)'),
    })
    .optional()
    .describe('a PTZ camera the agent moves (1.5.0)'),
});

const cameraListData = z.strictObject({ cameras: z.array(cameraEntry) });

const snapshotData = z.strictObject({
  camera: z.string(),
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  at: z.iso.datetime().describe('when the frame was grabbed'),
  contentType: z.literal('image/jpeg'),
  jpegBase64: z.string().describe('the JPEG, base64; at most 2 MiB before encoding to base64'),
});

const outboxStatsData = z.strictObject({
  pending: z.number().int(),
  sent: z.number().int(),
  acked: z.number().int(),
  confirmed: z.number().int(),
  oldestPendingTs: z.number().nullable().describe('created_at (ms since the epoch) of the oldest row not yet delivered'),
  lastSeq: z.number().int(),
  bytes: z.number().int(),
  maxBytes: z.number().int().nullable(),
  dropped: z.strictObject({ events: z.number().int(), evidence: z.number().int() }),
});

const modelListData = z.strictObject({
  default: z.string().describe("the manifest's default model"),
  models: z.array(
    z.strictObject({
      name: z.string(),
      precision: z.string(),
      sha256: z.string(),
      input: z.strictObject({ width: z.number().int(), height: z.number().int() }),
      cameras: z.array(z.string()).describe('the running config cameras that use it'),
    }),
  ),
});

const taskListData = z.strictObject({
  tasks: z
    .array(
      z.strictObject({
        id: z.string(),
        kind: z
          .string()
          .nullable()
          .describe('patrol, verify, snapshot, config or cancel; a rejected bad_task keeps the kind it named, or null'),
        camera: z.string().nullable().describe('the camera it runs on; null for cancel and config tasks and rejected ones'),
        state: z.enum(INBOX_STATES),
        reason: z.enum(taskReasons).nullable().describe('why it is in its state, for rejected, failed, expired and canceled'),
        version: z.number().int(),
        receivedAt: z.iso.datetime(),
        updatedAt: z.iso.datetime(),
      }),
    )
    .describe('newest first'),
});

const taskCancelData = z.strictObject({
  id: z.string(),
  state: z
    .enum(['canceled', 'canceling'])
    .describe(
      "canceled: the queued task's new state (it goes out on its state topic too); canceling: a running patrol or verify was told to stop, its canceled state follows on its state topic",
    ),
});

/** What `data` holds in an ok answer, per verb. */
export const responseDataSchemas = {
  'config/get': configData,
  'camera/list': cameraListData,
  'camera/snapshot': snapshotData,
  'outbox/stats': outboxStatsData,
  'model/list': modelListData,
  'task/list': taskListData,
  'task/cancel': taskCancelData,
} as const satisfies Record<RequestVerb, z.ZodType>;

export type ResponseData<V extends RequestVerb> = z.infer<(typeof responseDataSchemas)[V]>;

export const errorResponseSchema = z.strictObject({
  status: z.literal('error'),
  error: z.strictObject({
    code: z.enum(REQUEST_ERROR_CODES),
    message: z.string().describe('what went wrong and what to do, for a person'),
  }),
  transaction: transactionSchema.optional(),
});
export type ErrorResponse = z.infer<typeof errorResponseSchema>;

function okResponse<T extends z.ZodType>(data: T) {
  return z.strictObject({ status: z.literal('ok'), data, transaction: transactionSchema.optional() });
}

/** The answer on …/response/{verb}: an error, or ok with that verb's data. Unknown verbs are answered with errors only. */
export function responseSchemaFor(verb: string): z.ZodType {
  const data = (responseDataSchemas as Record<string, z.ZodType>)[verb];
  // Discriminated, so a problem is reported inside the branch its status names rather than as "invalid input".
  return data ? z.discriminatedUnion('status', [okResponse(data), errorResponseSchema]) : errorResponseSchema;
}

/** Any answer, for docs/schemas/response.schema.json. */
export const responsePayloadSchema = z.union([...REQUEST_VERBS.map((v) => okResponse(responseDataSchemas[v])), errorResponseSchema]);
