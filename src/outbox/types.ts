/**
 * The outbox's public shapes: what a caller stores (NewEvent), what the uplink reads back (OutboxRow,
 * OutgoingRow), the delivery states and drop reasons, the options and the figures it reports. Types and
 * constants only, so every part of the outbox and every caller can import them without pulling in SQLite.
 */
import type { Logger } from 'pino';

export type Priority = 'high' | 'normal' | 'low';
/** Eviction order: low goes first. */
export const priorities: readonly Priority[] = ['low', 'normal', 'high'];
export const rank: Record<Priority, number> = { low: 0, normal: 1, high: 2 };

/**
 * pending: committed, not yet handed to MQTT on any connection; sent: handed to MQTT, no PUBACK yet;
 * acked: the broker's PUBACK arrived; confirmed: the task service's own ack arrived (delivery: service).
 */
export type OutboxState = 'pending' | 'sent' | 'acked' | 'confirmed';
/** broker: a row is delivered at its PUBACK. service: only at the task service's ack on {prefix}/{gw}/ack. */
export type Delivery = 'broker' | 'service';
/**
 * full: the byte cap; ttl: older than its priority's time-to-live; disk_full: SQLite or the file system said
 * ENOSPC; missing: the evidence file was gone when it was to be published.
 */
export type DropReason = 'full' | 'ttl' | 'disk_full' | 'disk_floor' | 'missing';

/** One stored event, as the uplink reads it. Times are ms since the Unix epoch. */
export interface OutboxRow {
  seq: number;
  id: string;
  cameraId: string;
  type: string;
  topic: string;
  /** JSON text, published as is. */
  payload: string;
  priority: Priority;
  /** UTF-8 bytes of payload. */
  bytes: number;
  /** Relative to the outbox file's folder (the gateway data folder), or absolute. */
  evidencePath: string | null;
  evidenceSha256: string | null;
  evidenceBytes: number;
  /** null: the event has no evidence; dropped: its evidence was evicted (the event still goes out). */
  evidenceState: 'kept' | 'dropped' | null;
  createdAt: number;
  state: OutboxState;
  attempts: number;
  ackedAt: number | null;
  confirmedAt: number | null;
}

export type Payload = object | string;

export interface NewEvent {
  /** UUIDv7 (or another unique, time-ordered id); duplicates are refused. */
  id: string;
  cameraId: string;
  type: string;
  topic: string;
  /** The event JSON: an object, or a string that already is JSON. Omit it to build it from the seq (see add). */
  payload?: Payload;
  /** Default normal. Decides what the byte cap evicts first and which time-to-live applies. */
  priority?: Priority;
  /** A file already written and fsynced; relative paths count from the outbox file's folder. */
  evidencePath?: string;
  evidenceSha256?: string;
  /** Size of the evidence file; read from the file when omitted. */
  evidenceBytes?: number;
  /**
   * The event's evidence image could not be kept (the recorder met a full disk): the row is stored with its
   * evidence already dropped, and the drop is counted in the same transaction. Not with evidencePath.
   */
  evidenceDropped?: { reason: DropReason; bytes: number };
}

export interface DropCount {
  what: 'event' | 'evidence';
  reason: DropReason;
  priority: Priority;
  count: number;
  bytes: number;
}

export interface OutboxStats {
  /** Rows not yet handed to MQTT. */
  pending: number;
  /** Rows handed to MQTT, PUBACK outstanding. */
  sent: number;
  acked: number;
  confirmed: number;
  /** created_at of the oldest row not yet delivered (see Delivery), null when there is none. */
  oldestPendingTs: number | null;
  /** The highest seq ever assigned (0 for a new outbox); survives eviction of rows. */
  lastSeq: number;
  /** Bytes held: payloads plus kept evidence files. */
  bytes: number;
  maxBytes: number | null;
  /** Everything ever dropped, by what (event rows, evidence images). */
  dropped: { events: number; evidence: number };
}

export interface OutboxOptions {
  log?: Logger;
  /** Cap on payload + evidence bytes; when an add would exceed it, eviction runs (see docs/delivery.md). */
  maxBytes?: number;
  /** Time-to-live of an undelivered row per priority, ms; absent: kept until delivered or evicted. */
  ttlMs?: Partial<Record<Priority, number>>;
  delivery?: Delivery;
  /** delivery: service — an acked row not confirmed within this long is sent again (default 60 s). */
  confirmTimeoutMs?: number;
  /** Where alert events (drops, a replaced corrupt file) are published; absent: no alert rows are written. */
  alerts?: { prefix: string; gatewayId: string; intervalMs?: number };
  /** A file that is not a database or fails SQLite's quick_check: refuse to start (default) or move it aside and start afresh. */
  onCorrupt?: 'refuse' | 'move-aside';
  /**
   * inline (default, SQLite's own): the committing thread checkpoints the WAL every 1,000 pages, inside that
   * commit. background: a worker thread checkpoints every 200 ms, so the main thread mostly does not wait for a
   * checkpoint's writes and fsyncs (the agent's choice: bench/outbox.ts prints the event-loop delay of both);
   * the inline checkpoint stays as a backstop at 16 MiB of WAL. Not the default because every open would start
   * a thread, which short-lived tools and tests do not need. Durability is the same either way: a commit is
   * durable once its WAL frames are synced.
   */
  checkpoint?: 'background' | 'inline';
  /** Clock, for tests. */
  now?: () => number;
}

/**
 * Every row with seq <= upTo that is still stored as pending or sent is acked (delivery: broker). `epoch`
 * changes whenever rows go back to pending, so a claim made against an older read is refused.
 */
export interface Watermark {
  upTo: number;
  epoch: number;
}

/** The uplink's claim to recordDelivery: every unacknowledged row in (since.upTo, upTo] got its PUBACK. */
export interface AckClaim {
  since: Watermark;
  upTo: number;
}

export interface MaintainResult {
  expired: number;
  requeued: number;
  alerts: number;
}

/** What the uplink needs of a row to publish it: fewer columns to read per row on the drain's hot path. */
export type OutgoingRow = Pick<
  OutboxRow,
  'seq' | 'id' | 'topic' | 'payload' | 'bytes' | 'evidencePath' | 'evidenceSha256' | 'evidenceState' | 'attempts'
>;

/** Camera id of rows the outbox writes itself (alerts): they keep their own order, apart from every camera's. */
export const GATEWAY_STREAM = '_gateway';
