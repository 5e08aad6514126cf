/**
 * The Outbox facade: opens the SQLite file, owns its handle (and the background checkpointer, when asked for),
 * and composes the parts behind one API: the row store (store.ts, statements.ts), the byte cap (eviction.ts),
 * time-to-live (expiry.ts), delivery states and the watermark (delivery.ts, watermark.ts), drop alerts
 * (alerts.ts) and a full disk (disk.ts). What a failure means for a caller (a refused event, a retry after
 * freeing disk space, a moved-aside file) is decided here.
 */
import Database from 'better-sqlite3';
import { Alerts } from './alerts.js';
import { markAcked, markConfirmed, markSent, recordDelivery, replay, requeueUnconfirmed } from './delivery.js';
import { freeDiskSpace } from './disk.js';
import { insertRow, type PayloadBuilder } from './enqueue.js';
import { message, OutboxError, sqliteCode } from './errors.js';
import { DoesNotFit, dropRefused } from './eviction.js';
import { expire } from './expiry.js';
import { moveAside, prepareFile } from './file.js';
import { migrations } from './migrations.js';
import type { OutgoingColumns } from './statements.js';
import { RowStore } from './store.js';
import { TaskInbox } from './tasks.js';
import type {
  AckClaim,
  Delivery,
  DropCount,
  MaintainResult,
  NewEvent,
  OutboxOptions,
  OutboxRow,
  OutboxState,
  OutboxStats,
  OutgoingRow,
  Payload,
  Watermark,
} from './types.js';
import { BackgroundCheckpointer } from './wal-checkpoints.js';
import { lowerWatermark, readWatermark } from './watermark.js';

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
  /** The task inbox kept in the same file (tasks.ts): a state change and its state message commit together. */
  readonly tasks: TaskInbox;
  private readonly store: RowStore;
  private readonly alerts: Alerts;
  private readonly opts: OutboxOptions;
  private checkpointer: BackgroundCheckpointer | undefined;

  private constructor(db: Database.Database, file: string, opts: OutboxOptions) {
    this.file = file;
    this.opts = opts;
    this.store = new RowStore(db, file, opts);
    this.delivery = this.store.delivery;
    this.alerts = new Alerts(this.store, opts.alerts);
    this.tasks = new TaskInbox(this.store);
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
      const movedTo = moveAside(file, opts.now?.() ?? Date.now());
      opts.log?.error(
        { file, movedTo, err: err.message },
        `outbox ${file} is damaged; moved it to ${movedTo} and started a new outbox (events in the old file are not sent; keep it for inspection)`,
      );
      const outbox = Outbox.openOnce(file, opts);
      const { store } = outbox;
      store.afterWrite(() =>
        store.transaction(() =>
          outbox.alerts.add('outbox_corrupt', `outbox ${file} was damaged and replaced by a new one; the old file is kept as ${movedTo}`, {
            movedTo,
            error: err.message,
          }),
        ),
      );
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
      const from = prepareFile(db, file);
      const outbox = new Outbox(db, file, opts);
      // delivery: service needs each acked row's own time (its confirmation times out from it), so rows a
      // broker-mode watermark acked are written out and the watermark stays at 0 while in service mode.
      if (outbox.delivery === 'service') outbox.store.transaction(() => lowerWatermark(outbox.store, 0));
      if (opts.checkpoint === 'background') outbox.checkpointer = new BackgroundCheckpointer(db, file, opts.log);
      opts.log?.info({ file, schema: migrations.length, migratedFrom: from, ...outbox.stats() }, 'outbox open');
      return outbox;
    } catch (err) {
      db.close();
      if (err instanceof OutboxError) throw err;
      const code = sqliteCode(err);
      if (code === 'SQLITE_NOTADB' || code?.startsWith('SQLITE_CORRUPT')) {
        throw new OutboxError(
          `outbox ${file} is not a readable SQLite database (${message(err)}); it was left untouched: ` +
            'move it aside to start a new outbox, or keep it for inspection',
          file,
          { cause: err, code: 'corrupt' },
        );
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
  addMany(events: readonly NewEvent[], build?: PayloadBuilder): { seq: number }[] {
    for (const e of events) {
      if (!build && e.payload === undefined) throw new TypeError(`outbox add: event ${e.id} has neither a payload nor a payload builder`);
    }
    const { store } = this;
    const sizes = events.map((e) => (e.evidencePath ? (e.evidenceBytes ?? store.fileSize(e.evidencePath)) : 0));
    const run = () =>
      store.transaction(() =>
        events.map((e, i) => {
          try {
            return insertRow(store, e, sizes[i]!, build);
          } catch (err) {
            if (err instanceof DoesNotFit) err.index = i;
            throw err;
          }
        }),
      );
    let added: { seq: number }[];
    try {
      added = store.afterWrite(run);
    } catch (err) {
      if (err instanceof DoesNotFit) {
        const e = events[err.index]!;
        dropRefused(store, e, sizes[err.index]!);
        this.alerts.reportDropsIfDue();
        throw new OutboxError(`outbox ${this.file} is full (max ${store.maxBytes} bytes); event ${e.id} was dropped`, this.file, {
          code: 'full',
        });
      }
      if (sqliteCode(err) === 'SQLITE_CONSTRAINT_UNIQUE') {
        const dup = events.find((e) => store.st.byId.get(e.id)) ?? events[0]!;
        throw new OutboxError(`event id ${dup.id} is already in outbox ${this.file}`, this.file, { cause: err, code: 'duplicate' });
      }
      if (sqliteCode(err) === 'SQLITE_FULL') {
        const freed = this.freeDiskSpace(4 * 1024 * 1024 + sizes.reduce((a, b) => a + b, 0));
        store.log?.error(
          { file: this.file, freedFiles: freed.files, freedBytes: freed.bytes },
          `disk full under ${store.folder}: dropped ${freed.files} evidence image(s) (${freed.bytes} bytes) to keep events; free space on that disk`,
        );
        added = store.afterWrite(run);
      } else {
        throw err;
      }
    }
    // After the add has committed: an alert that cannot be written must not look like a failed add.
    this.alerts.reportDropsIfDue();
    return added;
  }

  /** Up to `limit` rows not yet acknowledged (pending or sent) with seq > afterSeq, in seq order. */
  pending(limit: number, afterSeq = 0): OutboxRow[] {
    return this.store.st.unsent.all(afterSeq, limit) as OutboxRow[];
  }

  /** The uplink's read: `pending(limit, afterSeq)` with only the columns a publish needs. */
  outgoing(limit: number, afterSeq = 0): OutgoingRow[] {
    // Rows come as arrays (the statement is raw) and are made objects here: better-sqlite3's own row objects
    // cost 4.6 µs a row against 3.5 µs as arrays, and this read is the drain's largest SQLite
    // cost (docs/decisions/0019-outbox-drain-watermark.md, 0020).
    const rows = this.store.st.outgoing.all(afterSeq, limit) as OutgoingColumns[];
    return rows.map(([seq, id, topic, payload, bytes, evidencePath, evidenceSha256, evidenceState, attempts]) => ({
      seq,
      id,
      topic,
      payload,
      bytes,
      evidencePath,
      evidenceSha256,
      evidenceState,
      attempts,
    }));
  }

  /** Records that rows were handed to MQTT (state sent, attempts + 1): a row with attempts > 1 went out more than once. */
  markSent(seqs: readonly number[]): void {
    markSent(this.store, seqs);
  }

  /** Marks rows acked (by the broker's PUBACK) in one transaction; returns how many were still unacknowledged. */
  markAcked(...seqs: number[]): number {
    return markAcked(this.store, seqs);
  }

  /** The acknowledged-up-to watermark and the epoch it belongs to (see recordDelivery). */
  watermark(): Watermark {
    return readWatermark(this.store.st);
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
    return recordDelivery(this.store, sent, acked, claim);
  }

  /** Marks events confirmed by the task service's ack (by event id); returns how many changed. Unknown ids are ignored. */
  markConfirmed(ids: readonly string[]): number {
    return markConfirmed(this.store, ids);
  }

  /** The evidence file of a row was gone when it was to be published: the event goes out without it, counted. */
  markEvidenceMissing(seq: number): void {
    const { store } = this;
    const row = store.st.bySeq.get(seq) as OutboxRow | undefined;
    if (row?.evidenceState !== 'kept') return;
    store.transaction(() => {
      store.st.dropEvidence.run(seq);
      store.st.countDrop.run('evidence', 'missing', row.priority, 1, row.evidenceBytes);
    });
    store.log?.warn(
      { file: this.file, seq, event: row.id, evidence: row.evidencePath },
      `evidence file ${row.evidencePath} of event ${row.id} is missing; the event is sent without it`,
    );
    this.alerts.reportDropsIfDue();
  }

  /**
   * Periodic upkeep, called by the uplink every few seconds: expires rows past their priority's time-to-live,
   * (delivery: service) re-queues acked rows the service has not confirmed in time, and writes a drop alert
   * when drops are unreported and the alert interval has passed.
   */
  maintain(): MaintainResult {
    const { store } = this;
    const now = store.now();
    let expired = 0;
    let requeued = 0;
    store.afterWrite(() =>
      store.transaction(() => {
        expired = expire(store, this.opts.ttlMs, now);
        if (this.delivery === 'service') requeued = requeueUnconfirmed(store, now - (this.opts.confirmTimeoutMs ?? 60_000));
        store.st.pruneAcks.run();
      }),
    );
    if (expired)
      store.log?.warn({ file: this.file, expired }, `outbox: ${expired} undelivered event(s) expired (time-to-live) and were dropped`);
    const alerts = this.alerts.reportDropsIfDue() ? 1 : 0;
    return { expired, requeued, alerts };
  }

  /**
   * Deletes evidence files to free at least `bytes` on the disk: delivered rows' first, then undelivered ones
   * from low priority, oldest first (counted as disk_full drops). For the caller that got ENOSPC writing a file.
   */
  freeDiskSpace(bytes: number): { files: number; bytes: number } {
    return freeDiskSpace(this.store, bytes);
  }

  /** Sets rows created at or after `sinceMs` (all rows by default) back to pending, so they are published again. */
  replay(sinceMs = 0): number {
    return replay(this.store, sinceMs);
  }

  get(idOrSeq: string | number): OutboxRow | undefined {
    const seq = typeof idOrSeq === 'number' ? idOrSeq : /^\d+$/.test(idOrSeq) ? Number(idOrSeq) : undefined;
    return (seq === undefined ? this.store.st.byId.get(idOrSeq) : this.store.st.bySeq.get(seq)) as OutboxRow | undefined;
  }

  /** The newest message of the event with this id (the payload's `id`, not a message id), if it is still stored. */
  eventMessage(eventId: string): OutboxRow | undefined {
    return this.store.st.byEventId.get(eventId) as OutboxRow | undefined;
  }

  /** Rows in seq order, for the CLI. */
  list(opts: { afterSeq?: number; sinceMs?: number; state?: OutboxState; limit?: number } = {}): OutboxRow[] {
    const state = opts.state ?? null;
    return this.store.st.list.all(opts.afterSeq ?? 0, opts.sinceMs ?? 0, state, state, opts.limit ?? 100) as OutboxRow[];
  }

  drops(): DropCount[] {
    return this.store.st.drops.all() as DropCount[];
  }

  /** Absolute path of an evidence file named by a row. */
  evidenceFile(path: string): string {
    return this.store.evidenceFile(path);
  }

  /** Counts and totals from counters the writing transactions keep (no scan: microseconds at any size). */
  stats(): OutboxStats {
    const { st, maxBytes } = this.store;
    const s = st.stats.get() as Record<string, number>;
    const unsent = (st.oldestUnsent.get() as { at: number } | undefined)?.at ?? null;
    const unconfirmed = this.delivery === 'service' ? (st.oldestUnconfirmed.get() as { at: number | null }).at : null;
    return {
      pending: s.pending!,
      sent: s.sent!,
      acked: s.acked!,
      confirmed: s.confirmed!,
      oldestPendingTs: unsent === null ? unconfirmed : unconfirmed === null ? unsent : Math.min(unsent, unconfirmed),
      lastSeq: s.lastSeq!,
      bytes: s.bytes!,
      maxBytes: Number.isFinite(maxBytes) ? maxBytes : null,
      dropped: { events: s.droppedEvents!, evidence: s.droppedEvidence! },
    };
  }

  close(): void {
    const { db, log } = this.store;
    if (!db.open) return;
    const checkpointer = this.checkpointer;
    this.checkpointer = undefined;
    checkpointer?.stop();
    db.close();
    log?.info({ file: this.file }, 'outbox closed');
  }
}
