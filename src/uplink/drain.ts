import { readFileSync } from 'node:fs';
import type { IConnackPacket, IPublishPacket, MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { GatewayTopics } from '../common/topics.js';
import type { AckClaim, Outbox, OutgoingRow, Watermark } from '../outbox/index.js';
import { errorText } from './session.js';

export interface DrainOptions {
  outbox: Outbox;
  log: Logger;
  topics: GatewayTopics;
  /** Most messages awaiting PUBACK at once; lowered per connection to fit the broker's Receive Maximum. */
  window: number;
  /** Most payload bytes awaiting PUBACK at once: evidence images count by their size. */
  maxInFlightBytes: number;
  /** Delay before re-sending an event the broker refused, ms. */
  retryMs: number;
  /** A row's event and every part of its evidence are PUBACKed, and the outbox has recorded it. */
  onAcked: (seq: number) => void;
}

/** One MQTT message of a row: the event JSON, or one part of its evidence image. */
interface Outgoing {
  seq: number;
  topic: string;
  payload: string | Buffer;
  bytes: number;
  properties: IPublishPacket['properties'];
}

/** How long PUBACKs are collected before they are written to the outbox in one transaction. */
const ACK_FLUSH_MS = 20;

/** Room left in a packet for its header, topic and properties; the user properties of an evidence part stay under 300 bytes. */
export const PACKET_OVERHEAD = 400;

/**
 * The publishing half of the uplink: reads the outbox in seq order and keeps a window of its messages in flight
 * on the current connection, marking a row acked only when the PUBACKs of its event message and of every part
 * of its evidence have arrived.
 *
 * Each connection starts over from the oldest unacknowledged row (attach); mqtt.js's own in-memory copies of
 * unacknowledged publishes are dropped by the uplink when a connection closes, so a broker outage costs
 * duplicates (same event id), never memory or loss. Flow control: at most `window` messages and
 * `maxInFlightBytes` bytes await PUBACK, and rows are read from SQLite only when there is room.
 */
export class OutboxDrain {
  private readonly opts: DrainOptions;
  private readonly log: Logger;
  private readonly maxWindow: number;
  /** The connection messages go out on; undefined while there is none. */
  private client: MqttClient | undefined;
  /** Set by halt(): the uplink is stopping and nothing more is published or retried. */
  private halted = false;
  /** Bumped on every connect and close, so a late callback from an old connection does not touch the window. */
  private generation = 0;
  /** Highest seq read on the current connection: the drain reads unacknowledged rows after it. */
  private cursor = 0;
  private inFlight = 0;
  private inFlightBytes = 0;
  private window: number;
  private maxPacketSize: number | null = null;
  /** Messages of rows already read, not yet published (a row's evidence parts wait here for window room). */
  private queue: Outgoing[] = [];
  /** Per row on this connection: messages still without PUBACK, and whether the broker refused one. */
  private rows = new Map<number, { left: number; refused: boolean }>();
  /** Rows handed to MQTT and PUBACKed seqs, written to the outbox together in one transaction per drain step. */
  private sentBatch: number[] = [];
  private ackBatch: number[] = [];
  /** Rows of sentBatch read with no attempt recorded: if acked in the same batch they need no attempts write. */
  private firstSends = new Set<number>();
  private ackFlush: NodeJS.Timeout | undefined;
  /**
   * Watermark claims (delivery: broker): the watermark this connection's reads started from, the seqs read
   * since in read order, and those fully PUBACKed. While every row read from the watermark on has its PUBACK,
   * a flush moves the watermark instead of writing each row. Undefined: no claims until the drain starts over.
   */
  private claimBase: Watermark | undefined;
  private readOrder: number[] = [];
  private acked = new Set<number>();
  private retryTimer: NodeJS.Timeout | undefined;
  /** The drain goes back to just before the lowest refused seq when retryTimer fires. */
  private rewindTo = Infinity;
  private pumpImmediate: NodeJS.Immediate | undefined;

  constructor(opts: DrainOptions) {
    this.opts = opts;
    this.log = opts.log;
    this.maxWindow = Math.max(1, opts.window);
    this.window = this.maxWindow;
  }

  status(): { inFlight: number; inFlightBytes: number; window: number; maxPacketSize: number | null } {
    return { inFlight: this.inFlight, inFlightBytes: this.inFlightBytes, window: this.window, maxPacketSize: this.maxPacketSize };
  }

  /** A new connection: the next pump() starts over from the oldest unacknowledged row, within the broker's limits. */
  attach(client: MqttClient, connack: IConnackPacket): void {
    this.client = client;
    this.generation++;
    this.resetDrain();
    // One slot stays free for the availability message; exceeding the broker's Receive Maximum is a
    // protocol error that costs the connection.
    const receiveMaximum = connack.properties?.receiveMaximum ?? 65_535;
    this.window = Math.max(1, Math.min(this.maxWindow, receiveMaximum - 1));
    this.startClaims();
    this.maxPacketSize = connack.properties?.maximumPacketSize ?? null;
  }

  /** The connection is gone: what was in flight is read again from the outbox on the next one. */
  detach(): void {
    this.client = undefined;
    this.generation++;
    this.resetDrain();
  }

  /** The uplink is stopping: nothing more is read, published or retried; what is in flight may still be PUBACKed. */
  halt(): void {
    this.halted = true;
    clearTimeout(this.retryTimer);
    clearImmediate(this.pumpImmediate);
    this.retryTimer = undefined;
  }

  /** After halt(), as the connection is closed: callbacks that come later are ignored. */
  invalidate(): void {
    this.client = undefined;
    this.generation++;
  }

  /** Records the PUBACKs and sends collected so far (the uplink's last step when it stops). */
  flush(): void {
    this.flushAcks();
  }

  /** Messages published on this connection and not yet acknowledged. */
  get pending(): number {
    return this.inFlight;
  }

  private resetDrain(): void {
    this.cursor = 0;
    this.inFlight = 0;
    this.inFlightBytes = 0;
    this.queue = [];
    this.rows.clear();
    this.rewindTo = Infinity;
    this.stopClaims();
  }

  /** The drain reads from the watermark on (cursor 0), so every unacknowledged row it passes will be read. */
  private startClaims(): void {
    this.stopClaims();
    if (this.opts.outbox.delivery !== 'broker') return;
    try {
      this.claimBase = this.opts.outbox.watermark();
    } catch (err) {
      // Acks are then written row by row, as with delivery: service.
      this.log.error({ err: errorText(err), file: this.opts.outbox.file }, 'cannot read the outbox watermark; recording acks row by row');
    }
  }

  private stopClaims(): void {
    this.claimBase = undefined;
    this.readOrder = [];
    this.acked.clear();
  }

  /** Outbox upkeep, then a re-scan from the oldest unacknowledged row when idle; the uplink calls it periodically. */
  maintain(): void {
    // PUBACKs not yet written would look unacknowledged to the re-scan below and be sent again.
    this.flushAcks();
    try {
      const { requeued } = this.opts.outbox.maintain();
      // Rows set back to pending behind the cursor (a service-ack timeout, `edgepatrol outbox replay`) are
      // found by starting over when the drain is idle.
      if (this.inFlight === 0 && this.queue.length === 0 && !this.retryTimer) {
        this.cursor = 0;
        this.startClaims();
      } else if (requeued > 0) {
        // Rows went back to pending behind rows in flight: no claim can cover them until the drain is idle again.
        this.cursor = 0;
        this.stopClaims();
      }
    } catch (err) {
      this.log.error({ err: errorText(err), file: this.opts.outbox.file }, 'outbox upkeep failed; retrying');
    }
    this.pump();
  }

  /**
   * pump() once the PUBACKs that arrived together have all been handled. mqtt.js handles one incoming packet
   * per process.nextTick and each publish corks the socket only until the next tick, so a publish made inside
   * a PUBACK callback costs its own write system call; refilling the window after the burst sends the freed
   * slots' messages in one write (the drain spent more in writev than in SQLite: bench/RESULTS.md,
   * "Issue 6, 2026-11-29: outbox drain, third pass (watermark)").
   */
  private pumpSoon(): void {
    this.pumpImmediate ??= setImmediate(() => {
      this.pumpImmediate = undefined;
      this.pump();
    });
  }

  /** Fills the in-flight window with the next messages, in seq order. */
  pump(): void {
    const client = this.client;
    if (!client || this.halted) return;
    try {
      while (this.inFlight < this.window) {
        if (this.queue.length === 0 && !this.readRows()) {
          // Nothing left to send: record the PUBACKs now rather than at the end of the batching interval.
          if (this.inFlight === 0) this.flushAcks();
          return;
        }
        const next = this.queue[0]!;
        // One message may exceed the byte budget on its own; it then goes out alone.
        if (this.inFlight > 0 && this.inFlightBytes + next.bytes > this.opts.maxInFlightBytes) return;
        this.queue.shift();
        this.publish(client, next);
      }
    } catch (err) {
      this.log.error({ err: errorText(err), file: this.opts.outbox.file }, 'cannot read the outbox; retrying');
      this.queue = [];
      this.scheduleRetry(this.cursor + 1);
    }
  }

  /** Reads the next unacknowledged rows into the queue; false when there are none. */
  private readRows(): boolean {
    if (this.inFlightBytes >= this.opts.maxInFlightBytes) return false;
    // A full window of rows at a time: fewer, larger reads; the queue holds at most one window of rows.
    const rows = this.opts.outbox.outgoing(this.window, this.cursor);
    if (rows.length === 0) return false;
    for (const row of rows) {
      this.sentBatch.push(row.seq);
      if (row.attempts === 0) this.firstSends.add(row.seq);
      if (this.claimBase) this.readOrder.push(row.seq);
      this.cursor = row.seq;
      const messages = this.messagesFor(row);
      this.rows.set(row.seq, { left: messages.length, refused: false });
      this.queue.push(...messages);
    }
    this.scheduleFlush();
    return true;
  }

  /** The event JSON, then its evidence image in parts that fit the broker's maximum packet size. */
  private messagesFor(row: OutgoingRow): Outgoing[] {
    // The row id is the event message's messageId; its evidence goes to {prefix}/{gw}/evidence/{messageId}.
    const out: Outgoing[] = [
      {
        seq: row.seq,
        topic: row.topic,
        payload: row.payload,
        bytes: row.bytes,
        properties: { contentType: 'application/json', payloadFormatIndicator: true },
      },
    ];
    if (row.evidenceState !== 'kept' || !row.evidencePath) return out;
    let image: Buffer;
    try {
      image = readFileSync(this.opts.outbox.evidenceFile(row.evidencePath));
    } catch {
      this.opts.outbox.markEvidenceMissing(row.seq);
      return out;
    }
    const topic = this.opts.topics.evidence(row.id);
    const room = this.maxPacketSize === null ? image.length : this.maxPacketSize - PACKET_OVERHEAD - Buffer.byteLength(topic);
    if (room <= 0) {
      this.log.error(
        { maxPacketSize: this.maxPacketSize, event: row.id },
        `the broker's maximum packet size (${this.maxPacketSize}) leaves no room for evidence; raise max_packet_size on the broker`,
      );
      return out;
    }
    const parts = Math.max(1, Math.ceil(image.length / room));
    for (let i = 0; i < parts; i++) {
      const chunk = image.subarray(i * room, Math.min(image.length, (i + 1) * room));
      out.push({
        seq: row.seq,
        topic,
        payload: chunk,
        bytes: chunk.length,
        properties: {
          contentType: 'image/jpeg',
          userProperties: {
            messageId: row.id,
            seq: String(row.seq),
            sha256: row.evidenceSha256 ?? '',
            bytes: String(image.length),
            part: String(i + 1),
            parts: String(parts),
          },
        },
      });
    }
    return out;
  }

  private publish(client: MqttClient, m: Outgoing): void {
    const generation = this.generation;
    this.inFlight++;
    this.inFlightBytes += m.bytes;
    client.publish(m.topic, m.payload, { qos: 1, properties: m.properties }, (err) => {
      // A callback from a closed connection: its row is sent again from the outbox on the new one.
      if (generation !== this.generation) return;
      this.inFlight--;
      this.inFlightBytes -= m.bytes;
      const row = this.rows.get(m.seq);
      if (!row) return;
      if (err) {
        row.refused = true;
        this.log.warn({ seq: m.seq, topic: m.topic, err: errorText(err) }, 'broker refused a message; its event stays unacknowledged');
        this.scheduleRetry(m.seq);
      }
      if (--row.left === 0) {
        this.rows.delete(m.seq);
        if (!row.refused) {
          if (this.claimBase) this.acked.add(m.seq);
          this.queueAck(m.seq);
        }
      }
      // The slot is free now; the ack is written with the next batch, it need not hold the next publish back.
      this.pumpSoon();
    });
  }

  private queueAck(seq: number): void {
    this.ackBatch.push(seq);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    // Batched by time: one transaction per ACK_FLUSH_MS however fast PUBACKs come (publishing does not wait for it).
    this.ackFlush ??= setTimeout(() => {
      this.ackFlush = undefined;
      this.flushAcks();
      this.pump();
    }, ACK_FLUSH_MS);
  }

  private flushAcks(): void {
    clearTimeout(this.ackFlush);
    this.ackFlush = undefined;
    if (this.ackBatch.length === 0 && this.sentBatch.length === 0) return;
    const seqs = this.ackBatch;
    const sent = this.firstAttemptsLeftOut(this.sentBatch, seqs);
    this.ackBatch = [];
    this.sentBatch = [];
    this.firstSends.clear();
    // The rows read from the watermark on that all have their PUBACK, in read order: the watermark can move to the last.
    let head = 0;
    while (head < this.readOrder.length && this.acked.has(this.readOrder[head]!)) head++;
    const claim: AckClaim | undefined = this.claimBase && head > 0 ? { since: this.claimBase, upTo: this.readOrder[head - 1]! } : undefined;
    let recorded: Watermark | null;
    try {
      recorded = this.opts.outbox.recordDelivery(sent, seqs, claim).watermark;
    } catch (err) {
      // The broker has these events; if the ack cannot be stored they are sent again later (duplicates).
      this.log.error({ err: errorText(err), file: this.opts.outbox.file, seqs: seqs.length }, 'cannot record acks in the outbox');
      return;
    }
    if (claim && recorded) {
      this.claimBase = recorded;
      this.readOrder = this.readOrder.slice(head);
      for (const seq of this.acked) if (seq <= recorded.upTo) this.acked.delete(seq);
    } else if (claim) {
      // Rows went back to pending meanwhile (replay, service-ack timeout): the acks were written row by row.
      this.stopClaims();
    }
    for (const seq of seqs) this.opts.onAcked(seq);
  }

  /**
   * `sent` without the rows handed over once, for the first time, and acked in this batch: an acked row counts
   * one attempt without it being written (Outbox.recordDelivery), which spares a row lookup per event.
   */
  private firstAttemptsLeftOut(sent: number[], acked: number[]): number[] {
    if (this.firstSends.size === 0 || acked.length === 0) return sent;
    const times = new Map<number, number>();
    for (const seq of sent) times.set(seq, (times.get(seq) ?? 0) + 1);
    const ackedNow = new Set(acked);
    return sent.filter((seq) => !(times.get(seq) === 1 && this.firstSends.has(seq) && ackedNow.has(seq)));
  }

  /** Re-sends from `seq` on after retryMs; rows already in flight after it may then arrive twice. */
  private scheduleRetry(seq: number): void {
    if (this.halted) return;
    this.rewindTo = Math.min(this.rewindTo, seq - 1);
    this.retryTimer ??= setTimeout(() => {
      this.retryTimer = undefined;
      this.cursor = Math.min(this.cursor, this.rewindTo);
      this.rewindTo = Infinity;
      // Messages already queued belong to rows after the rewind point; they are read again from the outbox.
      this.queue = [];
      this.readOrder = this.readOrder.filter((seq) => seq <= this.cursor);
      this.pump();
    }, this.opts.retryMs);
  }
}
