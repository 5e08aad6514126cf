export { Outbox, OutboxError, GATEWAY_STREAM, priorities } from './outbox.js';
export type { AckClaim, Delivery, DropCount, DropReason, MaintainResult, NewEvent, OutboxOptions, OutboxRow, OutboxState, OutboxStats, OutgoingRow, Payload, Priority, Watermark } from './outbox.js';
export { ALERT_SCHEMA_ID, alertKinds, alertPayloadSchema } from './alert.js';
export type { AlertKind, AlertPayload } from './alert.js';
