/**
 * Delivery-state changes (pending → sent → acked → confirmed, and back to pending), as the uplink reports them
 * and as replay and the service-ack timeout undo them. Drain bookkeeping commits without its own fsync
 * (RowStore.stateTransaction); going back to pending changes the watermark's epoch, so an older claim is refused.
 */
import type { RowStore } from './store.js';
import type { AckClaim, Watermark } from './types.js';
import { claimHolds, lowerWatermark, readWatermark } from './watermark.js';

export function markSent(store: RowStore, seqs: readonly number[]): void {
  const { sent } = store.st;
  store.stateTransaction(() => {
    for (const seq of seqs) sent.run(1, seq);
  });
}

export function markAcked(store: RowStore, seqs: readonly number[]): number {
  const { ack } = store.st;
  const at = store.now();
  return store.stateTransaction(() => seqs.reduce((n, seq) => n + ack.run(at, seq).changes, 0));
}

/** See Outbox.recordDelivery. */
export function recordDelivery(
  store: RowStore,
  sent: readonly number[],
  acked: readonly number[],
  claim?: AckClaim,
): { acked: number; watermark: Watermark | null } {
  const { st } = store;
  const at = store.now();
  return store.stateTransaction(() => {
    const before = (st.ackedCount.get() as { acked: number }).acked;
    const current = readWatermark(st);
    let accepted: Watermark | null = null;
    if (claimHolds(claim, current, store.delivery)) {
      st.advance.run(claim.upTo, at);
      accepted = { upTo: claim.upTo, epoch: current.epoch };
    }
    const upTo = accepted?.upTo ?? current.upTo;
    const times = new Map<number, number>();
    for (const seq of sent) times.set(seq, (times.get(seq) ?? 0) + 1);
    for (const seq of acked) {
      const k = times.get(seq) ?? 0;
      times.delete(seq);
      if (seq <= upTo) {
        if (k) st.attempts.run(k, seq, k);
      } else if (!st.sentAcked.run(k, at, seq).changes && k) {
        // Already acked or confirmed: only the attempt counts. At speed most rows are handed over and
        // PUBACKed within one batch: one row write instead of two.
        st.sent.run(k, seq);
      }
    }
    for (const [seq, k] of times) st.sent.run(k, seq);
    return { acked: (st.ackedCount.get() as { acked: number }).acked - before, watermark: accepted };
  });
}

export function markConfirmed(store: RowStore, ids: readonly string[]): number {
  const { confirm } = store.st;
  const at = store.now();
  return store.stateTransaction(() => ids.reduce((n, id) => n + confirm.run(at, at, id).changes, 0));
}

/** Inside a transaction (delivery: service): acked rows not confirmed since `before` go back to pending; returns how many. */
export function requeueUnconfirmed(store: RowStore, before: number): number {
  const requeued = store.st.requeue.run(before).changes;
  if (requeued) store.st.bumpEpoch.run();
  return requeued;
}

/** Sets rows created at or after `sinceMs` back to pending; returns how many were not pending. */
export function replay(store: RowStore, sinceMs: number): number {
  const { st } = store;
  return store.transaction(() => {
    const first = (st.firstSince.get(sinceMs) as { seq: number | null }).seq;
    if (first === null) return 0;
    const n = (st.replayCount.get(sinceMs) as { n: number }).n;
    lowerWatermark(store, first - 1);
    st.replay.run(sinceMs);
    st.bumpEpoch.run();
    return n;
  });
}
