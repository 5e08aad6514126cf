import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import mqtt, { type IConnackPacket, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { safeUrl } from '../log.js';
import type { Outbox, OutboxRow } from '../outbox/index.js';

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
  /** Most events awaiting PUBACK at once (default 32); lowered to fit the broker's Receive Maximum. */
  window?: number;
  /** Fixed delay between reconnect attempts, ms (default 2000). */
  reconnectMs?: number;
  /** Delay before re-sending an event the broker refused, ms (default 5000). */
  retryMs?: number;
  /** How long stop() waits for outstanding PUBACKs and the offline message, ms (default 5000). */
  stopTimeoutMs?: number;
}

export interface UplinkEvents {
  connected: [];
  disconnected: [];
  /** The broker acknowledged the event and the outbox has recorded it. */
  acked: [seq: number];
}

export interface UplinkStatus {
  connected: boolean;
  /** Events published on this connection and not yet acknowledged. */
  inFlight: number;
  /** The in-flight limit in force on this connection. */
  window: number;
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

/**
 * Publishes the outbox to the broker: at least once, in seq order, marking a row acked only on its PUBACK.
 *
 * The outbox is the only queue. Events are published only while connected, and on every (re)connect the
 * drain restarts from the oldest pending row; mqtt.js's own in-memory copies of unacknowledged publishes are
 * dropped when a connection closes, so a broker outage costs duplicates (same event id), never memory or loss.
 */
export class Uplink extends EventEmitter<UplinkEvents> {
  private readonly opts: UplinkOptions;
  private readonly log: Logger;
  private readonly availabilityTopic: string;
  private readonly maxWindow: number;
  private client: MqttClient | undefined;
  private connected = false;
  private stopping: Promise<void> | undefined;
  /** Bumped on every connect and close, so a late callback from an old connection does not touch the window. */
  private generation = 0;
  /** Highest seq published on the current connection: the drain reads pending rows after it. */
  private cursor = 0;
  private inFlight = 0;
  private window: number;
  /** PUBACKed seqs waiting to be written to the outbox in one transaction (one fsync per batch, not per row). */
  private ackBatch: number[] = [];
  private ackFlush: NodeJS.Immediate | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  /** The drain goes back to just before the lowest refused seq when retryTimer fires. */
  private rewindTo = Infinity;
  private connectFailures = 0;

  constructor(opts: UplinkOptions) {
    super();
    this.opts = opts;
    this.log = opts.log.child({ component: 'uplink' });
    this.availabilityTopic = `${opts.prefix}/${opts.gatewayId}/availability`;
    this.maxWindow = Math.max(1, opts.window ?? 32);
    this.window = this.maxWindow;
  }

  status(): UplinkStatus {
    return { connected: this.connected, inFlight: this.inFlight, window: this.window };
  }

  /** Connects and keeps reconnecting until stop(). Throws at once if a TLS file cannot be read. */
  start(): void {
    if (this.client || this.stopping) throw new Error('uplink: start() called twice; create a new Uplink instead');
    const { url, tls } = this.opts;
    const clientId = this.opts.clientId ?? `edgepatrol-${this.opts.gatewayId}`;
    const client = mqtt.connect(url, {
      protocolVersion: 5,
      clientId,
      username: this.opts.username,
      password: this.opts.password,
      // The outbox, not a broker session, holds what is left to send, and the uplink subscribes to nothing
      // yet: no session state is worth resuming.
      clean: true,
      keepalive: 30,
      connectTimeout: 10_000,
      // A fixed period is simple and bounded; a broker coming back sees at most one attempt per gateway
      // per period. Exponential backoff with jitter is the planned refinement for large fleets.
      reconnectPeriod: this.opts.reconnectMs ?? 2_000,
      // Without this, a refused CONNACK (bad credentials, broker quota) ends the client for good; an
      // unattended gateway keeps trying so a fix on the broker side brings it back.
      reconnectOnConnackError: true,
      will: {
        topic: this.availabilityTopic,
        payload: Buffer.from(JSON.stringify({ state: 'offline', version: this.opts.version })),
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
    client.on('error', (err) => {
      // One warning per outage; the retries every reconnect period go to debug.
      this.connectFailures++;
      const level = this.connectFailures === 1 ? 'warn' : 'debug';
      this.log[level]({ broker: safeUrl(url), err: message(err), failures: this.connectFailures }, 'mqtt error; retrying');
    });
    this.log.info({ broker: safeUrl(url), clientId, tls: Boolean(tls) }, 'uplink connecting');
  }

  /** Tells the uplink that new pending rows exist. Cheap when nothing can be sent. */
  notify(): void {
    this.pump();
  }

  /** Publishes availability offline (if connected), waits briefly for outstanding PUBACKs, disconnects. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const client = this.client;
    if (!client) return;
    const timeoutMs = this.opts.stopTimeoutMs ?? 5_000;
    let offlineAcked = false;
    if (this.connected) {
      const since = new Date().toISOString();
      client.publish(this.availabilityTopic, JSON.stringify({ state: 'offline', version: this.opts.version, since }),
        { qos: 1, retain: true }, (err) => {
          offlineAcked = !err;
        });
      await waitUntil(() => !this.connected || (offlineAcked && this.inFlight === 0), timeoutMs);
    }
    // A graceful DISCONNECT makes the broker discard the last will; when PUBACKs are missing, the socket is
    // simply closed and the rows they belong to stay pending in the outbox.
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
    this.generation++;
    this.connected = true;
    this.connectFailures = 0;
    this.cursor = 0;
    this.inFlight = 0;
    this.rewindTo = Infinity;
    // One slot stays free for the availability message; exceeding the broker's Receive Maximum is a
    // protocol error that costs the connection.
    const receiveMaximum = connack.properties?.receiveMaximum ?? 65_535;
    this.window = Math.max(1, Math.min(this.maxWindow, receiveMaximum - 1));
    const since = new Date().toISOString();
    client.publish(this.availabilityTopic, JSON.stringify({ state: 'online', version: this.opts.version, since }),
      { qos: 1, retain: true }, (err) => {
        if (err) this.log.warn({ err: message(err) }, 'availability online not acknowledged');
      });
    this.log.info({ broker: safeUrl(this.opts.url), window: this.window, ...this.opts.outbox.stats() }, 'mqtt connected; draining outbox');
    this.emitSafe('connected');
    this.pump();
  }

  private onClose(client: MqttClient): void {
    // 'close' also fires for every failed connection attempt; only a lost connection needs handling.
    if (!this.connected) return;
    this.connected = false;
    this.generation++;
    this.inFlight = 0;
    // mqtt.js would re-send these from memory on reconnect, ahead of and besides the outbox's own ordered
    // replay; removing them (their callbacks get an error, ignored as an old generation) keeps one queue.
    for (const id of Object.keys(client.outgoing)) client.removeOutgoingMessage(Number(id));
    this.log.warn({ ...this.opts.outbox.stats() }, 'mqtt connection lost; events stay pending in the outbox');
    this.emitSafe('disconnected');
  }

  /** Fills the in-flight window with the next pending rows, in seq order. */
  private pump(): void {
    const client = this.client;
    if (!client || !this.connected || this.stopping) return;
    try {
      while (this.inFlight < this.window) {
        const rows = this.opts.outbox.pending(this.window - this.inFlight, this.cursor);
        if (rows.length === 0) return;
        this.opts.outbox.markAttempted(rows.map((r) => r.seq));
        for (const row of rows) this.publish(client, row);
      }
    } catch (err) {
      this.log.error({ err: message(err), file: this.opts.outbox.file }, 'cannot read the outbox; retrying');
      this.scheduleRetry(this.cursor + 1);
    }
  }

  private publish(client: MqttClient, row: OutboxRow): void {
    const generation = this.generation;
    this.cursor = row.seq;
    this.inFlight++;
    client.publish(row.topic, row.payload, {
      qos: 1,
      properties: { contentType: 'application/json', payloadFormatIndicator: true },
    }, (err) => {
      const current = generation === this.generation;
      if (current) this.inFlight--;
      if (!err) {
        this.queueAck(row.seq);
      } else if (current) {
        this.log.warn({ seq: row.seq, id: row.id, topic: row.topic, err: message(err) }, 'broker refused an event; it stays pending');
        this.scheduleRetry(row.seq);
      }
    });
  }

  private queueAck(seq: number): void {
    this.ackBatch.push(seq);
    this.ackFlush ??= setImmediate(() => {
      this.ackFlush = undefined;
      this.flushAcks();
      this.pump();
    });
  }

  private flushAcks(): void {
    clearImmediate(this.ackFlush);
    this.ackFlush = undefined;
    if (this.ackBatch.length === 0) return;
    const seqs = this.ackBatch;
    this.ackBatch = [];
    try {
      this.opts.outbox.markAcked(...seqs);
    } catch (err) {
      // The broker has these events; if the ack cannot be stored they are sent again later (duplicates).
      this.log.error({ err: message(err), file: this.opts.outbox.file, seqs: seqs.length }, 'cannot record acks in the outbox');
      return;
    }
    for (const seq of seqs) this.emitSafe('acked', seq);
  }

  /** Re-sends from `seq` on after retryMs; rows already in flight after it may then arrive twice. */
  private scheduleRetry(seq: number): void {
    if (this.stopping) return;
    this.rewindTo = Math.min(this.rewindTo, seq - 1);
    this.retryTimer ??= setTimeout(() => {
      this.retryTimer = undefined;
      this.cursor = Math.min(this.cursor, this.rewindTo);
      this.rewindTo = Infinity;
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
