export { Outbox, OutboxError, GATEWAY_STREAM, priorities } from './outbox.js';
export { ALERT_SCHEMA_ID, alertKinds, alertPayloadSchema } from './alert.js';
