import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { v7 as uuidv7 } from 'uuid';
import type { Config, CameraConfig } from '../config/index.js';
import { FrameSource, type SourceState } from '../ingest/index.js';
import { openDetector, type Detector } from '../vision/index.js';
import type { RgbFrame } from '../vision/types.js';
import { CameraRules, type RuleHit } from '../rules/index.js';
import { annotateEvidence } from '../evidence/annotate.js';
import { storeEvidence } from '../evidence/store.js';
import { Outbox } from '../outbox/index.js';
import { Uplink } from '../uplink/index.js';
import { version } from '../version.js';
import { EVENT_SCHEMA_ID, type EventPayload } from './event.js';

export interface AgentOptions {
  config: Config;
  log: Logger;
  /** Folder holding manifest.json and the model files (default: the project's models/). */
  modelsDir?: string;
}

export interface CameraStats {
  id: string;
  state: SourceState['state'];
  reason?: string;
  framesIn: number;
  framesDetected: number;
  framesSkipped: number;
  events: number;
}

/** Everything the agent runs for one camera; the agent owns it and closes it. */
interface CameraPipeline {
  config: CameraConfig;
  source: FrameSource;
  rules: CameraRules;
  /** The newest frame not yet detected on: a slot of one, so a slow detector drops frames instead of queueing them. */
  latest: RgbFrame | null;
  /** Event writes of one camera run one after another, so events keep the order their frames had. */
  eventChain: Promise<void>;
  stats: CameraStats;
}

/**
 * Wires camera → ingest → vision → rules → evidence → outbox → uplink. One detector session is shared by all
 * cameras; a single inference loop visits cameras round-robin and always takes a camera's newest frame.
 */
export class Agent {
  private readonly cameras: CameraPipeline[] = [];
  private detector: Detector | null = null;
  private outbox: Outbox | null = null;
  private uplink: Uplink | null = null;
  private nextCamera = 0;
  private inferring = false;
  private stopping = false;
  private loopDone: Promise<void> = Promise.resolve();
  private readonly dataDir: string;

  private constructor(private readonly opts: AgentOptions) {
    this.dataDir = resolve(opts.config.gateway.dataDir);
  }

  static async start(opts: AgentOptions): Promise<Agent> {
    const agent = new Agent(opts);
    try {
      await agent.open();
    } catch (err) {
      await agent.stop();
      throw err;
    }
    return agent;
  }

  private async open(): Promise<void> {
    const { config, log } = this.opts;
    mkdirSync(this.dataDir, { recursive: true, mode: 0o750 });
    this.detector = await openDetector({
      model: config.model.name,
      modelsDir: this.opts.modelsDir,
      threads: config.model.threads,
      scoreThreshold: config.model.scoreThreshold,
    });
    this.outbox = Outbox.open(join(this.dataDir, 'outbox.db'), { log });
    this.uplink = new Uplink({
      url: config.mqtt.url,
      prefix: config.mqtt.prefix,
      gatewayId: config.gateway.id,
      clientId: config.mqtt.clientId,
      username: config.mqtt.username,
      password: config.mqtt.password,
      tls: config.mqtt.tls,
      outbox: this.outbox,
      log,
      version,
    });
    this.uplink.start();
    for (const cam of config.cameras) this.cameras.push(this.openCamera(cam));
    log.info({ cameras: this.cameras.length, model: this.detector.model.name, dataDir: this.dataDir }, 'agent started');
  }

  private openCamera(cam: CameraConfig): CameraPipeline {
    const { log } = this.opts;
    const source = new FrameSource({
      cameraId: cam.id,
      url: 'url' in cam.source && cam.source.url ? cam.source.url : (cam.source as { file: string }).file,
      loop: 'loop' in cam.source ? Boolean(cam.source.loop) : false,
      fps: cam.detect.fps,
      width: cam.detect.width,
      height: cam.detect.height,
      stallSeconds: cam.stallSeconds,
      log: log.child({ camera: cam.id }),
    });
    const pipe: CameraPipeline = {
      config: cam,
      source,
      rules: new CameraRules(cam),
      latest: null,
      eventChain: Promise.resolve(),
      stats: { id: cam.id, state: 'connecting', framesIn: 0, framesDetected: 0, framesSkipped: 0, events: 0 },
    };
    source.on('state', (s: SourceState) => {
      pipe.stats.state = s.state;
      pipe.stats.reason = s.reason;
      const level = s.state === 'failed' || s.state === 'backoff' ? 'warn' : 'info';
      log[level]({ camera: cam.id, state: s.state, reason: s.reason }, `camera ${cam.id}: ${s.state}${s.reason ? ` (${s.reason})` : ''}`);
    });
    source.on('frame', (frame: RgbFrame) => {
      pipe.stats.framesIn++;
      if (pipe.latest) pipe.stats.framesSkipped++;
      pipe.latest = frame;
      this.kick();
    });
    source.start();
    return pipe;
  }

  /** Starts the inference loop if it is idle. */
  private kick(): void {
    if (this.inferring || this.stopping) return;
    this.inferring = true;
    this.loopDone = this.inferenceLoop().finally(() => { this.inferring = false; });
  }

  private takeNextFrame(): { pipe: CameraPipeline; frame: RgbFrame } | null {
    for (let i = 0; i < this.cameras.length; i++) {
      const pipe = this.cameras[(this.nextCamera + i) % this.cameras.length]!;
      if (pipe.latest) {
        this.nextCamera = (this.nextCamera + i + 1) % this.cameras.length;
        const frame = pipe.latest;
        pipe.latest = null;
        return { pipe, frame };
      }
    }
    return null;
  }

  private async inferenceLoop(): Promise<void> {
    const detector = this.detector!;
    for (let next = this.takeNextFrame(); next && !this.stopping; next = this.takeNextFrame()) {
      const { pipe, frame } = next;
      try {
        const detections = await detector.detect(frame);
        pipe.stats.framesDetected++;
        const hits = pipe.rules.evaluate(frame.ts, frame.width, frame.height, detections);
        for (const hit of hits) {
          pipe.eventChain = pipe.eventChain.then(() => this.recordEvent(pipe, frame, hit));
        }
      } catch (err) {
        this.opts.log.error({ camera: pipe.config.id, err }, `camera ${pipe.config.id}: detection failed`);
      }
    }
  }

  /** Evidence first, made durable; then the event, committed to the outbox; only then is it handed to the uplink. */
  private async recordEvent(pipe: CameraPipeline, frame: RgbFrame, hit: RuleHit): Promise<void> {
    const { config, log } = this.opts;
    const cam = pipe.config;
    const id = uuidv7();
    try {
      const zone = cam.zones.find((z) => z.id === hit.zoneId);
      const jpeg = await annotateEvidence(frame, {
        title: `${cam.name ?? cam.id} | ${hit.eventType} | ${formatLocal(frame.ts, config.gateway.timezone)}`,
        zone: zone?.polygon,
        objects: hit.objects,
        quality: config.evidence.jpegQuality,
      });
      const ev = storeEvidence(this.dataDir, id, frame.ts, jpeg);
      const payloadFor = (seq: number): EventPayload => ({
        schema: EVENT_SCHEMA_ID,
        id,
        seq,
        gatewayId: config.gateway.id,
        type: hit.eventType,
        camera: cam.name ? { id: cam.id, name: cam.name } : { id: cam.id },
        zone: hit.zoneId,
        rule: { id: hit.ruleId, kind: hit.rule },
        startedAt: new Date(hit.startedAt).toISOString(),
        detectedAt: new Date(hit.ts).toISOString(),
        dwellSeconds: Math.round(hit.dwellSeconds * 10) / 10,
        objects: hit.objects.map((o) => ({ class: o.class, score: round3(o.score), box: o.box.map(round4) as [number, number, number, number], trackId: o.trackId })),
        location: { ...cam.location },
        model: { ...this.detector!.model },
        evidence: { annotated: { file: ev.file, sha256: ev.sha256, bytes: ev.bytes, width: frame.width, height: frame.height, contentType: 'image/jpeg' } },
        agentVersion: version,
      });
      const { seq } = this.outbox!.add({
        id,
        cameraId: cam.id,
        type: hit.eventType,
        topic: `${config.mqtt.prefix}/${config.gateway.id}/event/${hit.eventType}`,
        evidencePath: ev.file,
        evidenceSha256: ev.sha256,
      }, payloadFor);
      pipe.stats.events++;
      log.info({ camera: cam.id, event: id, seq, type: hit.eventType, zone: hit.zoneId }, `event ${hit.eventType} on ${cam.id}/${hit.zoneId} stored (seq ${seq})`);
      this.uplink!.notify();
    } catch (err) {
      log.error({ camera: cam.id, err }, `camera ${cam.id}: could not store ${hit.eventType} event`);
    }
  }

  stats(): { cameras: CameraStats[]; outbox: ReturnType<Outbox['stats']> | null } {
    return { cameras: this.cameras.map((c) => ({ ...c.stats })), outbox: this.outbox?.stats() ?? null };
  }

  /** Stops the frame sources, lets running event writes finish, says offline on the broker, closes the store. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    await Promise.all(this.cameras.map((c) => c.source.stop()));
    await this.loopDone;
    await Promise.all(this.cameras.map((c) => c.eventChain));
    await this.uplink?.stop();
    this.outbox?.close();
    await this.detector?.close();
    this.opts.log.info('agent stopped');
  }
}

function round3(x: number): number { return Math.round(x * 1000) / 1000; }
function round4(x: number): number { return Math.min(1, Math.max(0, Math.round(x * 10000) / 10000)); }

/** Local wall-clock time for the evidence caption, in the gateway's configured time zone. */
function formatLocal(ts: number, timeZone: string | undefined): string {
  const f = new Intl.DateTimeFormat('sv-SE', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short' });
  return f.format(new Date(ts));
}
