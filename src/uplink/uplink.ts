import { EventEmitter } from 'node:events';
import mqtt, { type IClientPublishOptions, type IConnackPacket, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { backoffDelay, type BackoffOptions } from '../common/backoff.js';
import { gatewayTopics, type GatewayTopics } from '../common/topics.js';
import { safeUrl } from '../log.js';
import type { Outbox } from '../outbox/index.js';
import { ackPayloadSchema, type AvailabilityPayload } from './contract.js';
import { OutboxDrain, PACKET_OVERHEAD } from './drain.js';
import { Subscriptions, type InboundHandler, type InboundStatus, type SubscribeOptions } from './inbound.js';
import { DEFAULT_SESSION_EXPIRY_SECONDS, errorText, sessionOptions, type UplinkTls } from './session.js';

export interface UplinkOptions {
  url: string;
  prefix: string;
  gatewayId: string;
  /** Names the persistent session at the broker; keep it stable (default edgepatrol-{gatewayId}). */
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
  /** How long the broker keeps this gateway's session (subscriptions, messages sent down) while it is offline, s (default 7 days). */
  sessionExpirySeconds?: number;
}

export interface UplinkEvents {
  connected: [];
  disconnected: [];
  /** The broker acknowledged the event (and all its evidence parts) and the outbox has recorded it. */
  acked: [seq: number];
  /** The task service confirmed events (delivery: service); the count of rows that changed. */
  confirmed: [ids: string[], changed: number];
  /** A message on a subscribed topic passed its schema (`payload` is the parsed one); its handler runs next. */
  received: [topic: string, filter: string, payload: unknown];
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
  /** Messages that came in on the gateway's subscriptions: counted in total and per filter. */
  inbound: InboundStatus;
}

/**
 * The gateway's one MQTT connection: a persistent session (docs/delivery.md) that reconnects with backoff until
 * stop(), availability online/offline and the last will, the health message, the outbox drain (./drain.ts: at
 * least once, in seq order) and the subscriptions to the gateway's own topics (./inbound.ts), applied again on
 * every connect. With delivery: service it subscribes to its ack topic and records the service's confirmations.
 */
export class Uplink extends EventEmitter<UplinkEvents> {
  private readonly opts: UplinkOptions;
  private readonly log: Logger;
  private readonly topics: GatewayTopics;
  private readonly reconnect: BackoffOptions;
  private readonly drain: OutboxDrain;
  private readonly subscriptions: Subscriptions;
  private client: MqttClient | undefined;
  private connected = false;
  private stopping: Promise<void> | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectAttempts = 0;
  private maintainTimer: NodeJS.Timeout | undefined;

  constructor(opts: UplinkOptions) {
    super();
    this.opts = opts;
    this.log = opts.log.child({ component: 'uplink' });
    this.topics = gatewayTopics(opts.prefix, opts.gatewayId);
    this.reconnect = opts.reconnect ?? { initialMs: 1_000, maxMs: 60_000 };
    this.drain = new OutboxDrain({
      outbox: opts.outbox,
      log: this.log,
      topics: this.topics,
      window: opts.window ?? 32,
      maxInFlightBytes: opts.maxInFlightBytes ?? 4 * 1024 * 1024,
      retryMs: opts.retryMs ?? 5_000,
      onAcked: (seq) => this.emitSafe('acked', seq),
    });
    this.subscriptions = new Subscriptions(this.topics, this.log, (topic, filter, payload) =>
      this.emit('received', topic, filter, payload),
    );
    if (opts.outbox.delivery === 'service') this.subscribe(this.topics.ack, ackPayloadSchema, ({ ids }) => this.onServiceAck(ids));
  }

  status(): UplinkStatus {
    const inbound = this.subscriptions.status();
    return { connected: this.connected, ...this.drain.status(), reconnectAttempts: this.reconnectAttempts, inbound };
  }

  /**
   * Subscribes to `filter`, a topic or filter under this gateway's own {prefix}/{gatewayId}/ (anything else throws),
   * now if connected and again on every connect. Each message that matches is parsed as JSON and checked against
   * `schema` before `handler` sees it; one that fails, or whose handler throws, is logged, counted in
   * status().inbound and otherwise ignored (opts.onRefused hears of the refused ones). Returns the function that
   * unsubscribes.
   */
  subscribe<T>(filter: string, schema: z.ZodType<T>, handler: InboundHandler<T>, opts?: SubscribeOptions): () => void {
    return this.subscriptions.add(filter, schema, handler, opts);
  }

  /**
   * Publishes `payload` once, QoS 1, not retained, with MQTT 5 `properties` (a response's correlation data), on a
   * topic under this gateway's own {prefix}/{gatewayId}/ (anything else throws). Not through the outbox: nothing is
   * stored or re-sent, so it suits answers for whoever is online now. Resolves true on the broker's PUBACK, false
   * when not connected (nothing was sent) or the broker refused it or the connection closed first. A message that
   * does not fit the broker's Maximum Packet Size is not sent either (the broker would drop the connection for it):
   * check directRoom() first.
   */
  publishDirect(topic: string, payload: string | Buffer, properties: IClientPublishOptions['properties'] = {}): Promise<boolean> {
    if (!this.topics.owns(topic) || /[+#]/.test(topic)) {
      throw new Error(`uplink: cannot publish on ${topic}: only topics without wildcards under ${this.topics.base}/ are this gateway's`);
    }
    const client = this.client;
    if (!client || !this.connected || this.stopping) return Promise.resolve(false);
    const room = this.directRoom(topic, properties?.correlationData);
    if (room !== null && Buffer.byteLength(payload) > room) {
      this.log.warn({ topic, bytes: Buffer.byteLength(payload), room }, `not sent: larger than the broker's maximum packet size allows`);
      return Promise.resolve(false);
    }
    return new Promise((resolve) => {
      client.publish(topic, payload, { qos: 1, retain: false, properties }, (err) => {
        if (err) this.log.debug({ topic, err: errorText(err) }, 'a direct publish was not acknowledged');
        resolve(!err);
      });
    });
  }

  /**
   * Payload bytes a direct publish on `topic` (with `correlationData`) may carry on this connection; null when the
   * broker set no limit.
   */
  directRoom(topic: string, correlationData?: Buffer): number | null {
    const max = this.drain.status().maxPacketSize;
    return max === null ? null : max - PACKET_OVERHEAD - Buffer.byteLength(topic) - (correlationData?.length ?? 0);
  }

  /**
   * Every subscriber has subscribed: messages that arrived before their subscription existed (the persistent
   * session's backlog at start) have been handed over, and the rest are dropped (Subscriptions.ready).
   */
  inboundReady(): void {
    this.subscriptions.ready();
  }

  /** Connects and keeps reconnecting until stop(). Throws at once if a TLS file cannot be read. */
  start(): void {
    if (this.client || this.stopping) throw new Error('uplink: start() called twice; create a new Uplink instead');
    const { url, tls } = this.opts;
    const clientId = this.opts.clientId ?? `edgepatrol-${this.opts.gatewayId}`;
    const will: AvailabilityPayload = { state: 'offline', version: this.opts.version };
    const client = mqtt.connect(
      url,
      sessionOptions({
        clientId,
        username: this.opts.username,
        password: this.opts.password,
        tls,
        sessionExpirySeconds: this.opts.sessionExpirySeconds ?? DEFAULT_SESSION_EXPIRY_SECONDS,
        will: { topic: this.topics.availability, payload: JSON.stringify(will) },
      }),
    );
    this.client = client;
    client.on('connect', (connack) => this.onConnect(client, connack));
    client.on('close', () => this.onClose(client));
    // Messages a resumed session held may come before 'connect': routing needs no connection state.
    client.on('message', (topic, payload, packet) => this.subscriptions.route(topic, payload, packet.properties));
    client.on('error', (err) => {
      // One warning per outage; the retries go to debug.
      const level = this.reconnectAttempts === 0 ? 'warn' : 'debug';
      this.log[level]({ broker: safeUrl(url), err: errorText(err), attempts: this.reconnectAttempts }, 'mqtt error; retrying');
    });
    this.maintainTimer = setInterval(() => this.drain.maintain(), this.opts.maintainMs ?? 5_000);
    this.log.info({ broker: safeUrl(url), clientId, tls: Boolean(tls), delivery: this.opts.outbox.delivery }, 'uplink connecting');
  }

  /** Tells the uplink that new pending rows exist. Cheap when nothing can be sent. */
  notify(): void {
    this.drain.pump();
  }

  /**
   * Publishes a health snapshot on {prefix}/{gw}/health, QoS 0, retained (the newest one is what a dashboard
   * wants; a lost one is replaced by the next). Returns false when not connected: health is not queued.
   */
  publishHealth(payload: object): boolean {
    const client = this.client;
    if (!client || !this.connected || this.stopping) return false;
    client.publish(this.topics.health, JSON.stringify(payload), {
      qos: 0,
      retain: true,
      properties: { contentType: 'application/json', payloadFormatIndicator: true },
    });
    return true;
  }

  /** Publishes availability offline (if connected), waits briefly for outstanding PUBACKs, disconnects. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    clearTimeout(this.reconnectTimer);
    clearInterval(this.maintainTimer);
    this.drain.halt();
    const client = this.client;
    if (!client) return;
    const timeoutMs = this.opts.stopTimeoutMs ?? 5_000;
    let offlineAcked = false;
    if (this.connected) {
      const since = new Date().toISOString();
      client.publish(
        this.topics.availability,
        JSON.stringify({ state: 'offline', version: this.opts.version, since } satisfies AvailabilityPayload),
        { qos: 1, retain: true },
        (err) => {
          offlineAcked = !err;
        },
      );
      await waitUntil(() => !this.connected || (offlineAcked && this.drain.pending === 0), timeoutMs);
    }
    // A graceful DISCONNECT makes the broker discard the last will; when PUBACKs are missing, the socket is
    // simply closed and the rows they belong to stay unacknowledged in the outbox.
    const graceful = this.connected && offlineAcked && Object.keys(client.outgoing).length === 0;
    const wasConnected = this.connected;
    // Marked down first so the close that endAsync causes is not reported as a lost connection.
    this.connected = false;
    this.subscriptions.detach();
    this.drain.invalidate();
    await client.endAsync(!graceful);
    this.drain.flush();
    if (wasConnected) this.emitSafe('disconnected');
    this.log.info({ graceful, ...this.opts.outbox.stats() }, 'uplink stopped');
  }

  private onConnect(client: MqttClient, connack: IConnackPacket): void {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.connected = true;
    this.reconnectAttempts = 0;
    this.drain.attach(client, connack);
    const since = new Date().toISOString();
    client.publish(
      this.topics.availability,
      JSON.stringify({ state: 'online', version: this.opts.version, since } satisfies AvailabilityPayload),
      { qos: 1, retain: true },
      (err) => {
        if (err) this.log.warn({ err: errorText(err) }, 'availability online not acknowledged');
      },
    );
    this.subscriptions.attach(client);
    const { window, maxPacketSize } = this.drain.status();
    this.log.info(
      { broker: safeUrl(this.opts.url), window, maxPacketSize, sessionPresent: connack.sessionPresent, ...this.opts.outbox.stats() },
      'mqtt connected; draining outbox',
    );
    this.emitSafe('connected');
    this.drain.pump();
  }

  private onClose(client: MqttClient): void {
    if (this.stopping) return;
    if (this.connected) {
      this.connected = false;
      this.subscriptions.detach();
      this.drain.detach();
      // mqtt.js would re-send these from memory on reconnect, ahead of and besides the outbox's own ordered
      // replay; removing them (their callbacks get an error, ignored as an old generation) keeps one queue.
      for (const id of Object.keys(client.outgoing)) client.removeOutgoingMessage(Number(id));
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

  /** delivery: service — the task service has stored these events. */
  private onServiceAck(ids: string[]): void {
    let changed: number;
    try {
      changed = this.opts.outbox.markConfirmed(ids);
    } catch (err) {
      // The message is PUBACKed by mqtt.js anyway; the rows will be re-sent after the confirm timeout and acked again.
      this.log.error({ err: errorText(err), file: this.opts.outbox.file }, 'cannot record service acks in the outbox');
      return;
    }
    this.emitSafe('confirmed', ids, changed);
  }

  /** Listeners belong to other parts of the agent; one that throws must not break the drain. */
  private emitSafe<K extends keyof UplinkEvents>(event: K, ...args: UplinkEvents[K]): void {
    try {
      (this as EventEmitter).emit(event, ...args);
    } catch (err) {
      this.log.error({ err: errorText(err), event }, 'uplink listener threw');
    }
  }
}

async function waitUntil(done: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
}
