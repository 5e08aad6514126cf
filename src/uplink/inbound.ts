import type { IPublishPacket, MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { topicFilterProblem, topicMatches, type GatewayTopics } from '../common/topics.js';
import { errorText } from './session.js';

/**
 * Called with a payload that passed its schema. What it does synchronously is done before the broker gets the
 * message's PUBACK (mqtt.js acknowledges after its 'message' listeners return): a handler that stores the message
 * (SQLite) before returning has it stored before the broker forgets it. Messages are delivered at least once.
 */
export type InboundHandler<T> = (payload: T, topic: string, properties: IPublishPacket['properties']) => void | Promise<void>;

/** A message a subscription refused: not JSON, or failing its schema. */
export interface RefusedMessage {
  topic: string;
  /** Why, as logged: `not JSON (…)` or the first schema problem. */
  problem: string;
  /** The parsed payload when it was JSON (it failed the schema); undefined when it was not JSON. */
  json: unknown;
  properties: IPublishPacket['properties'];
}

export interface SubscribeOptions {
  /**
   * Hears of each message the subscription refused, after it is logged and counted: for a subscriber that owes
   * the sender an answer either way (requests). Its throw is logged like a handler's.
   */
  onRefused?: (message: RefusedMessage) => void;
  /** Level of the log line of a refused message (default warn); debug when the sender hears of it anyway. */
  refusedLogLevel?: 'warn' | 'debug';
}

export interface InboundCounts {
  /** Messages handed to a subscription (one per matching subscription). */
  received: number;
  /** Of those: not JSON, failing the schema, or the handler threw. */
  rejected: number;
}

export interface InboundStatus extends InboundCounts {
  /** Per topic filter, since start. */
  filters: Record<string, InboundCounts>;
}

interface Subscription {
  filter: string;
  schema: z.ZodType;
  handler: InboundHandler<never>;
  onRefused: SubscribeOptions['onRefused'];
  refusedLogLevel: NonNullable<SubscribeOptions['refusedLogLevel']>;
}

/** Most messages held for subscriptions not made yet (see Subscriptions.ready). */
const MAX_HELD = 1000;

/** Longest schema problem quoted in a log line. */
const PROBLEM_CHARS = 200;

function firstProblem(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'does not match its schema';
  const text = issue.path.length > 0 ? `${issue.path.join('.')}: ${issue.message}` : issue.message;
  return text.length > PROBLEM_CHARS ? `${text.slice(0, PROBLEM_CHARS)}…` : text;
}

/**
 * The uplink's inbound side: the gateway's subscriptions, (re)applied on every connect, and the routing of
 * each incoming message to the handlers whose filter matches it, after a JSON parse and a schema check. Only the
 * gateway's own topics ({prefix}/{gatewayId}/…) can be subscribed; later features rely on that. A bad payload or
 * a throwing handler is logged and counted, never thrown: it must not break the connection or the drain.
 */
export class Subscriptions {
  private readonly topics: GatewayTopics;
  private readonly log: Logger;
  private readonly list: Subscription[] = [];
  private readonly counts = new Map<string, InboundCounts>();
  private readonly totals: InboundCounts = { received: 0, rejected: 0 };
  /** Filters dropped while offline: the persistent session still holds them, so the next connect unsubscribes. */
  private readonly dropped = new Set<string>();
  private client: MqttClient | undefined;
  /** Bumped on every connect and close: a SUBACK error from an old connection is not news. */
  private generation = 0;
  /**
   * Until ready(): messages no subscription wanted. The persistent session delivers what was sent while the
   * gateway was offline right after the connect, before the components that subscribe have started; those
   * messages wait here for them instead of being dropped. null once ready.
   */
  private held: { topic: string; payload: Buffer; properties: IPublishPacket['properties'] }[] | null = [];

  /** `onAccepted` hears of every message that passed its schema, before its handler runs (the agent's bus). */
  constructor(
    topics: GatewayTopics,
    log: Logger,
    private readonly onAccepted?: (topic: string, filter: string, payload: unknown) => void,
  ) {
    this.topics = topics;
    this.log = log;
  }

  /** Throws, naming the filter, when it is not a valid filter under the gateway's own topics. */
  add<T>(filter: string, schema: z.ZodType<T>, handler: InboundHandler<T>, opts: SubscribeOptions = {}): () => void {
    const problem = topicFilterProblem(filter);
    if (problem) throw new Error(`uplink: cannot subscribe to ${filter}: ${problem}`);
    if (!this.topics.owns(filter)) {
      throw new Error(
        `uplink: cannot subscribe to ${filter}: only topics under ${this.topics.base}/ are this gateway's; ` +
          'messages for it must be sent there',
      );
    }
    const sub: Subscription = {
      filter,
      schema,
      handler: handler as InboundHandler<never>,
      onRefused: opts.onRefused,
      refusedLogLevel: opts.refusedLogLevel ?? 'warn',
    };
    const isNew = !this.list.some((s) => s.filter === filter);
    this.list.push(sub);
    this.dropped.delete(filter);
    if (!this.counts.has(filter)) this.counts.set(filter, { received: 0, rejected: 0 });
    if (isNew && this.client) this.subscribe(this.client, filter);
    const waiting = this.held?.filter((m) => topicMatches(filter, m.topic)) ?? [];
    if (waiting.length > 0) {
      this.held = this.held!.filter((m) => !waiting.includes(m));
      for (const m of waiting) this.route(m.topic, m.payload, m.properties);
    }
    return () => this.remove(sub);
  }

  /**
   * Every subscriber has subscribed (the agent calls this once its components run): messages held for a
   * subscription that did not come are dropped, and from now on a message no subscription wants is dropped at once.
   */
  ready(): void {
    if (this.held?.length)
      this.log.warn({ count: this.held.length }, `dropped ${this.held.length} message(s) no subscription wanted at start`);
    this.held = null;
  }

  private remove(sub: Subscription): void {
    const i = this.list.indexOf(sub);
    if (i < 0) return;
    this.list.splice(i, 1);
    if (this.list.some((s) => s.filter === sub.filter)) return;
    if (this.client) this.unsubscribe(this.client, sub.filter);
    else this.dropped.add(sub.filter);
  }

  /** On every connect, session present or not: SUBSCRIBE is idempotent, and a lost session has none. */
  attach(client: MqttClient): void {
    this.client = client;
    this.generation++;
    for (const filter of this.dropped) this.unsubscribe(client, filter);
    this.dropped.clear();
    for (const filter of new Set(this.list.map((s) => s.filter))) this.subscribe(client, filter);
  }

  detach(): void {
    this.client = undefined;
    this.generation++;
  }

  status(): InboundStatus {
    const filters: Record<string, InboundCounts> = {};
    for (const [filter, c] of this.counts) filters[filter] = { ...c };
    return { ...this.totals, filters };
  }

  /** Hands one incoming message to every subscription whose filter matches its topic. Never throws. */
  route(topic: string, payload: Buffer, properties: IPublishPacket['properties']): void {
    const subs = this.list.filter((s) => topicMatches(s.filter, topic));
    if (subs.length === 0) {
      if (this.held && this.held.length < MAX_HELD && this.topics.owns(topic)) {
        this.held.push({ topic, payload, properties });
        return;
      }
      // A subscription of the session dropped while offline, until the next connect unsubscribes it.
      this.log.debug({ topic }, 'ignored a message no subscription wants');
      return;
    }
    let json: unknown;
    let notJson: string | undefined;
    try {
      json = JSON.parse(payload.toString('utf8'));
    } catch (err) {
      notJson = errorText(err).slice(0, PROBLEM_CHARS);
    }
    for (const sub of subs) {
      this.count(sub.filter, 'received');
      if (notJson !== undefined) {
        this.refuse(sub, topic, `not JSON (${notJson})`, undefined, properties);
        continue;
      }
      const parsed = sub.schema.safeParse(json);
      if (!parsed.success) {
        this.refuse(sub, topic, firstProblem(parsed.error), json, properties);
        continue;
      }
      this.onAccepted?.(topic, sub.filter, parsed.data);
      this.run(sub, parsed.data as never, topic, properties);
    }
  }

  private run(sub: Subscription, payload: never, topic: string, properties: IPublishPacket['properties']): void {
    const failed = (err: unknown): void =>
      this.reject(sub.filter, topic, `the handler of ${sub.filter} failed on a message on ${topic}: ${errorText(err)}`);
    try {
      const done = sub.handler(payload, topic, properties);
      if (done instanceof Promise) done.catch(failed);
    } catch (err) {
      failed(err);
    }
  }

  private refuse(sub: Subscription, topic: string, problem: string, json: unknown, properties: IPublishPacket['properties']): void {
    this.reject(sub.filter, topic, `ignored a message on ${topic}: ${problem}`, sub.refusedLogLevel);
    if (!sub.onRefused) return;
    try {
      sub.onRefused({ topic, problem, json, properties });
    } catch (err) {
      this.log.warn({ topic, filter: sub.filter }, `the refusal handler of ${sub.filter} failed on ${topic}: ${errorText(err)}`);
    }
  }

  private reject(filter: string, topic: string, text: string, level: 'warn' | 'debug' = 'warn'): void {
    this.count(filter, 'rejected');
    this.log[level]({ topic, filter }, text);
  }

  private count(filter: string, what: keyof InboundCounts): void {
    this.totals[what]++;
    const c = this.counts.get(filter);
    if (c) c[what]++;
  }

  private subscribe(client: MqttClient, filter: string): void {
    const generation = this.generation;
    // Retain handling 1: a retained message comes with a new subscription only, not again on every reconnect.
    client.subscribe(filter, { qos: 1, rh: 1 }, (err) => {
      if (err && generation === this.generation) {
        const text = `cannot subscribe to ${filter}; its messages will not arrive (check the broker ACL)`;
        this.log.error({ err: errorText(err), topic: filter }, text);
      }
    });
  }

  private unsubscribe(client: MqttClient, filter: string): void {
    const generation = this.generation;
    client.unsubscribe(filter, (err) => {
      if (err && generation === this.generation) this.log.warn({ err: errorText(err), topic: filter }, `cannot unsubscribe from ${filter}`);
    });
  }
}
