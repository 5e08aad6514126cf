import { z } from 'zod';

/** The retained health snapshot on {prefix}/{gatewayId}/health; docs/schemas/health.schema.json is generated from it. */
export const HEALTH_SCHEMA_ID = 'edgepatrol.health/1';

const bytes = z.number().int().nonnegative();
const priorityCounts = z
  .object({
    what: z.enum(['event', 'evidence']),
    reason: z.string(),
    priority: z.enum(['high', 'normal', 'low']),
    count: z.number().int().nonnegative(),
  })
  .strict();

export const healthPayloadSchema = z
  .object({
    schema: z.literal(HEALTH_SCHEMA_ID),
    gatewayId: z.string(),
    at: z.iso.datetime(),
    version: z.string(),
    uptimeSeconds: z.number().nonnegative().describe('of the agent process'),
    cpu: z
      .object({
        cores: z.number().int().positive(),
        load1: z.number().nonnegative().describe('1-minute load average of the gateway'),
        processPercent: z.number().nonnegative().describe('CPU used by the agent since the previous snapshot, % of one core'),
      })
      .strict(),
    mem: z.object({ totalBytes: bytes, availableBytes: bytes, processRssBytes: bytes }).strict(),
    tempCelsius: z.number().nullable().describe('hottest thermal zone, null where none is readable'),
    disk: z
      .object({
        path: z.string(),
        totalBytes: bytes,
        freeBytes: bytes,
        floorBytes: bytes.describe('evidence.minFreeBytes; 0 when there is no floor'),
        evidencePaused: z
          .boolean()
          .describe('free space is below the floor: evidence images are not written, events are still stored and sent (disk_floor drops)'),
      })
      .strict()
      .nullable()
      .describe('the file system of the data folder'),
    outbox: z
      .object({
        pending: z.number().int().nonnegative(),
        sent: z.number().int().nonnegative(),
        acked: z.number().int().nonnegative(),
        confirmed: z.number().int().nonnegative(),
        bytes,
        maxBytes: bytes.nullable(),
        oldestUndeliveredAt: z.iso.datetime().nullable(),
        lastSeq: z.number().int().nonnegative(),
        dropped: z.object({ events: z.number().int().nonnegative(), evidence: z.number().int().nonnegative() }).strict(),
        drops: z.array(priorityCounts).describe('every drop since the outbox was created, by what, reason and priority'),
      })
      .strict(),
    uplink: z
      .object({ connected: z.boolean(), inFlight: z.number().int().nonnegative(), reconnectAttempts: z.number().int().nonnegative() })
      .strict(),
    config: z
      .object({
        reloads: z
          .object({ applied: z.number().int().nonnegative(), refused: z.number().int().nonnegative() })
          .strict()
          .describe('config reloads (SIGHUP) since the agent started'),
        lastReload: z
          .object({
            at: z.iso.datetime(),
            result: z.enum(['applied', 'refused']),
            error: z.string().optional().describe('refused: why; the running config stayed'),
            added: z.array(z.string()),
            removed: z.array(z.string()),
            restarted: z.array(z.string()).describe('cameras whose settings changed: restarted, open events ended with config_changed'),
            unchanged: z.array(z.string()),
            needsRestart: z.array(z.string()).describe('config sections that changed but apply only when the agent restarts'),
            durationMs: z.number().int().nonnegative(),
          })
          .strict()
          .nullable()
          .describe('the last reload, null before the first'),
      })
      .strict()
      .describe('the running config: its reloads'),
    cameras: z
      .array(z.object({ id: z.string(), state: z.string() }).catchall(z.union([z.number(), z.string()])))
      .describe("per camera: state and the agent's counters (frames in, detected, skipped, events, …)"),
  })
  .strict();

export type HealthPayload = z.infer<typeof healthPayloadSchema>;
