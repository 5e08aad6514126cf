/**
 * The main thread's side of background WAL checkpoints (OutboxOptions.checkpoint): starts checkpointer.ts in a
 * worker thread, raises the inline checkpoint to a backstop while it runs, and brings SQLite's own inline
 * checkpoints back if the worker fails, so the WAL never grows without bound.
 */
import { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import type { Logger } from 'pino';
import type { CheckpointerInit } from './checkpointer.js';
import { message } from './errors.js';

/** SQLite's default: the committing connection checkpoints once the WAL holds this many pages. */
const INLINE_CHECKPOINT_PAGES = 1000;
/**
 * With the background checkpointer, the inline checkpoint still runs at this size: under a steady stream of
 * commits the worker never finds a quiet moment for the WAL to start over from its beginning, and the inline
 * checkpoint, finding most frames already copied by the worker, is what lets it (16 MiB of WAL at most).
 */
const BACKSTOP_CHECKPOINT_PAGES = 4_000;
const CHECKPOINT_INTERVAL_MS = 200;

/** Moves WAL checkpoints to a worker thread (docs/decisions/0019-outbox-drain-watermark.md: inside commits they stalled the drain). */
export class BackgroundCheckpointer {
  private worker: Worker | undefined;

  constructor(db: Database.Database, file: string, log: Logger | undefined) {
    const url = new URL(import.meta.url.endsWith('.ts') ? './checkpointer.ts' : './checkpointer.js', import.meta.url);
    const worker = new Worker(url, { workerData: { file, intervalMs: CHECKPOINT_INTERVAL_MS } satisfies CheckpointerInit });
    // Housekeeping only: it must not keep a process alive that is otherwise done.
    worker.unref();
    this.worker = worker;
    db.pragma(`wal_autocheckpoint = ${BACKSTOP_CHECKPOINT_PAGES}`);
    const fallBack = (why: string) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      if (db.open) db.pragma(`wal_autocheckpoint = ${INLINE_CHECKPOINT_PAGES}`);
      log?.warn({ file, why }, `outbox ${file}: background WAL checkpoints stopped (${why}); checkpointing on the main thread again`);
    };
    worker.on('error', (err) => fallBack(message(err)));
    worker.on('exit', (code) => fallBack(`worker exited with code ${code}`));
  }

  /** Ends the worker without the fall-back: for closing the outbox. */
  stop(): void {
    const worker = this.worker;
    this.worker = undefined;
    worker?.postMessage('stop');
  }
}
