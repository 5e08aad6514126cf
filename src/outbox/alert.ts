import { z } from 'zod';

/**
 * Alert events the gateway raises about itself (not about a scene), published on `{prefix}/{gatewayId}/alert/{kind}`
 * through the outbox like any event, so they share its delivery guarantee. docs/schemas/alert.schema.json is
 * generated from this schema.
 */
export const ALERT_SCHEMA_ID = 'edgepatrol.alert/1';

export const alertKinds = ['outbox_drop', 'outbox_corrupt'] as const;
export type AlertKind = (typeof alertKinds)[number];

export const alertPayloadSchema = z
  .object({
    schema: z.literal(ALERT_SCHEMA_ID),
    id: z.uuid({ version: 'v7' }).describe('stable alert id (UUIDv7); a redelivery carries the same id'),
    seq: z.number().int().positive().describe('per-gateway sequence number, shared with events'),
    gatewayId: z.string(),
    kind: z
      .enum(alertKinds)
      .describe(
        'outbox_drop: events or evidence were dropped (byte cap, time-to-live, full disk, missing file); ' +
          'outbox_corrupt: the outbox file was damaged and replaced',
      ),
    at: z.iso.datetime(),
    message: z.string().describe('one line for a person'),
    detail: z
      .record(z.string(), z.unknown())
      .describe(
        'outbox_drop: { since, dropped: [{ what, reason, priority, count }], total: { events, evidence } }; ' +
          'outbox_corrupt: { movedTo, error }',
      ),
  })
  .strict();

export type AlertPayload = z.infer<typeof alertPayloadSchema>;
