import { z } from 'zod';

/**
 * The event payload published on `{prefix}/{gatewayId}/event/{type}`: the product's API for central subscribers.
 * One schema is the TypeScript type, the runtime check in tests and docs/event.schema.json.
 */
export const EVENT_SCHEMA_ID = 'edgepatrol.event/1';

const normalizedBox = z.tuple([z.number().min(0).max(1), z.number().min(0).max(1), z.number().min(0).max(1), z.number().min(0).max(1)])
  .describe('x1, y1, x2, y2 as fractions of the frame width and height');

const evidenceImage = z.object({
  file: z.string().describe('path of the JPEG relative to the gateway data folder'),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().positive(),
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  contentType: z.literal('image/jpeg'),
}).strict();

export const eventPayloadSchema = z.object({
  schema: z.literal(EVENT_SCHEMA_ID),
  id: z.uuid({ version: 'v7' }).describe('stable event id (UUIDv7); a redelivery carries the same id'),
  seq: z.number().int().positive().describe('per-gateway sequence number, increasing, never reused'),
  gatewayId: z.string(),
  type: z.string().regex(/^[a-z][a-z0-9_]*$/).describe('governance type, e.g. fire_lane_parking; also the last topic level'),
  camera: z.object({ id: z.string(), name: z.string().optional() }).strict(),
  zone: z.string(),
  rule: z.object({ id: z.string(), kind: z.enum(['presence', 'dwell']) }).strict(),
  startedAt: z.iso.datetime().describe('when the rule began to hold (first frame of the presence or dwell)'),
  detectedAt: z.iso.datetime().describe('the frame on which the rule fired'),
  dwellSeconds: z.number().min(0),
  objects: z.array(z.object({
    class: z.string(),
    score: z.number().min(0).max(1),
    box: normalizedBox,
    trackId: z.number().int().nonnegative(),
  }).strict()).min(1),
  location: z.object({
    lat: z.number().min(-90).max(90).optional(),
    lon: z.number().min(-180).max(180).optional(),
    address: z.string().optional(),
    grid: z.string().optional().describe('grid cell id the central platform dispatches by'),
  }).strict(),
  model: z.object({ name: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/) }).strict(),
  evidence: z.object({ annotated: evidenceImage }).strict(),
  agentVersion: z.string(),
}).strict();

export type EventPayload = z.infer<typeof eventPayloadSchema>;

/** JSON Schema for docs/event.schema.json (a test keeps the file in step with this schema). */
export function eventJsonSchema(): object {
  return z.toJSONSchema(eventPayloadSchema, { target: 'draft-2020-12' });
}
