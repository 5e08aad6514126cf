/**
 * Time-to-live (OutboxOptions.ttlMs): an undelivered row older than its priority's limit is deleted with its
 * evidence and counted as a ttl drop. Delivered rows are not its business: eviction prunes them.
 */
import type { Victim } from './statements.js';
import type { RowStore } from './store.js';
import { priorities, type OutboxOptions } from './types.js';

/** Inside a write: deletes the undelivered rows past their time-to-live at `now`; returns how many. */
export function expire(store: RowStore, ttlMs: OutboxOptions['ttlMs'], now: number): number {
  const { expiredOf } = store.st;
  let expired = 0;
  for (const p of priorities) {
    const ttl = ttlMs?.[p];
    if (ttl === undefined) continue;
    for (let batch = expiredOf.all(p, now - ttl) as Victim[]; batch.length; batch = expiredOf.all(p, now - ttl) as Victim[]) {
      for (const v of batch) store.deleteRow(v, 'ttl');
      expired += batch.length;
    }
  }
  return expired;
}
