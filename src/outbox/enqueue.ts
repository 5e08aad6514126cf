/**
 * Inserting one row inside an add's transaction: its priority checked, its payload made text (or built from the
 * seq the row was just given, so an event carries its own per-gateway seq), an evidence image the recorder could
 * not keep counted as dropped, and then the byte cap applied. Shared by events and the outbox's own alerts.
 */
import { makeRoom } from './eviction.js';
import type { RowStore } from './store.js';
import { rank, type NewEvent, type Payload } from './types.js';

export type PayloadBuilder = (e: NewEvent, seq: number) => Payload;

function toText(payload: Payload): string {
  return typeof payload === 'string' ? payload : JSON.stringify(payload);
}

/** `capped` false: outside the byte cap (nothing is evicted for the row). */
export function insertRow(
  store: RowStore,
  e: NewEvent,
  evidenceBytes: number,
  build: PayloadBuilder | undefined,
  capped = true,
): { seq: number } {
  const priority = e.priority ?? 'normal';
  if (!(priority in rank)) throw new TypeError(`outbox add: event ${e.id} has unknown priority ${String(priority)}`);
  const dropped = e.evidencePath ? undefined : e.evidenceDropped;
  const text = build ? '' : toText(e.payload as Payload);
  const { lastInsertRowid } = store.st.insert.run(
    e.id,
    e.cameraId,
    e.type,
    e.topic,
    text,
    Buffer.byteLength(text),
    priority,
    e.evidencePath ?? null,
    e.evidenceSha256 ?? null,
    dropped ? dropped.bytes : evidenceBytes,
    e.evidencePath ? 'kept' : dropped ? 'dropped' : null,
    store.now(),
  );
  const seq = Number(lastInsertRowid);
  if (dropped) store.st.countDrop.run('evidence', dropped.reason, priority, 1, dropped.bytes);
  if (build) {
    // The payload embeds its own seq, so it is written in the same transaction as the row.
    const built = toText(build(e, seq));
    store.st.setPayload.run(built, Buffer.byteLength(built), seq);
  }
  if (capped) makeRoom(store, seq, priority);
  return { seq };
}
