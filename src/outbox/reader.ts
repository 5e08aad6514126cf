/**
 * Worker thread of an Outbox (see Outbox's `reads` option): runs the uplink's "next unacknowledged rows" query
 * on its own read-only connection, so reading rows (about a fifth of the main thread's time in a drain,
 * docs/decisions.md) happens beside the publishing instead of in it. WAL mode lets this connection read while
 * the main one writes; each query sees everything committed before it started. Any error ends the worker; the
 * Outbox then reads on the calling thread again.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

export interface ReaderInit {
  file: string;
  /** The outgoing query; parameters afterSeq, limit. */
  sql: string;
}

export type ToReader = { type: 'read'; id: number; afterSeq: number; limit: number } | { type: 'stop' };
export type FromReader = { type: 'rows'; id: number; rows: unknown[] };

const { file, sql } = workerData as ReaderInit;
const db = new Database(file, { readonly: true, fileMustExist: true });
db.pragma('busy_timeout = 5000');
const outgoing = db.prepare(sql);
parentPort!.on('message', (msg: ToReader) => {
  if (msg.type === 'stop') {
    db.close();
    parentPort!.close();
    return;
  }
  parentPort!.postMessage({ type: 'rows', id: msg.id, rows: outgoing.all(msg.afterSeq, msg.limit) } satisfies FromReader);
});
