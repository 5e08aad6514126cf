/**
 * Worker thread of an Outbox (see Outbox's `checkpoint` option): every `intervalMs` it checkpoints the outbox's
 * WAL on its own connection. PASSIVE never waits for and never blocks the writer, so copying pages into the
 * database file and the fsyncs that go with it happen here instead of stalling the agent's main thread inside
 * a commit. Any error ends the worker; the Outbox then goes back to SQLite's inline checkpoints.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
const { file, intervalMs } = workerData;
const db = new Database(file, { fileMustExist: true });
db.pragma('busy_timeout = 5000');
const timer = setInterval(() => db.pragma('wal_checkpoint(PASSIVE)'), intervalMs);
// Any message means: stop.
parentPort.once('message', () => {
    clearInterval(timer);
    db.close();
    parentPort.close();
});
