export { Outbox } from './outbox.js';
export { OutboxError } from './errors.js';
export { GATEWAY_STREAM, priorities } from './types.js';
export type {
  AckClaim,
  Delivery,
  DropCount,
  DropReason,
  MaintainResult,
  NewEvent,
  OutboxOptions,
  OutboxRow,
  OutboxState,
  OutboxStats,
  OutgoingRow,
  Payload,
  Priority,
  Watermark,
} from './types.js';
export { ALERT_SCHEMA_ID, alertKinds, alertPayloadSchema } from './alert.js';
export type { AlertKind, AlertPayload } from './alert.js';
export { listTasks, TASK_STREAM, TaskInbox } from './tasks.js';
export type { InboxState, StateMessage, TaskRecord, TaskRow } from './tasks.js';
