/**
 * The outbox's SQLite file before any row is read: durability pragmas, SQLite's integrity check, schema
 * migrations (migrations.ts), and moving a damaged file aside (with its -wal and -shm) so a new one can start.
 */
import { existsSync, renameSync } from 'node:fs';
import type Database from 'better-sqlite3';
import { OutboxError } from './errors.js';
import { migrations } from './migrations.js';

/** Sets the durability pragmas, checks the file and migrates; returns the schema version the file had. */
export function prepareFile(db: Database.Database, file: string): number {
  // Read before any write: a file that is not a database fails here, before SQLite could touch it.
  const from = db.pragma('user_version', { simple: true }) as number;
  if (from > migrations.length) {
    throw new OutboxError(
      `outbox ${file} has schema version ${from}, newer than this edgepatrol knows ` +
        `(${migrations.length}); run the newer edgepatrol or move the file aside`,
      file,
    );
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

/** Renames a damaged outbox file and its WAL and shared-memory files to `<file>.corrupt-<time>`; returns that name. */
export function moveAside(file: string, now: number): string {
  const movedTo = `${file}.corrupt-${new Date(now).toISOString().replace(/[:.]/g, '-')}`;
  for (const suffix of ['', '-wal', '-shm']) {
    if (existsSync(file + suffix)) renameSync(file + suffix, movedTo + suffix);
  }
  return movedTo;
}
