import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import mqtt, { type IConnackPacket, type IPublishPacket, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { backoffDelay, type BackoffOptions } from '../common/backoff.js';
import { safeUrl } from '../log.js';
import type { AckClaim, Outbox, OutgoingRow, Watermark } from '../outbox/index.js';
import { ackPayloadSchema, type AvailabilityPayload } from './contract.js';

/** PEM file paths; read once at start(). */
export interface UplinkTls {
  ca?: string;
  cert?: string;
  key?: string;
  rejectUnauthorized?: boolean;
}

export interface UplinkOptions {
  url: string;
  prefix: string;
  gatewayId: string;
  clientId?: string;
  username?: string;
  password?: string;
  tls?: UplinkTls;
  outbox: Outbox;
  log: Logger;
  /** Agent version, published in the availability message. */
  version: string;
  /** Most messages awaiting PUBACK at once (default 32); lowered to fit the broker's Receive Maximum. */
  window?: number;
  /** Most payload bytes awaiting PUBACK at once (default 4 MiB): evidence images count by their size. */
  maxInFlightBytes?: number;
  /** Reconnect delays: exponential from initialMs to maxMs with equal jitter (default 1 s … 60 s). */
  reconnect?: BackoffOptions;
  /** Delay before re-sending an event the broker refused, ms (default 5000). */
  retryMs?: number;
  /** How long stop() waits for outstanding PUBACKs and the offline message, ms (default 5000). */
  stopTimeoutMs?: number;
  /** Period of outbox upkeep (time-to-live, service-ack timeout, drop alerts) and re-scan, ms (default 5000). */
  maintainMs?: number;
  /** delivery: service — how long the broker keeps this gateway's session (and acks sent to it) while it is offline, s (default 7 days). */
  sessionExpirySeconds?: number;
}

export interface UplinkEvents {
  connected: [];
  disconnected: [];
  /** The broker acknowledged the event (and all its evidence parts) and the outbox has recorded it. */
  acked: [seq: number];
  /** The task service confirmed events (delivery: service); the count of rows that changed. */
  confirmed: [ids: string[], changed: number];
}

export interface UplinkStatus {
  connected: boolean;
  /** Messages published on this connection and not yet acknowledged. */
  inFlight: number;
  inFlightBytes: number;
  /** The in-flight limit in force on this connection. */
  window: number;
  /** The broker's maximum packet size on this connection (evidence is split to fit), null when it set none. */
  maxPacketSize: number | null;
  /** Reconnect attempts since the last successful connection. */
  reconnectAttempts: number;
}

/** One MQTT message of a row: the event JSON, or one part of its evidence image. */
interface Outgoing {
  seq: number;
  topic: string;
  payload: string | Buffer;
  bytes: number;
  properties: IPublishPacket['properties'];
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function readPem(what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new Error(`uplink: cannot read the TLS ${what} file ${file}: ${message(err)}`, { cause: err });
  }
}

/** How long PUBACKs are collected before they are written to the outbox in one transaction. */
const ACK_FLUSH_MS = 20;

/** Room left in a packet for its header, topic and properties; the user properties of an evidence part stay under 300 bytes. */
const PACKET_OVERHEAD = 400;

/**
 * Publishes the outbox to the broker: at least once, in seq order, marking a row acked only when the PUBACKs
 * of its event message and of every part of its evidence have arrived.
 *
 * The outbox is the only queue. Events are published only while connected, and on every (re)connect the
 * drain restarts from the oldest unacknowledged row; mqtt.js's own in-memory copies of unacknowledged
 * publishes are dropped when a connection closes, so a broker outage costs duplicates (same event id), never
 * memory or loss. Flow control: at most `window` messages and `maxInFlightBytes` bytes await PUBACK, and
 * rows are read from SQLite only when there is room.
 */
export class Uplink extends EventEmitter<UplinkEvents> {
  private readonly opts: UplinkOptions;
  private readonly log: Logger;
  private readonly topics: { availability: string; health: string; ack: string; evidence: (id: string) => string };
  private readonly maxWindow: number;
  private readonly maxInFlightBytes: number;
  private readonly reconnect: BackoffOptions;
  private client: MqttClient | undefined;
  private connected = false;
  private stopping: Promise<void> | undefined;
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
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectAttempts = 0;
  private maintainTimer: NodeJS.Timeout | undefined;
  private pumpImmediate: NodeJS.Immediate | undefined;

  constructor(opts: UplinkOptions) {
    super();
    this.opts = opts;
    this.log = opts.log.child({ component: 'uplink' });
    const base = `${opts.prefix}/${opts.gatewayId}`;
    this.topics = {
      availability: `${base}/availability`,
      health: `${base}/health`,
      ack: `${base}/ack`,
      evidence: (id) => `${base}/evidence/${id}`,
    };
    this.maxWindow = Math.max(1, opts.window ?? 32);
    this.window = this.maxWindow;
    this.maxInFlightBytes = opts.maxInFlightBytes ?? 4 * 1024 * 1024;
    this.reconnect = opts.reconnect ?? { initialMs: 1_000, maxMs: 60_000 };
  }

  status(): UplinkStatus {
    return { connected: this.connected, inFlight: this.inFlight, inFlightBytes: this.inFlightBytes, window: this.window,
      maxPacketSize: this.maxPacketSize, reconnectAttempts: this.reconnectAttempts };
  }

  /** Connects and keeps reconnecting until stop(). Throws at once if a TLS file cannot be read. */
  start(): void {
    if (this.client || this.stopping) throw new Error('uplink: start() called twice; create a new Uplink instead');
    const { url, tls } = this.opts;
    const clientId = this.opts.clientId ?? `edgepatrol-${this.opts.gatewayId}`;
    const service = this.opts.outbox.delivery === 'service';
    const client = mqtt.connect(url, {
      protocolVersion: 5,
      clientId,
      username: this.opts.username,
      password: this.opts.password,
      // With delivery: service the gateway subscribes to its ack topic, and acks sent while it is offline must
      // wait at the broker: a persistent session. Otherwise the outbox, not a session, holds all state.
      clean: !service,
      ...(service ? { properties: { sessionExpiryInterval: this.opts.sessionExpirySeconds ?? 7 * 24 * 3600 } } : {}),
      resubscribe: false,
      keepalive: 30,
      connectTimeout: 10_000,
      // Reconnects are scheduled here (exponential backoff with jitter), not by mqtt.js's fixed-period timer.
      reconnectPeriod: 0,
      will: {
        topic: this.topics.availability,
        payload: Buffer.from(JSON.stringify({ state: 'offline', version: this.opts.version } satisfies AvailabilityPayload)),
        qos: 1,
        retain: true,
      },
      ...(tls?.ca ? { ca: readPem('CA', tls.ca) } : {}),
      ...(tls?.cert ? { cert: readPem('client certificate', tls.cert) } : {}),
      ...(tls?.key ? { key: readPem('client key', tls.key) } : {}),
      ...(tls?.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: tls.rejectUnauthorized }),
    });
    this.client = client;
    client.on('connect', (connack) => this.onConnect(client, connack));
    client.on('close', () => this.onClose(client));
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
    client.on('error', (err) => {
      // One warning per outage; the retries go to debug.
      const level = this.reconnectAttempts === 0 ? 'warn' : 'debug';
      this.log[level]({ broker: safeUrl(url), err: message(err), attempts: this.reconnectAttempts }, 'mqtt error; retrying');
    });
    this.maintainTimer = setInterval(() => this.maintain(), this.opts.maintainMs ?? 5_000);
    this.log.info({ broker: safeUrl(url), clientId, tls: Boolean(tls), delivery: this.opts.outbox.delivery }, 'uplink connecting');
  }

  /** Tells the uplink that new pending rows exist. Cheap when nothing can be sent. */
  notify(): void {
    this.pump();
  }

  /**
   * Publishes a health snapshot on {prefix}/{gw}/health, QoS 0, retained (the newest one is what a dashboard
   * wants; a lost one is replaced by the next). Returns false when not connected: health is not queued.
   */
  publishHealth(payload: object): boolean {
    const client = this.client;
    if (!client || !this.connected || this.stopping) return false;
    client.publish(this.topics.health, JSON.stringify(payload), {
      qos: 0, retain: true, properties: { contentType: 'application/json', payloadFormatIndicator: true },
    });
    return true;
  }

  /** Publishes availability offline (if connected), waits briefly for outstanding PUBACKs, disconnects. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    clearTimeout(this.retryTimer);
    clearTimeout(this.reconnectTimer);
    clearInterval(this.maintainTimer);
    clearImmediate(this.pumpImmediate);
    this.retryTimer = undefined;
    const client = this.client;
    if (!client) return;
    const timeoutMs = this.opts.stopTimeoutMs ?? 5_000;
    let offlineAcked = false;
    if (this.connected) {
      const since = new Date().toISOString();
      client.publish(this.topics.availability, JSON.stringify({ state: 'offline', version: this.opts.version, since } satisfies AvailabilityPayload),
        { qos: 1, retain: true }, (err) => {
          offlineAcked = !err;
        });
      await waitUntil(() => !this.connected || (offlineAcked && this.inFlight === 0), timeoutMs);
    }
    // A graceful DISCONNECT makes the broker discard the last will; when PUBACKs are missing, the socket is
    // simply closed and the rows they belong to stay unacknowledged in the outbox.
    const graceful = this.connected && offlineAcked && Object.keys(client.outgoing).length === 0;
    const wasConnected = this.connected;
    // Marked down first so the close that endAsync causes is not reported as a lost connection.
    this.connected = false;
    this.generation++;
    await client.endAsync(!graceful);
    this.flushAcks();
    if (wasConnected) this.emitSafe('disconnected');
    this.log.info({ graceful, ...this.opts.outbox.stats() }, 'uplink stopped');
  }

  private onConnect(client: MqttClient, connack: IConnackPacket): void {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.generation++;
    this.connected = true;
    this.reconnectAttempts = 0;
    this.resetDrain();
    // One slot stays free for the availability message; exceeding the broker's Receive Maximum is a
    // protocol error that costs the connection.
    const receiveMaximum = connack.properties?.receiveMaximum ?? 65_535;
    this.window = Math.max(1, Math.min(this.maxWindow, receiveMaximum - 1));
    this.startClaims();
    this.maxPacketSize = connack.properties?.maximumPacketSize ?? null;
    const since = new Date().toISOString();
    client.publish(this.topics.availability, JSON.stringify({ state: 'online', version: this.opts.version, since } satisfies AvailabilityPayload),
      { qos: 1, retain: true }, (err) => {
        if (err) this.log.warn({ err: message(err) }, 'availability online not acknowledged');
      });
    if (this.opts.outbox.delivery === 'service' && !connack.sessionPresent) {
      client.subscribe(this.topics.ack, { qos: 1 }, (err) => {
        if (err) this.log.error({ err: message(err), topic: this.topics.ack }, `cannot subscribe to ${this.topics.ack}; service acks will not arrive (check the broker ACL)`);
      });
    }
    this.log.info({ broker: safeUrl(this.opts.url), window: this.window, maxPacketSize: this.maxPacketSize,
      sessionPresent: connack.sessionPresent, ...this.opts.outbox.stats() }, 'mqtt connected; draining outbox');
    this.emitSafe('connected');
    this.pump();
  }

  private onClose(client: MqttClient): void {
    if (this.stopping) return;
    if (this.connected) {
      this.connected = false;
      this.generation++;
      // mqtt.js would re-send these from memory on reconnect, ahead of and besides the outbox's own ordered
      // replay; removing them (their callbacks get an error, ignored as an old generation) keeps one queue.
      for (const id of Object.keys(client.outgoing)) client.removeOutgoingMessage(Number(id));
      this.resetDrain();
      this.log.warn({ ...this.opts.outbox.stats() }, 'mqtt connection lost; events stay in the outbox');
      this.emitSafe('disconnected');
    }
    // 'close' also ends every failed attempt: each schedules the next, further apart each time.
    if (this.reconnectTimer) return;
    const delay = backoffDelay(this.reconnectAttempts++, this.reconnect);
    this.log.debug({ delayMs: delay, attempt: this.reconnectAttempts }, 'mqtt reconnect scheduled');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (!this.stopping) client.reconnect();
    }, delay);
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
      this.log.error({ err: message(err), file: this.opts.outbox.file }, 'cannot read the outbox watermark; recording acks row by row');
    }
  }

  private stopClaims(): void {
    this.claimBase = undefined;
    this.readOrder = [];
    this.acked.clear();
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (topic !== this.topics.ack) return;
    let ids: string[];
    try {
      ids = ackPayloadSchema.parse(JSON.parse(payload.toString('utf8'))).ids;
    } catch (err) {
      this.log.warn({ topic, err: message(err).slice(0, 300) }, `ignored a malformed ack on ${topic}; expected {"ids":["<event id>",…]}`);
      return;
    }
    let changed: number;
    try {
      changed = this.opts.outbox.markConfirmed(ids);
    } catch (err) {
      // The message is PUBACKed by mqtt.js anyway; the rows will be re-sent after the confirm timeout and acked again.
      this.log.error({ err: message(err), file: this.opts.outbox.file }, 'cannot record service acks in the outbox');
      return;
    }
    this.emitSafe('confirmed', ids, changed);
  }

  private maintain(): void {
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
      this.log.error({ err: message(err), file: this.opts.outbox.file }, 'outbox upkeep failed; retrying');
    }
    this.pump();
  }

  /**
   * pump() once the PUBACKs that arrived together have all been handled. mqtt.js handles one incoming packet
   * per process.nextTick and each publish corks the socket only until the next tick, so a publish made inside
   * a PUBACK callback costs its own write system call; refilling the window after the burst sends the freed
   * slots' messages in one write (measured in docs/decisions.md: the drain spent more in writev than in SQLite).
   */
  private pumpSoon(): void {
    this.pumpImmediate ??= setImmediate(() => {
      this.pumpImmediate = undefined;
      this.pump();
    });
  }

  /** Fills the in-flight window with the next messages, in seq order. */
  private pump(): void {
    const client = this.client;
    if (!client || !this.connected || this.stopping) return;
    try {
      while (this.inFlight < this.window) {
        if (this.queue.length === 0 && !this.readRows()) {
          // Nothing left to send: record the PUBACKs now rather than at the end of the batching interval.
          if (this.inFlight === 0) this.flushAcks();
          return;
        }
        const next = this.queue[0]!;
        // One message may exceed the byte budget on its own; it then goes out alone.
        if (this.inFlight > 0 && this.inFlightBytes + next.bytes > this.maxInFlightBytes) return;
        this.queue.shift();
        this.publish(client, next);
      }
    } catch (err) {
      this.log.error({ err: message(err), file: this.opts.outbox.file }, 'cannot read the outbox; retrying');
      this.queue = [];
      this.scheduleRetry(this.cursor + 1);
    }
  }

  /** Reads the next unacknowledged rows into the queue; false when there are none. */
  private readRows(): boolean {
    if (this.inFlightBytes >= this.maxInFlightBytes) return false;
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
    const out: Outgoing[] = [{
      seq: row.seq, topic: row.topic, payload: row.payload, bytes: row.bytes,
      properties: { contentType: 'application/json', payloadFormatIndicator: true },
    }];
    if (row.evidenceState !== 'kept' || !row.evidencePath) return out;
    let image: Buffer;
    try {
      image = readFileSync(this.opts.outbox.evidenceFile(row.evidencePath));
    } catch {
      this.opts.outbox.markEvidenceMissing(row.seq);
      return out;
    }
    const topic = this.topics.evidence(row.id);
    const room = this.maxPacketSize === null ? image.length : this.maxPacketSize - PACKET_OVERHEAD - Buffer.byteLength(topic);
    if (room <= 0) {
      this.log.error({ maxPacketSize: this.maxPacketSize, event: row.id }, `the broker's maximum packet size (${this.maxPacketSize}) leaves no room for evidence; raise max_packet_size on the broker`);
      return out;
    }
    const parts = Math.max(1, Math.ceil(image.length / room));
    for (let i = 0; i < parts; i++) {
      const chunk = image.subarray(i * room, Math.min(image.length, (i + 1) * room));
      out.push({
        seq: row.seq, topic, payload: chunk, bytes: chunk.length,
        properties: {
          contentType: 'image/jpeg',
          userProperties: {
            messageId: row.id, seq: String(row.seq), sha256: row.evidenceSha256 ?? '', bytes: String(image.length),
            part: String(i + 1), parts: String(parts),
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
        this.log.warn({ seq: m.seq, topic: m.topic, err: message(err) }, 'broker refused a message; its event stays unacknowledged');
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
      this.log.error({ err: message(err), file: this.opts.outbox.file, seqs: seqs.length }, 'cannot record acks in the outbox');
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
    for (const seq of seqs) this.emitSafe('acked', seq);
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
    if (this.stopping) return;
    this.rewindTo = Math.min(this.rewindTo, seq - 1);
    this.retryTimer ??= setTimeout(() => {
      this.retryTimer = undefined;
      this.cursor = Math.min(this.cursor, this.rewindTo);
      this.rewindTo = Infinity;
      // Messages already queued belong to rows after the rewind point; they are read again from the outbox.
      this.queue = [];
      this.readOrder = this.readOrder.filter((seq) => seq <= this.cursor);
      this.pump();
    }, this.opts.retryMs ?? 5_000);
  }

  /** Listeners belong to other parts of the agent; one that throws must not break the drain. */
  private emitSafe<K extends keyof UplinkEvents>(event: K, ...args: UplinkEvents[K]): void {
    try {
      (this as EventEmitter).emit(event, ...args);
    } catch (err) {
      this.log.error({ err: message(err), event }, 'uplink listener threw');
    }
  }
}

async function waitUntil(done: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
}
