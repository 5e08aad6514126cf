/**
 * The acknowledged-up-to watermark (delivery: broker, docs/delivery.md): every row with seq <= upTo still stored
 * as pending or sent counts as acked, so the uplink's in-order PUBACKs move one number instead of rewriting each
 * row. A claim to move it is checked against the watermark and epoch it was made from; lowering it writes out the
 * rows it covered first, so no row changes its state.
 */
import type { Statements } from './statements.js';
import type { RowStore } from './store.js';
import type { AckClaim, Delivery, Watermark } from './types.js';

export function readWatermark(st: Statements): Watermark {
  return st.watermark.get() as Watermark;
}

/** Whether `claim` still holds against the `current` watermark: made from it, and moving it up. */
export function claimHolds(claim: AckClaim | undefined, current: Watermark, delivery: Delivery): claim is AckClaim {
  return (
    claim !== undefined &&
    delivery === 'broker' &&
    claim.since.epoch === current.epoch &&
    claim.since.upTo === current.upTo &&
    claim.upTo > current.upTo
  );
}

/**
 * Inside a transaction: brings the watermark down to at most `seq`. The rows it acked above the new watermark
 * are first stored as acked (with the time of the advance that covered them), so no row changes its state;
 * the epoch changes, so a claim the uplink made against the old watermark is refused.
 */
export function lowerWatermark(store: RowStore, seq: number): void {
  const { st } = store;
  const { upTo } = readWatermark(st);
  if (upTo <= seq) return;
  const keep = (st.keepWatermark.get(seq) as { upTo: number }).upTo;
  st.materialise.run(keep);
  st.dropAcks.run(keep);
  st.bumpEpoch.run();
}
