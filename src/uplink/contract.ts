import { z } from 'zod';

/**
 * The payloads the uplink itself publishes or reads (events are src/agent/event.ts, alerts src/outbox/alert.ts,
 * health src/health/payload.ts). Each zod schema is the TypeScript type, the check in the contract tests and,
 * through scripts/contract-schemas.ts, the JSON Schema in docs/schemas/.
 */

export const availabilityPayloadSchema = z
  .object({
    state: z.enum(['online', 'offline']),
    version: z.string().describe('edgepatrol version of the gateway'),
    since: z.iso
      .datetime()
      .optional()
      .describe('when this state began; absent in the last will, which the broker sends as registered at connect'),
  })
  .strict();
export type AvailabilityPayload = z.infer<typeof availabilityPayloadSchema>;

export const ACK_SCHEMA_ID = 'edgepatrol.ack/1';

/** What the task service publishes on {prefix}/{gatewayId}/ack once it has stored events (delivery: service). */
export const ackPayloadSchema = z
  .object({
    schema: z.literal(ACK_SCHEMA_ID).optional(),
    ids: z.array(z.uuid()).min(1).max(10_000).describe('ids of events (or alerts) the service has stored'),
  })
  .strict();
export type AckPayload = z.infer<typeof ackPayloadSchema>;

const decimal = z.string().regex(/^[1-9][0-9]*$/);

/** MQTT 5 user properties of each message on {prefix}/{gatewayId}/evidence/{messageId}; the payload is (a part of) the JPEG. */
export const evidencePropertiesSchema = z
  .object({
    messageId: z.uuid().describe('the event message this image belongs to (its messageId); also the last topic level'),
    seq: decimal.describe("the event's per-gateway seq"),
    sha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .describe("sha256 of the whole image, as in the event's evidence.annotated.sha256"),
    bytes: decimal.describe('size of the whole image'),
    part: decimal.describe('1-based index of this part'),
    parts: decimal.describe("number of parts; an image over the broker's maximum packet size is split, parts are published in order"),
  })
  .strict();
export type EvidenceProperties = z.infer<typeof evidencePropertiesSchema>;
