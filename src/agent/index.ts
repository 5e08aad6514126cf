import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Config, CameraConfig } from '../config/index.js';
import { FrameSource, type SourceState } from '../ingest/index.js';
import { openDetector, type Detector } from '../vision/index.js';
import type { RgbFrame } from '../vision/types.js';
import { CameraRules } from '../rules/index.js';
import { Outbox } from '../outbox/index.js';
import { Uplink } from '../uplink/index.js';
import { version } from '../version.js';
import { EventRecorder } from './recorder.js';

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
  private recorder: EventRecorder | null = null;
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
    this.recorder = new EventRecorder({ config, dataDir: this.dataDir, outbox: this.outbox, uplink: this.uplink, model: this.detector.model, log });
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
          pipe.eventChain = pipe.eventChain.then(async () => { if (await this.recorder!.record(pipe.config, frame, hit)) pipe.stats.events++; });
        }
      } catch (err) {
        this.opts.log.error({ camera: pipe.config.id, err }, `camera ${pipe.config.id}: detection failed`);
      }
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
