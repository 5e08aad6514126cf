import { z } from 'zod';
import { healthPayloadSchema, HEALTH_SCHEMA_ID } from './health-payload.js';
import { ALERT_SCHEMA_ID, alertPayloadSchema } from '../outbox/index.js';
import { TASK_SCHEMA_ID, TASK_STATE_SCHEMA_ID, taskSchema, taskStatePayloadSchema } from '../tasks/index.js';
import { ACK_SCHEMA_ID, ackPayloadSchema, availabilityPayloadSchema, evidencePropertiesSchema } from './contract.js';
import { requestPayloadSchema, responsePayloadSchema } from './requests-contract.js';

/**
 * The JSON Schemas in docs/schemas/ besides event.schema.json (rendered from src/agent/event.ts), each generated
 * from the zod schema the code uses; test/contract.test.ts fails while a file is stale and rewrites them with
 * `npx tap --snapshot test/contract.test.ts`.
 */
const sources: Record<string, { schema: z.ZodType; title: string; description: string }> = {
  'availability.schema.json': {
    schema: availabilityPayloadSchema,
    title: 'edgepatrol availability message',
    description:
      'Payload of {prefix}/{gatewayId}/availability (QoS 1, retained; the last will sets offline). Generated from src/uplink/contract.ts.',
  },
  'health.schema.json': {
    schema: healthPayloadSchema,
    title: 'edgepatrol health message',
    description: `Payload of {prefix}/{gatewayId}/health (QoS 0, retained), schema ${HEALTH_SCHEMA_ID}. Generated from src/health/payload.ts.`,
  },
  'alert.schema.json': {
    schema: alertPayloadSchema,
    title: 'edgepatrol alert message',
    description: `Payload of {prefix}/{gatewayId}/alert/{kind} (QoS 1), schema ${ALERT_SCHEMA_ID}. Generated from src/outbox/alert.ts.`,
  },
  'ack.schema.json': {
    schema: ackPayloadSchema,
    title: 'edgepatrol service ack',
    description: `Payload the task service publishes on {prefix}/{gatewayId}/ack (QoS 1), schema ${ACK_SCHEMA_ID}. Generated from src/uplink/contract.ts.`,
  },
  'task.schema.json': {
    schema: taskSchema,
    title: 'edgepatrol task',
    description: `Payload the task service publishes on {prefix}/{gatewayId}/task/{taskId} (QoS 1), schema ${TASK_SCHEMA_ID}. Generated from src/tasks/schema.ts.`,
  },
  'task-state.schema.json': {
    schema: taskStatePayloadSchema,
    title: 'edgepatrol task state',
    description: `Payload of {prefix}/{gatewayId}/task/{taskId}/state (QoS 1, through the outbox), schema ${TASK_STATE_SCHEMA_ID}. Generated from src/tasks/schema.ts.`,
  },
  'evidence-properties.schema.json': {
    schema: evidencePropertiesSchema,
    title: 'edgepatrol evidence user properties',
    description:
      'MQTT 5 user properties of each message on {prefix}/{gatewayId}/evidence/{messageId}; the payload is the JPEG or one part of it, ' +
      'content type image/jpeg. Generated from src/uplink/contract.ts.',
  },
  'request.schema.json': {
    schema: requestPayloadSchema,
    title: 'edgepatrol request',
    description:
      'Payload sent down on {prefix}/{gatewayId}/request/{verb} (QoS 1): {} or {"transaction"} for config/get, camera/list, ' +
      'outbox/stats and model/list; {"camera", "transaction"?} for camera/snapshot. Unknown fields are refused. Generated from src/uplink/requests-contract.ts.',
  },
  'response.schema.json': {
    schema: responsePayloadSchema,
    title: 'edgepatrol response',
    description:
      "Payload of the answer on {prefix}/{gatewayId}/response/{verb}, or on the request's Response Topic when it is under " +
      '{prefix}/{gatewayId}/response/ (QoS 1, not retained, not stored: answers reach whoever is online). Generated from src/uplink/requests-contract.ts.',
  },
};

export function contractSchemaFiles(): Record<string, string> {
  const files: Record<string, string> = {};
  for (const [name, { schema, title, description }] of Object.entries(sources)) {
    const json = {
      ...z.toJSONSchema(schema, { target: 'draft-2020-12' }),
      $id: `https://edgepatrol.dev/schemas/${name}`,
      title,
      description,
    };
    files[name] = `${JSON.stringify(json, null, 2)}\n`;
  }
  return files;
}
