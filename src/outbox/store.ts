/**
 * The row store: the outbox's database handle and prepared statements, the two forms of transaction its writes
 * use, and the two removals every policy shares (a row deleted, an evidence image dropped), each counted as a
 * drop where it is one. Evidence files live beside the outbox file and belong to it from the moment their row
 * is added; they are sized, found and deleted here, a deletion only after the transaction that made it committed.
 */
import { statSync, unlinkSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import type Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { message, OutboxError } from './errors.js';
import { prepareStatements, type Statements, type Victim } from './statements.js';
import type { Delivery, DropReason, OutboxOptions } from './types.js';

export class RowStore {
  readonly folder: string;
  readonly delivery: Delivery;
  readonly maxBytes: number;
  readonly log: Logger | undefined;
  readonly now: () => number;
  readonly st: Statements;
  /** Evidence files of committed deletions; unlinked after the commit, so a rolled-back eviction keeps its files. */
  private unlinkAfterCommit: string[] = [];

  constructor(
    readonly db: Database.Database,
    readonly file: string,
    opts: OutboxOptions,
  ) {
    this.folder = dirname(file);
    this.delivery = opts.delivery ?? 'broker';
    this.maxBytes = opts.maxBytes ?? Infinity;
    this.log = opts.log;
    this.now = opts.now ?? Date.now;
    this.st = prepareStatements(db, this.delivery);
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  /**
   * A delivery-state change (sent, acked, confirmed) committed without its own fsync (synchronous=NORMAL for
   * this transaction only). It survives a crash of the agent (the WAL is in the OS's cache) and becomes durable
   * with the next fsynced commit or checkpoint; a power cut may undo the newest ones, which only means those
   * events are sent again — duplicates, never loss. Adds and evictions stay synchronous=FULL.
   * Measured by bench/outbox.ts: the drain rate is bound by these commits
   * (docs/decisions/0012-outbox-state-commits-without-fsync.md).
   */
  stateTransaction<T>(fn: () => T): T {
    this.db.pragma('synchronous = NORMAL');
    try {
      return this.transaction(fn);
    } finally {
      this.db.pragma('synchronous = FULL');
    }
  }

  /** Runs a write; evidence files of rows it deleted are removed once it has committed. */
  afterWrite<T>(fn: () => T): T {
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

  /** Bytes held: payloads plus kept evidence files, from the counter the triggers keep. */
  usage(): number {
    return (this.st.usage.get() as { bytes: number }).bytes;
  }

  dropEvidence(v: Victim, reason: DropReason): void {
    this.st.dropEvidence.run(v.seq);
    this.st.countDrop.run('evidence', reason, v.priority, 1, v.evidenceBytes);
    if (v.evidencePath) this.unlinkAfterCommit.push(v.evidencePath);
  }

  /** Deletes a row and its evidence file; `reason` null means it was delivered (pruned, not a drop). */
  deleteRow(v: Victim, reason: DropReason | null): void {
    this.st.deleteRow.run(v.seq);
    if (reason) {
      this.st.countDrop.run('event', reason, v.priority, 1, v.bytes);
      if (v.evidenceState === 'kept') this.st.countDrop.run('evidence', reason, v.priority, 1, v.evidenceBytes);
    }
    if (v.evidencePath && v.evidenceState === 'kept') this.unlinkAfterCommit.push(v.evidencePath);
  }

  /** Absolute path of an evidence file named by a row. */
  evidenceFile(path: string): string {
    return isAbsolute(path) ? path : join(this.folder, path);
  }

  unlink(path: string): void {
    try {
      unlinkSync(this.evidenceFile(path));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        this.log?.warn({ file: this.evidenceFile(path), err: message(err) }, 'cannot delete an evidence file');
    }
  }

  fileSize(path: string): number {
    try {
      return statSync(this.evidenceFile(path)).size;
    } catch (err) {
      throw new OutboxError(`evidence file ${this.evidenceFile(path)} cannot be read: ${message(err)}`, this.file, { cause: err });
    }
  }
}
