import { z } from 'zod';
import { RULE_KINDS } from '../config/presets.js';
import { END_REASONS } from '../rules/hit.js';

/**
 * The event payload published on `{prefix}/{gatewayId}/event/{type}`: the product's API for central subscribers.
 * One schema is the TypeScript type, the runtime check in tests and docs/schemas/event.schema.json.
 */
export const EVENT_SCHEMA_ID = 'edgepatrol.event/1';

const normalizedBox = z
  .tuple([z.number().min(0).max(1), z.number().min(0).max(1), z.number().min(0).max(1), z.number().min(0).max(1)])
  .describe('x1, y1, x2, y2 as fractions of the frame width and height');

const evidenceImage = z
  .object({
    file: z.string().describe('path of the JPEG relative to the gateway data folder'),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    bytes: z.number().int().positive(),
    width: z.number().int().positive(),
    height: z.number().int().positive(),
    contentType: z.literal('image/jpeg'),
  })
  .strict();

export const EVENT_STATES = ['started', 'updated', 'ended', 'instant'] as const;

export const eventPayloadSchema = z
  .object({
    schema: z.literal(EVENT_SCHEMA_ID),
    id: z.uuid({ version: 'v7' }).describe('stable id of the violation (UUIDv7): its started, updated and ended messages all carry it'),
    messageId: z
      .uuid({ version: 'v7' })
      .describe(
        'id of this one message (UUIDv7): its evidence topic level {prefix}/{gatewayId}/evidence/{messageId} and what a service ack names',
      ),
    state: z
      .enum(EVENT_STATES)
      .describe(
        'started: the rule began to hold; updated: it still holds (at most every updateMinutes, fresh evidence); ' +
          'ended: it stopped holding (endedAt); instant: a one-moment violation such as a line crossing, with no update or end',
      ),
    seq: z.number().int().positive().describe('per-gateway sequence number of this message, increasing, never reused'),
    gatewayId: z.string(),
    type: z
      .string()
      .regex(/^[a-z][a-z0-9_]*$/)
      .describe('governance type, e.g. fire_lane_parking; also the last topic level'),
    preset: z.string().optional().describe('the preset the rule was built from, when it was'),
    view: z
      .string()
      .optional()
      .describe("the PTZ preset (its id in the camera's config) the camera was looking from; absent for the camera's own view"),
    camera: z.object({ id: z.string(), name: z.string().optional() }).strict(),
    zone: z.string(),
    rule: z.object({ id: z.string(), kind: z.enum(RULE_KINDS) }).strict(),
    startedAt: z.iso.datetime().describe('when the rule began to hold (e.g. the vehicle stopped, the object entered)'),
    detectedAt: z.iso.datetime().describe('the frame this message is about'),
    endedAt: z.iso.datetime().optional().describe('ended only: the last frame on which the rule still held'),
    endReason: z
      .enum(END_REASONS)
      .optional()
      .describe(
        'ended only: cleared (the rule stopped holding for endSeconds), schedule (its window closed), ' +
          'agent_stopped (the agent stopped cleanly while the rule held; after the restart a new event starts once the rule holds again for its full time), ' +
          'view_changed (the camera turned to another view, e.g. a PTZ preset, whose zones are not the ones the violation was in), ' +
          "camera_paused (the camera's rules were paused without a new view), " +
          "config_changed (a reload changed the camera's settings or removed it, and its rules restarted); the last four mean no longer watched, not cleared",
      ),
    dwellSeconds: z.number().min(0).describe('how long the violation has lasted: (endedAt or detectedAt) - startedAt'),
    objects: z
      .array(
        z
          .object({
            class: z.string(),
            score: z.number().min(0).max(1),
            box: normalizedBox,
            trackId: z.number().int().nonnegative(),
          })
          .strict(),
      )
      .describe(
        "the objects that make the rule hold, each as the detector found it in this message's own frame (the evidence shows these boxes); " +
          'ended: those of the last frame it held that are still detected now; empty for scene_change',
      ),
    unseen: z
      .array(
        z
          .object({
            class: z.string(),
            trackId: z.number().int().nonnegative(),
            lastSeenAt: z.iso.datetime().describe('the last frame the detector found it in'),
            lastScore: z.number().min(0).max(1),
            lastBox: normalizedBox.describe(
              'x1, y1, x2, y2 as fractions of the frame, in the frame at lastSeenAt: where it was, not where it is',
            ),
          })
          .strict(),
      )
      .optional()
      .describe(
        "objects of the violation the detector did not find in this message's frame: hidden (the rule keeps an " +
          'occluded object for 5 s), missed, or gone (ended). Not boxed in the evidence, which names them in a caption. Absent when there are none',
      ),
    counts: z
      .object({ forward: z.number().int().min(0), backward: z.number().int().min(0) })
      .strict()
      .optional()
      .describe("line_cross: crossings per direction since the agent started, the camera's view last changed or its rules last paused"),
    change: z
      .object({ fraction: z.number().min(0).max(1), threshold: z.number().min(0).max(1) })
      .strict()
      .optional()
      .describe('scene_change: share of the zone that differs from the reference, and the rule threshold'),
    location: z
      .object({
        lat: z.number().min(-90).max(90).optional(),
        lon: z.number().min(-180).max(180).optional(),
        address: z.string().optional(),
        grid: z.string().optional().describe('grid cell id the central platform dispatches by'),
      })
      .strict(),
    model: z.object({ name: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/) }).strict(),
    evidence: z
      .object({
        annotated: evidenceImage.describe(
          'the frame with zone, boxes, labels, camera name and local time; for scene_change the reference beside the current view',
        ),
        clean: evidenceImage.describe('the same frame untouched'),
        reference: evidenceImage.optional().describe('scene_change: the reference image the zone is compared with'),
      })
      .strict()
      .describe('on ended messages, the frame at the end: the scene as it was left'),
    agentVersion: z.string(),
  })
  .strict();

export type EventPayload = z.infer<typeof eventPayloadSchema>;
export type EvidenceImage = z.infer<typeof evidenceImage>;

/** JSON Schema of the event payload; docs/schemas/event.schema.json holds its rendering (test/event.test.ts keeps it in step). */
export function eventJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(eventPayloadSchema, { target: 'draft-2020-12' }),
    $id: 'https://edgepatrol.dev/schemas/event.schema.json',
    title: 'edgepatrol event message',
    description: `Payload of {prefix}/{gatewayId}/event/{type}, schema ${EVENT_SCHEMA_ID}. Generated from src/agent/event.ts; see docs/rules.md.`,
  };
}

/** The exact text of docs/schemas/event.schema.json. */
export function renderEventJsonSchema(): string {
  return `${JSON.stringify(eventJsonSchema(), null, 2)}\n`;
}
