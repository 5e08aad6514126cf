export { Outbox, OutboxError } from './outbox.js';
export type { NewEvent, OutboxRow, OutboxState, OutboxStats, Payload } from './outbox.js';
