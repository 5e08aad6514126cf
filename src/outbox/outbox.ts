import { renameSync, statSync, unlinkSync, existsSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { v7 as uuidv7 } from 'uuid';
import { gatewayTopics } from '../common/topics.js';
import { migrations } from './migrations.js';
import { ALERT_SCHEMA_ID, type AlertKind, type AlertPayload } from './alert.js';
import type { CheckpointerInit } from './checkpointer.js';

export type Priority = 'high' | 'normal' | 'low';
/** Eviction order: low goes first. */
export const priorities: readonly Priority[] = ['low', 'normal', 'high'];
const rank: Record<Priority, number> = { low: 0, normal: 1, high: 2 };

/**
 * pending: committed, not yet handed to MQTT on any connection; sent: handed to MQTT, no PUBACK yet;
 * acked: the broker's PUBACK arrived; confirmed: the task service's own ack arrived (delivery: service).
 */
export type OutboxState = 'pending' | 'sent' | 'acked' | 'confirmed';
/** broker: a row is delivered at its PUBACK. service: only at the task service's ack on {prefix}/{gw}/ack. */
export type Delivery = 'broker' | 'service';
/** full: the byte cap; ttl: older than its priority's time-to-live; disk_full: SQLite or the file system said ENOSPC; missing: the evidence file was gone when it was to be published. */
export type DropReason = 'full' | 'ttl' | 'disk_full' | 'missing';

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

/** SQLite's default: the committing connection checkpoints once the WAL holds this many pages. */
const INLINE_CHECKPOINT_PAGES = 1000;
/**
 * With the background checkpointer, the inline checkpoint still runs at this size: under a steady stream of
 * commits the worker never finds a quiet moment for the WAL to start over from its beginning, and the inline
 * checkpoint, finding most frames already copied by the worker, is what lets it (16 MiB of WAL at most).
 */
const BACKSTOP_CHECKPOINT_PAGES = 4_000;
const CHECKPOINT_INTERVAL_MS = 200;

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

/** An outbox that cannot be opened or used; `file` names the SQLite file so a technician can find it. */
export class OutboxError extends Error {
  override name = 'OutboxError';
  constructor(message: string, readonly file: string, options?: { cause?: unknown; code?: 'duplicate' | 'full' | 'corrupt' }) {
    super(message, options);
    this.code = options?.code;
  }
  readonly code: 'duplicate' | 'full' | 'corrupt' | undefined;
}

const rowColumns = `seq, id, camera_id AS cameraId, type, topic, payload, priority, bytes, evidence_path AS evidencePath,
  evidence_sha256 AS evidenceSha256, evidence_bytes AS evidenceBytes, evidence_state AS evidenceState,
  created_at AS createdAt, state, attempts, acked_at AS ackedAt, confirmed_at AS confirmedAt`;

/** What the uplink needs of a row to publish it: fewer columns to read per row on the drain's hot path. */
export type OutgoingRow = Pick<OutboxRow, 'seq' | 'id' | 'topic' | 'payload' | 'bytes' | 'evidencePath' | 'evidenceSha256' | 'evidenceState' | 'attempts'>;

/** The columns of an outgoing row, in the order of `OutgoingColumns`. */
const outgoingColumns = 'seq, id, topic, payload, bytes, evidence_path, evidence_sha256, evidence_state, attempts';
type OutgoingColumns = [number, string, string, string, number, string | null, string | null, OutgoingRow['evidenceState'], number];

/** The acknowledged-up-to watermark (migration 3): the highest seq of the acks table, 0 when it is empty. */
const W = '(SELECT coalesce(max(up_to), 0) FROM acks)';

/** Camera id of rows the outbox writes itself (alerts): they keep their own order, apart from every camera's. */
export const GATEWAY_STREAM = '_gateway';

function sqliteCode(err: unknown): string | undefined {
  return err instanceof Database.SqliteError ? err.code : undefined;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function toText(payload: Payload): string {
  return typeof payload === 'string' ? payload : JSON.stringify(payload);
}

/** Thrown inside the add transaction to roll it back when the event cannot fit. */
class DoesNotFit extends Error {
  index = 0;
}

interface Victim { seq: number; priority: Priority; bytes: number; evidencePath: string | null; evidenceState: string | null; evidenceBytes: number }

/**
 * The durable queue between event creation and MQTT. Durability: WAL journal with synchronous=FULL, so a
 * transaction is fsynced to the WAL before it commits — an event `add` returned for survives a process
 * crash and a power loss (given a disk that honours fsync). Synchronous by design: better-sqlite3 calls take
 * microseconds to a few ms and the agent has one writer.
 *
 * The outbox owns the evidence files its rows point to from the moment they are added: it deletes them when
 * it evicts them or prunes delivered rows.
 */
export class Outbox {
  readonly file: string;
  readonly delivery: Delivery;
  private readonly db: Database.Database;
  private readonly log: Logger | undefined;
  private readonly folder: string;
  private readonly maxBytes: number;
  private readonly opts: OutboxOptions;
  private readonly now: () => number;
  private readonly st: Record<string, Database.Statement>;
  /** Evidence files of committed deletions; unlinked after the commit, so a rolled-back eviction keeps its files. */
  private unlinkAfterCommit: string[] = [];
  private lastAlertAt = -Infinity;
  private checkpointer: Worker | undefined;

  private constructor(db: Database.Database, file: string, opts: OutboxOptions) {
    this.db = db;
    this.file = file;
    this.opts = opts;
    this.log = opts.log;
    this.folder = dirname(file);
    this.delivery = opts.delivery ?? 'broker';
    this.maxBytes = opts.maxBytes ?? Infinity;
    this.now = opts.now ?? Date.now;
    const broker = this.delivery === 'broker';
    // Rows at or below the watermark are acked (docs/delivery.md): with delivery: broker they are delivered, so
    // every undelivered row lies above it. With service, the watermark stays at 0 (see lowerWatermark).
    const delivered = broker ? `state IN ('acked', 'confirmed')` : `state = 'confirmed'`;
    const undelivered = broker ? `NOT (${delivered}) AND seq > ${W}` : `NOT (${delivered})`;
    const victim = 'seq, priority, bytes, evidence_path AS evidencePath, evidence_state AS evidenceState, evidence_bytes AS evidenceBytes';
    const p = (sql: string) => db.prepare(sql);
    this.st = {
      insert: p(`INSERT INTO event_rows (id, camera_id, type, topic, payload, bytes, priority, evidence_path, evidence_sha256,
        evidence_bytes, evidence_state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      setPayload: p('UPDATE event_rows SET payload = ?, bytes = ? WHERE seq = ?'),
      // Stored pending or sent above the watermark: exactly the unacknowledged rows, read through events_unsent.
      unsent: p(`SELECT ${rowColumns} FROM event_rows WHERE state IN ('pending', 'sent') AND seq > max(?, ${W}) ORDER BY seq LIMIT ?`),
      outgoing: p(`SELECT ${outgoingColumns} FROM event_rows WHERE state IN ('pending', 'sent') AND seq > max(?, ${W}) ORDER BY seq LIMIT ?`).raw(true),
      ack: p(`UPDATE event_rows SET state = 'acked', acked_at = ? WHERE seq = ? AND state IN ('pending', 'sent') AND seq > ${W}`),
      confirm: p(`UPDATE event_rows SET state = 'confirmed', confirmed_at = ?,
        acked_at = coalesce(acked_at, (SELECT at FROM acks WHERE up_to >= event_rows.seq ORDER BY up_to LIMIT 1), ?) WHERE id = ? AND state != 'confirmed'`),
      sent: p(`UPDATE event_rows SET attempts = attempts + ?, state = CASE WHEN state = 'pending' THEN 'sent' ELSE state END WHERE seq = ?`),
      sentAcked: p(`UPDATE event_rows SET attempts = attempts + ?, state = 'acked', acked_at = ? WHERE seq = ? AND state IN ('pending', 'sent')`),
      // A row the watermark acked: its hand-overs are written only when there was more than the one the view implies.
      attempts: p('UPDATE event_rows SET attempts = attempts + ? WHERE seq = ? AND attempts + ? > 1'),
      watermark: p(`SELECT ${W} AS upTo, ack_epoch AS epoch FROM usage WHERE id = 1`),
      advance: p('INSERT INTO acks (up_to, at) VALUES (?, ?)'),
      ackedCount: p('SELECT acked FROM usage WHERE id = 1'),
      usage: p('SELECT bytes FROM usage WHERE id = 1'),
      coveredVictims: p(`SELECT ${victim} FROM event_rows WHERE seq <= ${W} AND seq != ? ORDER BY seq LIMIT 64`),
      deliveredVictims: p(`SELECT ${victim} FROM event_rows WHERE ${delivered} AND seq > ${W} AND seq != ? ORDER BY seq LIMIT 64`),
      evidenceOf: p(`SELECT ${victim} FROM event_rows WHERE priority = ? AND evidence_state = 'kept' AND ${undelivered} AND seq != ? ORDER BY seq LIMIT 64`),
      eventsOf: p(`SELECT ${victim} FROM event_rows WHERE priority = ? AND ${undelivered} AND seq != ? ORDER BY seq LIMIT 64`),
      expiredOf: p(`SELECT ${victim} FROM event_rows WHERE priority = ? AND ${undelivered} AND created_at < ? ORDER BY seq LIMIT 256`),
      dropEvidence: p(`UPDATE event_rows SET evidence_state = 'dropped' WHERE seq = ?`),
      deleteRow: p('DELETE FROM event_rows WHERE seq = ?'),
      countDrop: p(`INSERT INTO drops (what, reason, priority, count, bytes) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (what, reason, priority) DO UPDATE SET count = count + excluded.count, bytes = bytes + excluded.bytes`),
      unreported: p(`SELECT what, reason, priority, count - reported AS count, bytes FROM drops WHERE count > reported`),
      markReported: p('UPDATE drops SET reported = count'),
      drops: p('SELECT what, reason, priority, count, bytes FROM drops ORDER BY what, reason, priority'),
      requeue: p(`UPDATE event_rows SET state = 'pending' WHERE state = 'acked' AND acked_at < ?`),
      bumpEpoch: p('UPDATE usage SET ack_epoch = ack_epoch + 1 WHERE id = 1'),
      // Counters kept by triggers (migration 3): no scan of the table, whatever its size.
      stats: p(`SELECT pending, sent, acked, confirmed, bytes,
        coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'event_rows'), 0) AS lastSeq,
        coalesce((SELECT sum(count) FROM drops WHERE what = 'event'), 0) AS droppedEvents,
        coalesce((SELECT sum(count) FROM drops WHERE what = 'evidence'), 0) AS droppedEvidence
        FROM usage WHERE id = 1`),
      // The oldest undelivered row is the first unacknowledged one in seq order (rows are created in seq order);
      // with service, acked rows await their confirmation too (few: each is confirmed or re-queued within the timeout).
      oldestUnsent: p(`SELECT created_at AS at FROM event_rows WHERE state IN ('pending', 'sent') AND seq > ${W} ORDER BY seq LIMIT 1`),
      oldestUnconfirmed: p(`SELECT min(created_at) AS at FROM event_rows WHERE state = 'acked'`),
      byId: p(`SELECT ${rowColumns} FROM events WHERE id = ?`),
      bySeq: p(`SELECT ${rowColumns} FROM events WHERE seq = ?`),
      list: p(`SELECT ${rowColumns} FROM events WHERE seq > ? AND created_at >= ? AND (? IS NULL OR state = ?) ORDER BY seq LIMIT ?`),
      firstSince: p('SELECT min(seq) AS seq FROM event_rows WHERE created_at >= ?'),
      replayCount: p(`SELECT count(*) AS n FROM events WHERE created_at >= ? AND state != 'pending'`),
      replay: p(`UPDATE event_rows SET state = 'pending' WHERE created_at >= ? AND state != 'pending'`),
      // Lowering the watermark: its rows above the new one get their state (and the advance's time) written out first.
      keepWatermark: p('SELECT coalesce(max(up_to), 0) AS upTo FROM acks WHERE up_to <= ?'),
      materialise: p(`UPDATE event_rows SET state = 'acked',
        acked_at = coalesce(acked_at, (SELECT at FROM acks WHERE up_to >= event_rows.seq ORDER BY up_to LIMIT 1))
        WHERE state IN ('pending', 'sent') AND seq > ? AND seq <= ${W}`),
      dropAcks: p('DELETE FROM acks WHERE up_to > ?'),
      // Advances that cover no row any more; the newest stays, it is the watermark.
      pruneAcks: p(`DELETE FROM acks WHERE up_to < coalesce((SELECT min(seq) FROM event_rows), 9007199254740991) AND up_to < ${W}`),
      spaceVictims: p(`SELECT ${victim}, (${broker ? `seq <= ${W} OR ` : ''}${delivered}) AS delivered FROM event_rows WHERE evidence_state = 'kept'
        ORDER BY delivered DESC, CASE priority WHEN 'low' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END, seq`),
    };
  }

  /**
   * Opens (creating if absent) and migrates the outbox file. Throws OutboxError naming the file. With
   * onCorrupt 'move-aside', a damaged file is renamed to `<file>.corrupt-<time>` (kept for inspection), a new
   * outbox is made and an `outbox_corrupt` alert event is its first row.
   */
  static open(file: string, opts: OutboxOptions = {}): Outbox {
    try {
      return Outbox.openOnce(file, opts);
    } catch (err) {
      if (!(err instanceof OutboxError) || err.code !== 'corrupt' || opts.onCorrupt !== 'move-aside') throw err;
      const movedTo = `${file}.corrupt-${new Date(opts.now?.() ?? Date.now()).toISOString().replace(/[:.]/g, '-')}`;
      for (const suffix of ['', '-wal', '-shm']) {
        if (existsSync(file + suffix)) renameSync(file + suffix, movedTo + suffix);
      }
      opts.log?.error({ file, movedTo, err: err.message }, `outbox ${file} is damaged; moved it to ${movedTo} and started a new outbox (events in the old file are not sent; keep it for inspection)`);
      const outbox = Outbox.openOnce(file, opts);
      outbox.afterWrite(() => outbox.transaction(() => outbox.addAlert('outbox_corrupt', `outbox ${file} was damaged and replaced by a new one; the old file is kept as ${movedTo}`,
        { movedTo, error: err.message })));
      return outbox;
    }
  }

  private static openOnce(file: string, opts: OutboxOptions): Outbox {
    let db: Database.Database;
    try {
      db = new Database(file);
    } catch (err) {
      throw new OutboxError(`cannot open outbox ${file}: ${message(err)}`, file, { cause: err });
    }
    try {
      const from = prepare(db, file);
      const outbox = new Outbox(db, file, opts);
      // delivery: service needs each acked row's own time (its confirmation times out from it), so rows a
      // broker-mode watermark acked are written out and the watermark stays at 0 while in service mode.
      if (outbox.delivery === 'service') outbox.transaction(() => outbox.lowerWatermark(0));
      if (opts.checkpoint === 'background') outbox.startCheckpointer();
      opts.log?.info({ file, schema: migrations.length, migratedFrom: from, ...outbox.stats() }, 'outbox open');
      return outbox;
    } catch (err) {
      db.close();
      if (err instanceof OutboxError) throw err;
      const code = sqliteCode(err);
      if (code === 'SQLITE_NOTADB' || code?.startsWith('SQLITE_CORRUPT')) {
        throw new OutboxError(`outbox ${file} is not a readable SQLite database (${message(err)}); it was left untouched: ` +
          'move it aside to start a new outbox, or keep it for inspection', file, { cause: err, code: 'corrupt' });
      }
      throw new OutboxError(`cannot open outbox ${file}: ${message(err)}`, file, { cause: err });
    }
  }

  /**
   * Stores an event; it is committed (fsynced) when this returns. With `build`, the payload is made from the
   * seq the outbox assigns, inside the insert transaction, so an event carries its own per-gateway seq.
   * Over the byte cap, older data is evicted first (docs/delivery.md); an event that cannot fit even then is
   * refused with OutboxError code 'full' and counted as dropped.
   */
  add(e: NewEvent & { payload: Payload }): { seq: number };
  add(e: NewEvent, build: (seq: number) => Payload): { seq: number };
  add(e: NewEvent, build?: (seq: number) => Payload): { seq: number } {
    const [result] = this.addMany([e], build ? (_e, seq) => build(seq) : undefined);
    return result!;
  }

  /** Stores several events in one transaction (one fsync): the batched form of add, same rules. */
  addMany(events: readonly NewEvent[], build?: (e: NewEvent, seq: number) => Payload): { seq: number }[] {
    for (const e of events) {
      if (!build && e.payload === undefined) throw new TypeError(`outbox add: event ${e.id} has neither a payload nor a payload builder`);
    }
    const sizes = events.map((e) => (e.evidencePath ? (e.evidenceBytes ?? this.fileSize(e.evidencePath)) : 0));
    const run = () => this.transaction(() => events.map((e, i) => {
      try {
        return this.insertOne(e, sizes[i]!, build);
      } catch (err) {
        if (err instanceof DoesNotFit) err.index = i;
        throw err;
      }
    }));
    let added: { seq: number }[];
    try {
      added = this.afterWrite(run);
    } catch (err) {
      if (err instanceof DoesNotFit) {
        const e = events[err.index]!;
        const priority = e.priority ?? 'normal';
        this.transaction(() => {
          this.st.countDrop!.run('event', 'full', priority, 1, 0);
          if (e.evidencePath) this.st.countDrop!.run('evidence', 'full', priority, 1, sizes[err.index]!);
          else if (e.evidenceDropped) this.st.countDrop!.run('evidence', e.evidenceDropped.reason, priority, 1, e.evidenceDropped.bytes);
        });
        if (e.evidencePath) this.unlink(e.evidencePath);
        this.log?.error({ file: this.file, event: e.id, priority, maxBytes: this.maxBytes }, `outbox ${this.file} is full: ${priority} event ${e.id} dropped (nothing of lower priority left to evict)`);
        this.reportDropsIfDue();
        throw new OutboxError(`outbox ${this.file} is full (max ${this.maxBytes} bytes); event ${e.id} was dropped`, this.file, { code: 'full' });
      }
      if (sqliteCode(err) === 'SQLITE_CONSTRAINT_UNIQUE') {
        const dup = events.find((e) => this.st.byId!.get(e.id)) ?? events[0]!;
        throw new OutboxError(`event id ${dup.id} is already in outbox ${this.file}`, this.file, { cause: err, code: 'duplicate' });
      }
      if (sqliteCode(err) === 'SQLITE_FULL') {
        const freed = this.freeDiskSpace(4 * 1024 * 1024 + sizes.reduce((a, b) => a + b, 0));
        this.log?.error({ file: this.file, freedFiles: freed.files, freedBytes: freed.bytes },
          `disk full under ${this.folder}: dropped ${freed.files} evidence image(s) (${freed.bytes} bytes) to keep events; free space on that disk`);
        added = this.afterWrite(run);
      } else {
        throw err;
      }
    }
    // After the add has committed: an alert that cannot be written must not look like a failed add.
    this.reportDropsIfDue();
    return added;
  }

  private insertOne(e: NewEvent, evidenceBytes: number, build: ((e: NewEvent, seq: number) => Payload) | undefined, capped = true): { seq: number } {
    const priority = e.priority ?? 'normal';
    if (!(priority in rank)) throw new TypeError(`outbox add: event ${e.id} has unknown priority ${String(priority)}`);
    const dropped = e.evidencePath ? undefined : e.evidenceDropped;
    const text = build ? '' : toText(e.payload as Payload);
    const { lastInsertRowid } = this.st.insert!.run(e.id, e.cameraId, e.type, e.topic, text, Buffer.byteLength(text), priority,
      e.evidencePath ?? null, e.evidenceSha256 ?? null, dropped ? dropped.bytes : evidenceBytes, e.evidencePath ? 'kept' : dropped ? 'dropped' : null, this.now());
    const seq = Number(lastInsertRowid);
    if (dropped) this.st.countDrop!.run('evidence', dropped.reason, priority, 1, dropped.bytes);
    if (build) {
      // The payload embeds its own seq, so it is written in the same transaction as the row.
      const built = toText(build(e, seq));
      this.st.setPayload!.run(built, Buffer.byteLength(built), seq);
    }
    if (capped) this.makeRoom(seq, priority);
    return { seq };
  }

  /**
   * Brings the byte total under the cap after inserting row `seq`, in this order: delivered rows (no loss),
   * then evidence of undelivered rows, then the new row's own evidence, then undelivered rows; each step from
   * low priority to the new row's priority, oldest first. Nothing of higher priority than the new row is touched.
   */
  private makeRoom(seq: number, priority: Priority): void {
    if (this.usage() <= this.maxBytes) return;
    const over = () => this.usage() > this.maxBytes;
    const allowed = priorities.filter((p) => rank[p] <= rank[priority]);
    for (let batch = this.deliveredVictims(seq); batch.length && over(); batch = this.deliveredVictims(seq)) {
      for (const v of batch) {
        if (!over()) break;
        this.deleteRow(v, null);
      }
    }
    for (const p of allowed) {
      for (let batch = this.st.evidenceOf!.all(p, seq) as Victim[]; batch.length && over(); batch = this.st.evidenceOf!.all(p, seq) as Victim[]) {
        for (const v of batch) {
          if (!over()) break;
          this.dropEvidence(v, 'full');
        }
      }
    }
    const own = this.st.bySeq!.get(seq) as OutboxRow;
    if (over() && own.evidenceState === 'kept') this.dropEvidence({ ...own }, 'full');
    for (const p of allowed) {
      for (let batch = this.st.eventsOf!.all(p, seq) as Victim[]; batch.length && over(); batch = this.st.eventsOf!.all(p, seq) as Victim[]) {
        for (const v of batch) {
          if (!over()) break;
          this.deleteRow(v, 'full');
        }
      }
    }
    if (over()) throw new DoesNotFit();
  }

  /** Delivered rows other than `seq`, oldest first: those the watermark acked (all older), then those acked or confirmed one by one. */
  private deliveredVictims(seq: number): Victim[] {
    const covered = this.delivery === 'broker' ? this.st.coveredVictims!.all(seq) as Victim[] : [];
    return covered.length ? covered : this.st.deliveredVictims!.all(seq) as Victim[];
  }

  private dropEvidence(v: Victim, reason: DropReason): void {
    this.st.dropEvidence!.run(v.seq);
    this.st.countDrop!.run('evidence', reason, v.priority, 1, v.evidenceBytes);
    if (v.evidencePath) this.unlinkAfterCommit.push(v.evidencePath);
  }

  /** Deletes a row and its evidence file; `reason` null means it was delivered (pruned, not a drop). */
  private deleteRow(v: Victim, reason: DropReason | null): void {
    this.st.deleteRow!.run(v.seq);
    if (reason) {
      this.st.countDrop!.run('event', reason, v.priority, 1, v.bytes);
      if (v.evidenceState === 'kept') this.st.countDrop!.run('evidence', reason, v.priority, 1, v.evidenceBytes);
    }
    if (v.evidencePath && v.evidenceState === 'kept') this.unlinkAfterCommit.push(v.evidencePath);
  }

  /** Up to `limit` rows not yet acknowledged (pending or sent) with seq > afterSeq, in seq order. */
  pending(limit: number, afterSeq = 0): OutboxRow[] {
    return this.st.unsent!.all(afterSeq, limit) as OutboxRow[];
  }

  /** The uplink's read: `pending(limit, afterSeq)` with only the columns a publish needs. */
  outgoing(limit: number, afterSeq = 0): OutgoingRow[] {
    // Rows come as arrays (the statement is raw) and are made objects here: better-sqlite3's own row objects
    // cost 4.6 µs a row against 3.5 µs as arrays, and this read is the drain's largest cost (docs/decisions.md).
    const rows = this.st.outgoing!.all(afterSeq, limit) as OutgoingColumns[];
    return rows.map(([seq, id, topic, payload, bytes, evidencePath, evidenceSha256, evidenceState, attempts]) =>
      ({ seq, id, topic, payload, bytes, evidencePath, evidenceSha256, evidenceState, attempts }));
  }

  /** Records that rows were handed to MQTT (state sent, attempts + 1): a row with attempts > 1 went out more than once. */
  markSent(seqs: readonly number[]): void {
    this.stateTransaction(() => { for (const seq of seqs) this.st.sent!.run(1, seq); });
  }

  /** Marks rows acked (by the broker's PUBACK) in one transaction; returns how many were still unacknowledged. */
  markAcked(...seqs: number[]): number {
    const at = this.now();
    return this.stateTransaction(() => seqs.reduce((n, seq) => n + this.st.ack!.run(at, seq).changes, 0));
  }

  /** The acknowledged-up-to watermark and the epoch it belongs to (see recordDelivery). */
  watermark(): Watermark {
    return this.st.watermark!.get() as Watermark;
  }

  /**
   * markSent and markAcked in one transaction, the uplink's bookkeeping per drain step. `sent` is applied
   * first, so a row may be sent and acked in the same call. An acked row shows at least one attempt, so a
   * caller may leave out of `sent` a row handed over once, for the first time, and acked in the same call.
   *
   * `claim` (delivery: broker only) says: every row above `claim.since.upTo` and up to `claim.upTo` that was
   * unacknowledged is among the PUBACKed ones — the uplink read them in seq order from the watermark on and
   * every one got its PUBACK. The watermark then moves up to `claim.upTo` with one small row written, and those
   * rows are not rewritten. The claim is refused (null returned) if the watermark moved or the epoch changed
   * since `claim.since` was read (a replay or a service-ack timeout set rows back to pending meanwhile); the
   * acked rows are then written one by one, as are those above the claim (acked out of order).
   */
  recordDelivery(sent: readonly number[], acked: readonly number[], claim?: AckClaim): { acked: number; watermark: Watermark | null } {
    const at = this.now();
    return this.stateTransaction(() => {
      const before = (this.st.ackedCount!.get() as { acked: number }).acked;
      const current = this.watermark();
      let accepted: Watermark | null = null;
      if (claim && this.delivery === 'broker' && claim.since.epoch === current.epoch && claim.since.upTo === current.upTo && claim.upTo > current.upTo) {
        this.st.advance!.run(claim.upTo, at);
        accepted = { upTo: claim.upTo, epoch: current.epoch };
      }
      const upTo = accepted?.upTo ?? current.upTo;
      const times = new Map<number, number>();
      for (const seq of sent) times.set(seq, (times.get(seq) ?? 0) + 1);
      for (const seq of acked) {
        const k = times.get(seq) ?? 0;
        times.delete(seq);
        if (seq <= upTo) {
          if (k) this.st.attempts!.run(k, seq, k);
        } else if (!this.st.sentAcked!.run(k, at, seq).changes && k) {
          // Already acked or confirmed: only the attempt counts. At speed most rows are handed over and
          // PUBACKed within one batch: one row write instead of two.
          this.st.sent!.run(k, seq);
        }
      }
      for (const [seq, k] of times) this.st.sent!.run(k, seq);
      return { acked: (this.st.ackedCount!.get() as { acked: number }).acked - before, watermark: accepted };
    });
  }

  /** Marks events confirmed by the task service's ack (by event id); returns how many changed. Unknown ids are ignored. */
  markConfirmed(ids: readonly string[]): number {
    const at = this.now();
    return this.stateTransaction(() => ids.reduce((n, id) => n + this.st.confirm!.run(at, at, id).changes, 0));
  }

  /** The evidence file of a row was gone when it was to be published: the event goes out without it, counted. */
  markEvidenceMissing(seq: number): void {
    const row = this.st.bySeq!.get(seq) as OutboxRow | undefined;
    if (!row || row.evidenceState !== 'kept') return;
    this.transaction(() => {
      this.st.dropEvidence!.run(seq);
      this.st.countDrop!.run('evidence', 'missing', row.priority, 1, row.evidenceBytes);
    });
    this.log?.warn({ file: this.file, seq, event: row.id, evidence: row.evidencePath }, `evidence file ${row.evidencePath} of event ${row.id} is missing; the event is sent without it`);
    this.reportDropsIfDue();
  }

  /**
   * Periodic upkeep, called by the uplink every few seconds: expires rows past their priority's time-to-live,
   * (delivery: service) re-queues acked rows the service has not confirmed in time, and writes a drop alert
   * when drops are unreported and the alert interval has passed.
   */
  maintain(): MaintainResult {
    const now = this.now();
    let expired = 0;
    let requeued = 0;
    this.afterWrite(() => this.transaction(() => {
      for (const p of priorities) {
        const ttl = this.opts.ttlMs?.[p];
        if (ttl === undefined) continue;
        for (let batch = this.st.expiredOf!.all(p, now - ttl) as Victim[]; batch.length; batch = this.st.expiredOf!.all(p, now - ttl) as Victim[]) {
          for (const v of batch) this.deleteRow(v, 'ttl');
          expired += batch.length;
        }
      }
      if (this.delivery === 'service') requeued = this.st.requeue!.run(now - (this.opts.confirmTimeoutMs ?? 60_000)).changes;
      if (requeued) this.st.bumpEpoch!.run();
      this.st.pruneAcks!.run();
    }));
    if (expired) this.log?.warn({ file: this.file, expired }, `outbox: ${expired} undelivered event(s) expired (time-to-live) and were dropped`);
    const alerts = this.reportDropsIfDue() ? 1 : 0;
    return { expired, requeued, alerts };
  }

  /**
   * Deletes evidence files to free at least `bytes` on the disk: delivered rows' first, then undelivered ones
   * from low priority, oldest first (counted as disk_full drops). For the caller that got ENOSPC writing a file.
   */
  freeDiskSpace(bytes: number): { files: number; bytes: number } {
    let files = 0;
    let freed = 0;
    // Files go first: with the disk full, SQLite may not be able to write until some space is back.
    for (const v of this.st.spaceVictims!.all() as (Victim & { delivered: number })[]) {
      if (freed >= bytes) break;
      if (v.evidencePath) this.unlink(v.evidencePath);
      freed += v.evidenceBytes;
      files++;
      try {
        this.transaction(() => {
          this.st.dropEvidence!.run(v.seq);
          if (!v.delivered) this.st.countDrop!.run('evidence', 'disk_full', v.priority, 1, v.evidenceBytes);
        });
      } catch (err) {
        // Still no room to record it: the uplink will find the file gone and count it as missing.
        if (sqliteCode(err) !== 'SQLITE_FULL') throw err;
      }
    }
    return { files, bytes: freed };
  }

  /** Sets rows created at or after `sinceMs` (all rows by default) back to pending, so they are published again. */
  replay(sinceMs = 0): number {
    return this.transaction(() => {
      const first = (this.st.firstSince!.get(sinceMs) as { seq: number | null }).seq;
      if (first === null) return 0;
      const n = (this.st.replayCount!.get(sinceMs) as { n: number }).n;
      this.lowerWatermark(first - 1);
      this.st.replay!.run(sinceMs);
      this.st.bumpEpoch!.run();
      return n;
    });
  }

  /**
   * Inside a transaction: brings the watermark down to at most `seq`. The rows it acked above the new watermark
   * are first stored as acked (with the time of the advance that covered them), so no row changes its state;
   * the epoch changes, so a claim the uplink made against the old watermark is refused.
   */
  private lowerWatermark(seq: number): void {
    const { upTo } = this.watermark();
    if (upTo <= seq) return;
    const keep = (this.st.keepWatermark!.get(seq) as { upTo: number }).upTo;
    this.st.materialise!.run(keep);
    this.st.dropAcks!.run(keep);
    this.st.bumpEpoch!.run();
  }

  get(idOrSeq: string | number): OutboxRow | undefined {
    const seq = typeof idOrSeq === 'number' ? idOrSeq : /^\d+$/.test(idOrSeq) ? Number(idOrSeq) : undefined;
    return (seq === undefined ? this.st.byId!.get(idOrSeq) : this.st.bySeq!.get(seq)) as OutboxRow | undefined;
  }

  /** Rows in seq order, for the CLI. */
  list(opts: { afterSeq?: number; sinceMs?: number; state?: OutboxState; limit?: number } = {}): OutboxRow[] {
    const state = opts.state ?? null;
    return this.st.list!.all(opts.afterSeq ?? 0, opts.sinceMs ?? 0, state, state, opts.limit ?? 100) as OutboxRow[];
  }

  drops(): DropCount[] {
    return this.st.drops!.all() as DropCount[];
  }

  /** Absolute path of an evidence file named by a row. */
  evidenceFile(path: string): string {
    return isAbsolute(path) ? path : join(this.folder, path);
  }

  /** Counts and totals from counters the writing transactions keep (no scan: microseconds at any size). */
  stats(): OutboxStats {
    const s = this.st.stats!.get() as Record<string, number>;
    const unsent = (this.st.oldestUnsent!.get() as { at: number } | undefined)?.at ?? null;
    const unconfirmed = this.delivery === 'service' ? (this.st.oldestUnconfirmed!.get() as { at: number | null }).at : null;
    return {
      pending: s.pending!,
      sent: s.sent!,
      acked: s.acked!,
      confirmed: s.confirmed!,
      oldestPendingTs: unsent === null ? unconfirmed : unconfirmed === null ? unsent : Math.min(unsent, unconfirmed),
      lastSeq: s.lastSeq!,
      bytes: s.bytes!,
      maxBytes: Number.isFinite(this.maxBytes) ? this.maxBytes : null,
      dropped: { events: s.droppedEvents!, evidence: s.droppedEvidence! },
    };
  }

  close(): void {
    if (!this.db.open) return;
    const checkpointer = this.checkpointer;
    this.checkpointer = undefined;
    checkpointer?.postMessage('stop');
    this.db.close();
    this.log?.info({ file: this.file }, 'outbox closed');
  }

  /**
   * Moves WAL checkpoints to a worker thread (docs/decisions.md: they were the largest stall of the drain). If
   * the worker fails, inline checkpoints come back, so the WAL never grows without bound.
   */
  private startCheckpointer(): void {
    const url = new URL(import.meta.url.endsWith('.ts') ? './checkpointer.ts' : './checkpointer.js', import.meta.url);
    const worker = new Worker(url, { workerData: { file: this.file, intervalMs: CHECKPOINT_INTERVAL_MS } satisfies CheckpointerInit });
    // Housekeeping only: it must not keep a process alive that is otherwise done.
    worker.unref();
    this.checkpointer = worker;
    this.db.pragma(`wal_autocheckpoint = ${BACKSTOP_CHECKPOINT_PAGES}`);
    const fallBack = (why: string) => {
      if (this.checkpointer !== worker) return;
      this.checkpointer = undefined;
      if (this.db.open) this.db.pragma(`wal_autocheckpoint = ${INLINE_CHECKPOINT_PAGES}`);
      this.log?.warn({ file: this.file, why }, `outbox ${this.file}: background WAL checkpoints stopped (${why}); checkpointing on the main thread again`);
    };
    worker.on('error', (err) => fallBack(message(err)));
    worker.on('exit', (code) => fallBack(`worker exited with code ${code}`));
  }

  /** Writes an alert row (high priority, its own stream, outside the byte cap), when alerts are configured. */
  private addAlert(kind: AlertKind, text: string, detail: Record<string, unknown>): void {
    const alerts = this.opts.alerts;
    if (!alerts) return;
    const id = uuidv7();
    const at = new Date(this.now()).toISOString();
    this.insertOne({ id, cameraId: GATEWAY_STREAM, type: kind, topic: gatewayTopics(alerts.prefix, alerts.gatewayId).alert(kind), priority: 'high' }, 0,
      (_e, seq): AlertPayload => ({ schema: ALERT_SCHEMA_ID, id, seq, gatewayId: alerts.gatewayId, kind, at, message: text, detail }),
      // Exempt from the cap: an alert is small and rare (one per interval), and evicting for it would create
      // drops that only the next alert could announce.
      false);
  }

  /** One alert per interval summarising drops not yet announced; returns true when it wrote one. */
  private reportDropsIfDue(): boolean {
    if (!this.opts.alerts) return false;
    const now = this.now();
    if (now - this.lastAlertAt < (this.opts.alerts.intervalMs ?? 60_000)) return false;
    let wrote: boolean;
    try {
      wrote = this.afterWrite(() => this.transaction(() => this.writeDropAlert()));
    } catch (err) {
      // The drops stay unreported and go into the next alert; the events that caused them are committed already.
      if (sqliteCode(err) !== 'SQLITE_FULL') throw err;
      this.log?.warn({ file: this.file }, `disk full under ${this.folder}: the outbox_drop alert is postponed until there is room`);
      return false;
    }
    if (wrote) this.lastAlertAt = now;
    return wrote;
  }

  /** Inside a transaction: one alert row for the drops not yet announced; false when there are none. */
  private writeDropAlert(): boolean {
    const fresh = this.st.unreported!.all() as DropCount[];
    if (fresh.length === 0) return false;
    const total = this.stats().dropped;
    const events = fresh.filter((d) => d.what === 'event').reduce((n, d) => n + d.count, 0);
    const evidence = fresh.filter((d) => d.what === 'evidence').reduce((n, d) => n + d.count, 0);
    this.st.markReported!.run();
    this.addAlert('outbox_drop', `outbox dropped ${events} event(s) and ${evidence} evidence image(s) since the last alert`,
      { since: Number.isFinite(this.lastAlertAt) ? new Date(this.lastAlertAt).toISOString() : null,
        dropped: fresh.map(({ what, reason, priority, count }) => ({ what, reason, priority, count })), total });
    return true;
  }

  private usage(): number {
    return (this.st.usage!.get() as { bytes: number }).bytes;
  }

  private transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  /**
   * A delivery-state change (sent, acked, confirmed) committed without its own fsync (synchronous=NORMAL for
   * this transaction only). It survives a crash of the agent (the WAL is in the OS's cache) and becomes durable
   * with the next fsynced commit or checkpoint; a power cut may undo the newest ones, which only means those
   * events are sent again — duplicates, never loss. Adds and evictions stay synchronous=FULL.
   * Measured by bench/outbox.ts: the drain rate is bound by these commits (docs/decisions.md).
   */
  private stateTransaction<T>(fn: () => T): T {
    this.db.pragma('synchronous = NORMAL');
    try {
      return this.transaction(fn);
    } finally {
      this.db.pragma('synchronous = FULL');
    }
  }

  /** Runs a write; evidence files of rows it deleted are removed once it has committed. */
  private afterWrite<T>(fn: () => T): T {
    this.unlinkAfterCommit = [];
    let result: T;
    try {
      result = fn();
    } catch (err) {
      this.unlinkAfterCommit = [];
      throw err;
    }
    const paths = this.unlinkAfterCommit;
    this.unlinkAfterCommit = [];
    for (const path of paths) this.unlink(path);
    return result;
  }

  private unlink(path: string): void {
    try {
      unlinkSync(this.evidenceFile(path));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log?.warn({ file: this.evidenceFile(path), err: message(err) }, 'cannot delete an evidence file');
    }
  }

  private fileSize(path: string): number {
    try {
      return statSync(this.evidenceFile(path)).size;
    } catch (err) {
      throw new OutboxError(`evidence file ${this.evidenceFile(path)} cannot be read: ${message(err)}`, this.file, { cause: err });
    }
  }
}

/** Sets the durability pragmas, checks the file and migrates; returns the schema version the file had. */
function prepare(db: Database.Database, file: string): number {
  // Read before any write: a file that is not a database fails here, before SQLite could touch it.
  const from = db.pragma('user_version', { simple: true }) as number;
  if (from > migrations.length) {
    throw new OutboxError(`outbox ${file} has schema version ${from}, newer than this edgepatrol knows ` +
      `(${migrations.length}); run the newer edgepatrol or move the file aside`, file);
  }
  // quick_check reads every page once (a few ms per MB): damage found now is handled at start, not mid-drain.
  const check = db.pragma('quick_check', { simple: true }) as string;
  if (check !== 'ok') {
    throw new OutboxError(`outbox ${file} failed SQLite's quick_check (${check})`, file, { code: 'corrupt' });
  }
  const mode = db.pragma('journal_mode = WAL', { simple: true }) as string;
  if (mode !== 'wal') {
    throw new OutboxError(`outbox ${file}: SQLite refused WAL mode (journal_mode is ${mode}); put the outbox on a local disk`, file);
  }
  // FULL in WAL mode fsyncs the WAL on every commit: committed events survive power loss, not only a crash
  // (NORMAL would only sync at checkpoints). The cost is one fsync per add/ack transaction.
  db.pragma('synchronous = FULL');
  // Another process reading the file (sqlite3 shell, a diagnostic command) must delay a write, not fail it.
  db.pragma('busy_timeout = 5000');
  for (let v = from; v < migrations.length; v++) {
    const sql = migrations[v] as string;
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
  return from;
}
