import type { IPublishPacket } from 'mqtt';
import { z } from 'zod';
import type { Component, ComponentContext } from '../agent/index.js';
import { encodeJpeg } from '../common/jpeg.js';
import { gatewayTopics, TOPIC_PREFIX, type GatewayTopics } from '../common/topics.js';
import { redact, type CameraConfig, type Config } from '../config/index.js';
import { grabFrame } from '../ingest/index.js';
import type { InboxState } from '../outbox/index.js';
import { scrubSecrets } from '../log.js';
import {
  REQUEST_VERBS,
  requestSchemas,
  transactionSchema,
  type RequestErrorCode,
  type RequestVerb,
  type ResponseData,
} from '../uplink/index.js';
import { loadManifest, resolveModel } from '../vision/index.js';

/** Requests answered per second at most, per gateway; more are answered `busy` (docs/decisions/0046-requests.md). */
export const REQUESTS_PER_SECOND = 20;
/** Largest snapshot JPEG sent, bytes (before base64); a larger one is answered `unavailable`. */
export const MAX_SNAPSHOT_BYTES = 2 * 1024 * 1024;
/** Snapshots being taken at once, over all cameras; requests for a camera already being grabbed share its grab. */
const MAX_GRABS = 2;
const GRAB_TIMEOUT_MS = 5_000;
const MAX_MESSAGE_CHARS = 300;

/** An answer `error` with a code the caller can act on; anything else thrown is `internal`. */
export class RequestError extends Error {
  constructor(
    readonly code: RequestErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** A token bucket: `rate` tokens a second, at most `rate` saved up (a burst of one second's worth). */
class RateLimit {
  private tokens: number;
  private at = Date.now();
  constructor(private readonly rate: number) {
    this.tokens = rate;
  }
  take(now = Date.now()): boolean {
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.at) / 1000) * this.rate);
    this.at = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/**
 * What task/cancel cancels through: the task runner's own cancel (Tasks.cancelQueued), so a request cancels exactly
 * as a cancel task does.
 */
export interface TaskCanceler {
  cancelQueued(
    id: string,
    by: string,
  ): { ok: true; state: 'canceled' | 'canceling' } | { ok: false; reason: 'unknown_target' | 'not_cancelable'; detail: string };
  /** A PTZ camera's lease holder, manual hold and moves in the last hour; undefined for other cameras. */
  ptzState?(cameraId: string): ResponseData<'camera/list'>['cameras'][number]['ptz'];
}

type Verbs = { [V in RequestVerb]: (payload: z.infer<(typeof requestSchemas)[V]>) => Promise<ResponseData<V>> | ResponseData<V> };

/** Verbs of the answers' bus event and metrics: the known ones, and `other` for anything else. */
function verbLabel(verb: string): string {
  return (REQUEST_VERBS as readonly string[]).includes(verb) ? verb : 'other';
}

/**
 * Answers requests on {prefix}/{gw}/request/{verb} (Zigbee2MQTT's convention, docs/asyncapi.yaml): on …/response/{verb},
 * or on the request's MQTT 5 Response Topic when that is under the gateway's own …/response/, with its Correlation
 * Data copied and its `transaction` echoed. Answers go straight to the broker (Uplink.publishDirect), never
 * through the outbox: they are for whoever asks now. Every request, bad ones included, is answered unless the
 * gateway is offline, and counts against REQUESTS_PER_SECOND.
 */
export class RequestsServer implements Component {
  readonly name = 'requests';
  private ctx: ComponentContext | undefined;
  private topics: GatewayTopics | undefined;
  private unsubscribe: (() => void) | undefined;
  private limit = new RateLimit(REQUESTS_PER_SECOND);
  private readonly inFlight = new Set<Promise<void>>();
  private readonly grabs = new Map<string, Promise<ResponseData<'camera/snapshot'>>>();
  private readonly counts = new Map<string, number>();

  /** `tasks`: the runner task/cancel goes through; without one, task/cancel is answered unavailable. */
  constructor(private readonly tasks?: TaskCanceler) {}

  start(ctx: ComponentContext): void {
    this.ctx = ctx;
    this.limit = new RateLimit(REQUESTS_PER_SECOND);
    const topics = gatewayTopics(ctx.config.mqtt.prefix, ctx.config.gateway.id);
    this.topics = topics;
    this.unsubscribe = ctx.uplink.subscribe(
      topics.requests,
      z.record(z.string(), z.unknown()),
      (payload, topic, properties) => this.track(this.answer(topic, payload, undefined, properties)),
      // Each refusal is answered bad_request: the sender hears of it, the log need not at warn (a flood would fill it).
      {
        onRefused: (m) => this.track(this.answer(m.topic, m.json, `the payload is ${m.problem}`, m.properties)),
        refusedLogLevel: 'debug',
      },
    );
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    // Answers under way may still publish: the uplink stops after the components.
    await Promise.allSettled([...this.inFlight]);
    if (this.counts.size > 0) this.ctx?.log.info({ requests: Object.fromEntries(this.counts) }, 'requests answered, by verb and status');
  }

  /** Requests answered since start, as `"{verb} {status}"` → count; verbs the gateway does not know count as `other`. */
  answered(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }

  private track(p: Promise<void>): void {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  private async answer(topic: string, json: unknown, refused: string | undefined, properties: IPublishPacket['properties']): Promise<void> {
    const ctx = this.ctx!;
    const topics = this.topics!;
    const t0 = Date.now();
    const verb = topics.verbOf(topic) ?? '';
    const tx = transactionSchema.safeParse(isRecord(json) ? json.transaction : undefined);
    const transaction = tx.success ? tx.data : undefined;
    let body: { status: 'ok'; data: unknown } | { status: 'error'; error: { code: RequestErrorCode; message: string } };
    try {
      body = { status: 'ok', data: await this.run(verb, json, refused) };
    } catch (err) {
      const known = err instanceof RequestError;
      if (!known) ctx.log.warn({ verb, err }, `request ${verb} failed: ${(err as Error).message}`);
      const message = scrubSecrets(known ? err.message : `${(err as Error).message}; see the gateway log`).slice(0, MAX_MESSAGE_CHARS);
      body = { status: 'error', error: { code: known ? err.code : 'internal', message } };
    }
    const target = this.replyTopic(verb, properties?.responseTopic);
    let payload = JSON.stringify(transaction === undefined ? body : { ...body, transaction });
    const room = ctx.uplink.directRoom(target, properties?.correlationData);
    if (room !== null && Buffer.byteLength(payload) > room) {
      // A snapshot above the broker's Maximum Packet Size: say so rather than leave the caller waiting.
      const message = `the answer is ${Buffer.byteLength(payload)} bytes, more than the broker's maximum packet size allows (${room})`;
      body = { status: 'error', error: { code: 'unavailable', message } };
      payload = JSON.stringify(transaction === undefined ? body : { ...body, transaction });
    }
    const status = body.status === 'ok' ? 'ok' : body.error.code;
    const label = verbLabel(verb);
    const key = `${label} ${status}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    ctx.bus.emit('request.answered', { verb: label, status, ms: Date.now() - t0 });
    const delivered = await ctx.uplink.publishDirect(target, payload, {
      contentType: 'application/json',
      payloadFormatIndicator: true,
      ...(properties?.correlationData && { correlationData: properties.correlationData }),
    });
    if (delivered) ctx.log.debug({ verb, status, topic: target, ms: Date.now() - t0 }, `answered a request ${verb}: ${status}`);
    else ctx.log.debug({ verb, topic: target }, `the answer to ${verb} was not delivered (offline, or refused by the broker)`);
  }

  /**
   * The request's Response Topic when it lies under this gateway's own …/response/ (the one subtree the broker
   * ACL lets a gateway write answers to, docs/delivery.md), else …/response/{verb}.
   */
  private replyTopic(verb: string, responseTopic: string | undefined): string {
    const topics = this.topics!;
    const own = `${topics.base}/response/`;
    if (responseTopic?.startsWith(own) && TOPIC_PREFIX.test(responseTopic)) return responseTopic;
    return TOPIC_PREFIX.test(verb) ? `${own}${verb}` : `${own}unknown`;
  }

  private async run(verb: string, json: unknown, refused: string | undefined): Promise<unknown> {
    if (!this.limit.take()) {
      throw new RequestError('busy', `more than ${REQUESTS_PER_SECOND} requests a second; try again in a second`);
    }
    if (!Object.hasOwn(requestSchemas, verb)) {
      throw new RequestError('unknown_verb', `unknown verb '${verb.slice(0, 64)}'; the verbs are ${REQUEST_VERBS.join(', ')}`);
    }
    if (refused !== undefined) throw new RequestError('bad_request', `${refused}; send a JSON object, {} when the verb takes no argument`);
    const v = verb as RequestVerb;
    const parsed = requestSchemas[v].safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const where = issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
      throw new RequestError('bad_request', `${verb}: ${where}${issue.message}`);
    }
    const handlers = this.verbs();
    return (handlers[v] as (p: unknown) => unknown)(parsed.data);
  }

  private verbs(): Verbs {
    const ctx = this.ctx!;
    return {
      'config/get': () => redact(ctx.config) as Record<string, unknown>,
      'camera/list': () => cameraList(ctx, this.tasks),
      'camera/snapshot': ({ camera }) => this.snapshot(camera),
      'outbox/stats': () => ctx.outbox.stats(),
      'model/list': () => modelList(ctx),
      'task/list': ({ state, limit }) => taskList(ctx, state, limit),
      'task/cancel': ({ id }) => this.cancelTask(id),
    };
  }

  private cancelTask(id: string): ResponseData<'task/cancel'> {
    if (!this.tasks) throw new RequestError('unavailable', 'this agent runs no tasks');
    const done = this.tasks.cancelQueued(id, 'the request task/cancel');
    if (!done.ok) throw new RequestError(done.reason, done.detail);
    return { id, state: done.state };
  }

  private snapshot(cameraId: string): Promise<ResponseData<'camera/snapshot'>> {
    const ctx = this.ctx!;
    const cam = ctx.config.cameras.find((c) => c.id === cameraId);
    if (!cam || !ctx.cameras.ids.includes(cameraId)) {
      const known = ctx.cameras.ids.join(', ') || 'none';
      throw new RequestError('not_found', `no camera '${cameraId.slice(0, 64)}' on this gateway (cameras: ${known})`);
    }
    const running = this.grabs.get(cameraId);
    if (running) return running;
    if (this.grabs.size >= MAX_GRABS)
      throw new RequestError('busy', `${this.grabs.size} snapshots are being taken; try again in a few seconds`);
    const grab = takeSnapshot(cam, ctx.config.evidence.jpegQuality).finally(() => this.grabs.delete(cameraId));
    this.grabs.set(cameraId, grab);
    return grab;
  }
}

async function takeSnapshot(cam: CameraConfig, quality: number): Promise<ResponseData<'camera/snapshot'>> {
  const url = cam.source.file ?? cam.source.url;
  let frame: Awaited<ReturnType<typeof grabFrame>>;
  try {
    frame = await grabFrame({ cameraId: cam.id, url, timeoutMs: GRAB_TIMEOUT_MS });
  } catch (err) {
    throw new RequestError('unavailable', `no frame: ${(err as Error).message}`);
  }
  const jpeg = await encodeJpeg(frame, quality);
  if (jpeg.length > MAX_SNAPSHOT_BYTES) {
    throw new RequestError(
      'unavailable',
      `camera ${cam.id}: the JPEG is ${jpeg.length} bytes (${frame.width}×${frame.height}), above the ${MAX_SNAPSHOT_BYTES}-byte cap of an answer`,
    );
  }
  return {
    camera: cam.id,
    width: frame.width,
    height: frame.height,
    at: new Date(frame.ts).toISOString(),
    contentType: 'image/jpeg',
    jpegBase64: jpeg.toString('base64'),
  };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** host:port of a URL, with the scheme's default port when it has none; never its credentials. */
function hostPort(url: string, defaults: Record<string, number>): string {
  const u = new URL(url);
  const scheme = u.protocol.replace(/:$/, '');
  return `${u.hostname}:${u.port || defaults[scheme] || '?'}`;
}

const RTSP_PORTS = { rtsp: 554, rtsps: 322 };
const HTTP_PORTS = { http: 80, https: 443 };

function cameraList(ctx: ComponentContext, tasks: TaskCanceler | undefined): ResponseData<'camera/list'> {
  const configs = new Map(ctx.config.cameras.map((c) => [c.id, c]));
  const cameras = ctx.cameras.status().flatMap((s) => {
    const cam = configs.get(s.id);
    if (!cam) return [];
    const src = cam.source;
    const source =
      src.file !== undefined
        ? { kind: 'file' as const, file: src.file }
        : {
            kind: 'rtsp' as const,
            host: hostPort(src.url, RTSP_PORTS),
            ...(src.detectUrl !== undefined && { detectHost: hostPort(src.detectUrl, RTSP_PORTS) }),
          };
    return [
      {
        id: s.id,
        name: cam.name,
        state: s.state,
        ...(s.reason !== undefined && { reason: scrubSecrets(s.reason) }),
        since: s.since,
        ...(s.view !== undefined && { view: s.view }),
        ...(s.paused !== undefined && { paused: s.paused }),
        decodeFps: s.decodeFps,
        detectFps: s.detectFps,
        skippedFps: s.skippedFps,
        motionRatio: s.motionRatio,
        inferenceMs: s.inferenceMs,
        framesIn: s.totals.framesIn,
        events: s.totals.events,
        source,
        onvif: cam.onvif ? { host: hostPort(cam.onvif.url, HTTP_PORTS) } : null,
        presets: (cam.presets ?? []).map((p) => p.id),
        ...ptzOf(tasks, s.id),
      },
    ];
  });
  return { cameras };
}

function ptzOf(tasks: TaskCanceler | undefined, cameraId: string): { ptz?: ResponseData<'camera/list'>['cameras'][number]['ptz'] } {
  const ptz = tasks?.ptzState?.(cameraId);
  return ptz === undefined ? {} : { ptz };
}

function taskList(ctx: ComponentContext, state: InboxState | undefined, limit = 100): ResponseData<'task/list'> {
  const iso = (ms: number) => new Date(ms).toISOString();
  return {
    tasks: ctx.outbox.tasks.list(limit, state).map((row) => ({
      id: row.id,
      kind: row.kind,
      camera: row.cameraId,
      state: row.state,
      reason: row.reason as ResponseData<'task/list'>['tasks'][number]['reason'],
      version: row.version,
      receivedAt: iso(row.receivedAt),
      updatedAt: iso(row.updatedAt),
    })),
  };
}

function modelList(ctx: ComponentContext): ResponseData<'model/list'> {
  let manifest: ReturnType<typeof loadManifest>;
  try {
    manifest = loadManifest(ctx.modelsDir);
  } catch (err) {
    throw new RequestError('unavailable', (err as Error).message);
  }
  const config: Config = ctx.config;
  const inUse = new Map<string, string[]>();
  for (const cam of config.cameras) {
    const name = resolveModelName(manifest, cam.model ?? config.model.name);
    inUse.set(name, [...(inUse.get(name) ?? []), cam.id]);
  }
  return {
    default: manifest.default,
    models: Object.entries(manifest.models).map(([name, spec]) => ({
      name,
      precision: spec.precision,
      sha256: spec.sha256,
      input: { width: spec.input.shape[3], height: spec.input.shape[2] },
      cameras: inUse.get(name) ?? [],
    })),
  };
}

function resolveModelName(manifest: ReturnType<typeof loadManifest>, name: string | undefined): string {
  try {
    return resolveModel(manifest, name).name;
  } catch {
    // The manifest changed under the running agent; report the camera under the name its config gives.
    return name ?? manifest.default;
  }
}
