/**
 * The row store's SQL, prepared once per open: every statement the outbox runs, over the tables and views of
 * migrations.ts. The delivery mode is fixed per open and decides which rows count as delivered, so it is
 * written into the statements rather than passed on every call. Which statement runs when is decided by the
 * parts that use them (eviction, expiry, watermark, delivery, alerts, disk); nothing here runs a statement.
 */
import type Database from 'better-sqlite3';
import type { Delivery, OutgoingRow, Priority } from './types.js';

const rowColumns = `seq, id, camera_id AS cameraId, type, topic, payload, priority, bytes, evidence_path AS evidencePath,
  evidence_sha256 AS evidenceSha256, evidence_bytes AS evidenceBytes, evidence_state AS evidenceState,
  created_at AS createdAt, state, attempts, acked_at AS ackedAt, confirmed_at AS confirmedAt`;

/** The columns of an outgoing row, in the order of `OutgoingColumns`. */
const outgoingColumns = 'seq, id, topic, payload, bytes, evidence_path, evidence_sha256, evidence_state, attempts';
export type OutgoingColumns = [number, string, string, string, number, string | null, string | null, OutgoingRow['evidenceState'], number];

/** The acknowledged-up-to watermark (migration 3): the highest seq of the acks table, 0 when it is empty. */
const W = '(SELECT coalesce(max(up_to), 0) FROM acks)';

/** What eviction, expiry and the disk-space check read of a row before deleting it or its evidence. */
export interface Victim {
  seq: number;
  priority: Priority;
  bytes: number;
  evidencePath: string | null;
  evidenceState: string | null;
  evidenceBytes: number;
}

export type Statements = ReturnType<typeof prepareStatements>;

/** Prepares every statement on `db` for the delivery mode the outbox was opened with. */
export function prepareStatements(db: Database.Database, delivery: Delivery) {
  const broker = delivery === 'broker';
  // Rows at or below the watermark are acked (docs/delivery.md): with delivery: broker they are delivered, so
  // every undelivered row lies above it. With service, the watermark stays at 0 (see lowerWatermark).
  const delivered = broker ? `state IN ('acked', 'confirmed')` : `state = 'confirmed'`;
  const undelivered = broker ? `NOT (${delivered}) AND seq > ${W}` : `NOT (${delivered})`;
  const victim = 'seq, priority, bytes, evidence_path AS evidencePath, evidence_state AS evidenceState, evidence_bytes AS evidenceBytes';
  const p = (sql: string) => db.prepare(sql);
  return {
    insert: p(`INSERT INTO event_rows (id, camera_id, type, topic, payload, bytes, priority, evidence_path, evidence_sha256,
      evidence_bytes, evidence_state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    setPayload: p('UPDATE event_rows SET payload = ?, bytes = ? WHERE seq = ?'),
    // Stored pending or sent above the watermark: exactly the unacknowledged rows, read through events_unsent.
    unsent: p(`SELECT ${rowColumns} FROM event_rows WHERE state IN ('pending', 'sent') AND seq > max(?, ${W}) ORDER BY seq LIMIT ?`),
    outgoing: p(
      `SELECT ${outgoingColumns} FROM event_rows WHERE state IN ('pending', 'sent') AND seq > max(?, ${W}) ORDER BY seq LIMIT ?`,
    ).raw(true),
    ack: p(`UPDATE event_rows SET state = 'acked', acked_at = ? WHERE seq = ? AND state IN ('pending', 'sent') AND seq > ${W}`),
    confirm: p(`UPDATE event_rows SET state = 'confirmed', confirmed_at = ?,
      acked_at = coalesce(acked_at, (SELECT at FROM acks WHERE up_to >= event_rows.seq ORDER BY up_to LIMIT 1), ?) WHERE id = ? AND state != 'confirmed'`),
    sent: p(`UPDATE event_rows SET attempts = attempts + ?, state = CASE WHEN state = 'pending' THEN 'sent' ELSE state END WHERE seq = ?`),
    sentAcked: p(
      `UPDATE event_rows SET attempts = attempts + ?, state = 'acked', acked_at = ? WHERE seq = ? AND state IN ('pending', 'sent')`,
    ),
    // A row the watermark acked: its hand-overs are written only when there was more than the one the view implies.
    attempts: p('UPDATE event_rows SET attempts = attempts + ? WHERE seq = ? AND attempts + ? > 1'),
    watermark: p(`SELECT ${W} AS upTo, ack_epoch AS epoch FROM usage WHERE id = 1`),
    advance: p('INSERT INTO acks (up_to, at) VALUES (?, ?)'),
    ackedCount: p('SELECT acked FROM usage WHERE id = 1'),
    usage: p('SELECT bytes FROM usage WHERE id = 1'),
    coveredVictims: p(`SELECT ${victim} FROM event_rows WHERE seq <= ${W} AND seq != ? ORDER BY seq LIMIT 64`),
    deliveredVictims: p(`SELECT ${victim} FROM event_rows WHERE ${delivered} AND seq > ${W} AND seq != ? ORDER BY seq LIMIT 64`),
    evidenceOf: p(
      `SELECT ${victim} FROM event_rows WHERE priority = ? AND evidence_state = 'kept' AND ${undelivered} AND seq != ? ORDER BY seq LIMIT 64`,
    ),
    eventsOf: p(`SELECT ${victim} FROM event_rows WHERE priority = ? AND ${undelivered} AND seq != ? ORDER BY seq LIMIT 64`),
    expiredOf: p(`SELECT ${victim} FROM event_rows WHERE priority = ? AND ${undelivered} AND created_at < ? ORDER BY seq LIMIT 256`),
    dropEvidence: p(`UPDATE event_rows SET evidence_state = 'dropped' WHERE seq = ?`),
    deleteRow: p('DELETE FROM event_rows WHERE seq = ?'),
    countDrop: p(`INSERT INTO drops (what, reason, priority, count, bytes) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (what, reason, priority) DO UPDATE SET count = count + excluded.count, bytes = bytes + excluded.bytes`),
    unreported: p(`SELECT what, reason, priority, count - reported AS count, bytes FROM drops WHERE count > reported`),
    markReported: p('UPDATE drops SET reported = count'),
    drops: p('SELECT what, reason, priority, count, bytes FROM drops ORDER BY what, reason, priority'),
    requeue: p(`UPDATE event_rows SET state = 'pending' WHERE state = 'acked' AND acked_at < ?`),
    bumpEpoch: p('UPDATE usage SET ack_epoch = ack_epoch + 1 WHERE id = 1'),
    // Counters kept by triggers (migration 3): no scan of the table, whatever its size.
    stats: p(`SELECT pending, sent, acked, confirmed, bytes,
      coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'event_rows'), 0) AS lastSeq,
      coalesce((SELECT sum(count) FROM drops WHERE what = 'event'), 0) AS droppedEvents,
      coalesce((SELECT sum(count) FROM drops WHERE what = 'evidence'), 0) AS droppedEvidence
      FROM usage WHERE id = 1`),
    // The oldest undelivered row is the first unacknowledged one in seq order (rows are created in seq order);
    // with service, acked rows await their confirmation too (few: each is confirmed or re-queued within the timeout).
    oldestUnsent: p(`SELECT created_at AS at FROM event_rows WHERE state IN ('pending', 'sent') AND seq > ${W} ORDER BY seq LIMIT 1`),
    oldestUnconfirmed: p(`SELECT min(created_at) AS at FROM event_rows WHERE state = 'acked'`),
    byId: p(`SELECT ${rowColumns} FROM events WHERE id = ?`),
    // An event's messages share its id in the payload (one row per message: started, updated, ended); the newest first.
    byEventId: p(`SELECT ${rowColumns} FROM events WHERE json_extract(payload, '$.id') = ? ORDER BY seq DESC LIMIT 1`),
    bySeq: p(`SELECT ${rowColumns} FROM events WHERE seq = ?`),
    list: p(`SELECT ${rowColumns} FROM events WHERE seq > ? AND created_at >= ? AND (? IS NULL OR state = ?) ORDER BY seq LIMIT ?`),
    firstSince: p('SELECT min(seq) AS seq FROM event_rows WHERE created_at >= ?'),
    replayCount: p(`SELECT count(*) AS n FROM events WHERE created_at >= ? AND state != 'pending'`),
    replay: p(`UPDATE event_rows SET state = 'pending' WHERE created_at >= ? AND state != 'pending'`),
    // Lowering the watermark: its rows above the new one get their state (and the advance's time) written out first.
    keepWatermark: p('SELECT coalesce(max(up_to), 0) AS upTo FROM acks WHERE up_to <= ?'),
    materialise: p(`UPDATE event_rows SET state = 'acked',
      acked_at = coalesce(acked_at, (SELECT at FROM acks WHERE up_to >= event_rows.seq ORDER BY up_to LIMIT 1))
      WHERE state IN ('pending', 'sent') AND seq > ? AND seq <= ${W}`),
    dropAcks: p('DELETE FROM acks WHERE up_to > ?'),
    // Advances that cover no row any more; the newest stays, it is the watermark.
    pruneAcks: p(`DELETE FROM acks WHERE up_to < coalesce((SELECT min(seq) FROM event_rows), 9007199254740991) AND up_to < ${W}`),
    spaceVictims:
      p(`SELECT ${victim}, (${broker ? `seq <= ${W} OR ` : ''}${delivered}) AS delivered FROM event_rows WHERE evidence_state = 'kept'
      ORDER BY delivered DESC, CASE priority WHEN 'low' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END, seq`),
  };
}
