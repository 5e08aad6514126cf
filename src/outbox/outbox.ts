import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { migrations } from './migrations.js';

export type OutboxState = 'pending' | 'acked';

/** One stored event, as the uplink reads it. Times are ms since the Unix epoch. */
export interface OutboxRow {
  seq: number;
  id: string;
  cameraId: string;
  type: string;
  topic: string;
  /** JSON text, published as is. */
  payload: string;
  evidencePath: string | null;
  evidenceSha256: string | null;
  createdAt: number;
  state: OutboxState;
  attempts: number;
  ackedAt: number | null;
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
  evidencePath?: string;
  evidenceSha256?: string;
}

export interface OutboxStats {
  pending: number;
  acked: number;
  /** created_at of the oldest pending event, null when nothing is pending. */
  oldestPendingTs: number | null;
  /** The highest seq ever assigned (0 for a new outbox); survives eviction of rows. */
  lastSeq: number;
}

/** An outbox that cannot be opened or used; `file` names the SQLite file so a technician can find it. */
export class OutboxError extends Error {
  override name = 'OutboxError';
  constructor(message: string, readonly file: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

const rowColumns = `seq, id, camera_id AS cameraId, type, topic, payload, evidence_path AS evidencePath,
  evidence_sha256 AS evidenceSha256, created_at AS createdAt, state, attempts, acked_at AS ackedAt`;

function sqliteCode(err: unknown): string | undefined {
  return err instanceof Database.SqliteError ? err.code : undefined;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function toText(payload: Payload): string {
  return typeof payload === 'string' ? payload : JSON.stringify(payload);
}

/**
 * The durable queue between event creation and MQTT. Durability: WAL journal with synchronous=FULL, so a
 * transaction is fsynced to the WAL before it commits — an event `add` returned for survives a process
 * crash and a power loss (given a disk that honours fsync). Synchronous by design: better-sqlite3 calls take
 * microseconds to a few ms and the agent has one writer.
 */
export class Outbox {
  readonly file: string;
  private readonly db: Database.Database;
  private readonly log: Logger | undefined;
  private readonly insertRow: Database.Statement;
  private readonly setPayload: Database.Statement;
  private readonly selectPending: Database.Statement;
  private readonly ackRow: Database.Statement;
  private readonly attemptRow: Database.Statement;
  private readonly selectStats: Database.Statement;
  private readonly addTx: Database.Transaction<(e: NewEvent, build?: (seq: number) => Payload) => { seq: number }>;
  private readonly ackTx: Database.Transaction<(seqs: readonly number[], at: number) => number>;
  private readonly attemptTx: Database.Transaction<(seqs: readonly number[]) => void>;

  private constructor(db: Database.Database, file: string, log: Logger | undefined) {
    this.db = db;
    this.file = file;
    this.log = log;
    this.insertRow = db.prepare(`INSERT INTO events (id, camera_id, type, topic, payload, evidence_path, evidence_sha256, created_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?)`);
    this.setPayload = db.prepare('UPDATE events SET payload = ? WHERE seq = ?');
    this.selectPending = db.prepare(`SELECT ${rowColumns} FROM events WHERE state = 'pending' AND seq > ? ORDER BY seq LIMIT ?`);
    this.ackRow = db.prepare(`UPDATE events SET state = 'acked', acked_at = ? WHERE seq = ? AND state = 'pending'`);
    this.attemptRow = db.prepare('UPDATE events SET attempts = attempts + 1 WHERE seq = ?');
    this.selectStats = db.prepare(`SELECT
      (SELECT count(*) FROM events WHERE state = 'pending') AS pending,
      (SELECT count(*) FROM events WHERE state = 'acked') AS acked,
      (SELECT created_at FROM events WHERE state = 'pending' ORDER BY seq LIMIT 1) AS oldestPendingTs,
      coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0) AS lastSeq`);

    this.addTx = db.transaction((e: NewEvent, build?: (seq: number) => Payload) => {
      const { lastInsertRowid } = this.insertRow.run(e.id, e.cameraId, e.type, e.topic,
        build ? '' : toText(e.payload as Payload), e.evidencePath ?? null, e.evidenceSha256 ?? null, Date.now());
      const seq = Number(lastInsertRowid);
      // The payload embeds its own seq, so it is written in the same transaction as the row.
      if (build) this.setPayload.run(toText(build(seq)), seq);
      return { seq };
    });
    this.ackTx = db.transaction((seqs: readonly number[], at: number) => {
      let changed = 0;
      for (const seq of seqs) changed += this.ackRow.run(at, seq).changes;
      return changed;
    });
    this.attemptTx = db.transaction((seqs: readonly number[]) => {
      for (const seq of seqs) this.attemptRow.run(seq);
    });
  }

  /** Opens (creating if absent) and migrates the outbox file. Throws OutboxError naming the file. */
  static open(file: string, opts: { log?: Logger } = {}): Outbox {
    let db: Database.Database;
    try {
      db = new Database(file);
    } catch (err) {
      throw new OutboxError(`cannot open outbox ${file}: ${message(err)}`, file, { cause: err });
    }
    try {
      const from = prepare(db, file);
      const outbox = new Outbox(db, file, opts.log);
      opts.log?.info({ file, schema: migrations.length, migratedFrom: from, ...outbox.stats() }, 'outbox open');
      return outbox;
    } catch (err) {
      db.close();
      if (err instanceof OutboxError) throw err;
      if (sqliteCode(err) === 'SQLITE_NOTADB') {
        throw new OutboxError(`outbox ${file} is not a SQLite database (${message(err)}); it was left untouched: ` +
          'move it aside to start a new outbox, or keep it for inspection', file, { cause: err });
      }
      throw new OutboxError(`cannot open outbox ${file}: ${message(err)}`, file, { cause: err });
    }
  }

  /**
   * Stores an event; it is committed (fsynced) when this returns. With `build`, the payload is made from the
   * seq the outbox assigns, inside the insert transaction, so an event carries its own per-gateway seq.
   */
  add(e: NewEvent & { payload: Payload }): { seq: number };
  add(e: NewEvent, build: (seq: number) => Payload): { seq: number };
  add(e: NewEvent, build?: (seq: number) => Payload): { seq: number } {
    if (!build && e.payload === undefined) throw new TypeError(`outbox add: event ${e.id} has neither a payload nor a payload builder`);
    try {
      return this.addTx.immediate(e, build);
    } catch (err) {
      if (sqliteCode(err) === 'SQLITE_CONSTRAINT_UNIQUE') {
        throw new OutboxError(`event id ${e.id} is already in outbox ${this.file}`, this.file, { cause: err });
      }
      throw err;
    }
  }

  /** Up to `limit` pending rows with seq > afterSeq, in seq order. */
  pending(limit: number, afterSeq = 0): OutboxRow[] {
    return this.selectPending.all(afterSeq, limit) as OutboxRow[];
  }

  /** Marks rows acked (by the broker's PUBACK) in one transaction; returns how many were still pending. */
  markAcked(...seqs: number[]): number {
    return this.ackTx.immediate(seqs, Date.now());
  }

  /** Counts one more publish of each row: a row with attempts > 1 has been sent more than once. */
  markAttempted(seqs: readonly number[]): void {
    this.attemptTx.immediate(seqs);
  }

  stats(): OutboxStats {
    return this.selectStats.get() as OutboxStats;
  }

  close(): void {
    if (!this.db.open) return;
    this.db.close();
    this.log?.info({ file: this.file }, 'outbox closed');
  }
}

/** Sets the durability pragmas and migrates; returns the schema version the file had. */
function prepare(db: Database.Database, file: string): number {
  // Read before any write: a file that is not a database fails here, before SQLite could touch it.
  const from = db.pragma('user_version', { simple: true }) as number;
  if (from > migrations.length) {
    throw new OutboxError(`outbox ${file} has schema version ${from}, newer than this edgepatrol knows ` +
      `(${migrations.length}); run the newer edgepatrol or move the file aside`, file);
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
