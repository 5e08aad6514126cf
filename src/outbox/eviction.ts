/**
 * The byte cap (OutboxOptions.maxBytes, docs/delivery.md): which rows and evidence images give way, in which
 * order, when an insert takes the outbox over it. Runs inside the insert's transaction, so an event that cannot
 * fit rolls back with everything evicted for it.
 */
import type { Victim } from './statements.js';
import type { RowStore } from './store.js';
import { priorities, rank, type NewEvent, type OutboxRow, type Priority } from './types.js';

/** Thrown inside the add transaction to roll it back when the event cannot fit. */
export class DoesNotFit extends Error {
  index = 0;
}

/**
 * Brings the byte total under the cap after inserting row `seq`, in this order: delivered rows (no loss),
 * then evidence of undelivered rows, then the new row's own evidence, then undelivered rows; each step from
 * low priority to the new row's priority, oldest first. Nothing of higher priority than the new row is touched.
 */
export function makeRoom(store: RowStore, seq: number, priority: Priority): void {
  if (store.usage() <= store.maxBytes) return;
  const { st } = store;
  const over = () => store.usage() > store.maxBytes;
  const allowed = priorities.filter((p) => rank[p] <= rank[priority]);
  for (let batch = deliveredVictims(store, seq); batch.length && over(); batch = deliveredVictims(store, seq)) {
    for (const v of batch) {
      if (!over()) break;
      store.deleteRow(v, null);
    }
  }
  for (const p of allowed) {
    for (let batch = st.evidenceOf.all(p, seq) as Victim[]; batch.length && over(); batch = st.evidenceOf.all(p, seq) as Victim[]) {
      for (const v of batch) {
        if (!over()) break;
        store.dropEvidence(v, 'full');
      }
    }
  }
  const own = st.bySeq.get(seq) as OutboxRow;
  if (over() && own.evidenceState === 'kept') store.dropEvidence({ ...own }, 'full');
  for (const p of allowed) {
    for (let batch = st.eventsOf.all(p, seq) as Victim[]; batch.length && over(); batch = st.eventsOf.all(p, seq) as Victim[]) {
      for (const v of batch) {
        if (!over()) break;
        store.deleteRow(v, 'full');
      }
    }
  }
  if (over()) throw new DoesNotFit();
}

/** Delivered rows other than `seq`, oldest first: those the watermark acked (all older), then those acked or confirmed one by one. */
function deliveredVictims(store: RowStore, seq: number): Victim[] {
  const covered = store.delivery === 'broker' ? (store.st.coveredVictims.all(seq) as Victim[]) : [];
  return covered.length ? covered : (store.st.deliveredVictims.all(seq) as Victim[]);
}

/** An event refused by the byte cap (its transaction rolled back): counted as dropped, with its evidence, and its file deleted. */
export function dropRefused(store: RowStore, e: NewEvent, evidenceBytes: number): void {
  const priority = e.priority ?? 'normal';
  const { countDrop } = store.st;
  store.transaction(() => {
    countDrop.run('event', 'full', priority, 1, 0);
    if (e.evidencePath) countDrop.run('evidence', 'full', priority, 1, evidenceBytes);
    else if (e.evidenceDropped) countDrop.run('evidence', e.evidenceDropped.reason, priority, 1, e.evidenceDropped.bytes);
  });
  if (e.evidencePath) store.unlink(e.evidencePath);
  store.log?.error(
    { file: store.file, event: e.id, priority, maxBytes: store.maxBytes },
    `outbox ${store.file} is full: ${priority} event ${e.id} dropped (nothing of lower priority left to evict)`,
  );
}
