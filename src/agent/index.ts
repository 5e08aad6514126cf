import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Config, CameraConfig } from '../config/index.js';
import { FrameSource, grabFrame, type SourceState } from '../ingest/index.js';
import { nativeVision, openDetector, remapClasses, tuneMalloc, type Detector } from '../vision/index.js';
import { allowedCpus, pinProcessThreads, planCpus, type CpuPlan } from '../vision/affinity.js';
import type { DetectTiming } from '../vision/inference.js';
import { MotionDetector, MotionGate } from '../vision/motion.js';
import { InferenceScheduler } from '../vision/scheduler.js';
import type { Frame, RgbFrame } from '../vision/types.js';
import { toRgb } from '../vision/yuv.js';
import { CameraRules } from '../rules/index.js';
import { Outbox } from '../outbox/index.js';
import { Uplink } from '../uplink/index.js';
import { HealthSampler } from '../health/index.js';
import { version } from '../version.js';
import { EventRecorder } from './recorder.js';
import { emptyCounters, STATUS_INTERVAL_MS, StatsWindow, writeStatus, type AgentStatus, type CameraCounters, type CameraStatus } from './stats.js';

export interface AgentOptions {
  config: Config;
  log: Logger;
  /** Folder holding manifest.json and the model files (default: the project's models/). */
  modelsDir?: string;
  /**
   * The layout ffmpeg hands frames over in: yuv420p (default, half the bytes and no conversion of frames that
   * are not detected) or rgb24, which bench/pipeline.ts `ratio --format rgb24` measures against it.
   */
  frameFormat?: 'rgb24' | 'yuv420p';
}

/** Everything the agent runs for one camera; the agent owns it and closes it. */
interface CameraPipeline {
  config: CameraConfig;
  source: FrameSource;
  /** The camera's model session, shared with every camera naming the same model. */
  detector: Detector;
  rules: CameraRules;
  gate: MotionGate;
  /** The rules' tracker holds objects (seen or coasting): while it does, the gate refreshes detection even without motion. */
  objectsTracked: boolean;
  /** The last frame the detector ran on: the evidence of events still open when the agent stops. */
  lastFrame?: Frame;
  /** Readers still holding a detected frame (the last frame, evidence being drawn); at zero it goes back to the source. */
  holds: Map<Uint8Array, number>;
  /** Event writes of one camera run one after another, so events keep the order their frames had. */
  eventChain: Promise<void>;
  state: SourceState['state'];
  reason?: string;
  stateSince: number;
  counters: CameraCounters;
  window: StatsWindow;
}

/**
 * Wires camera → ingest → vision → rules → evidence → outbox → uplink. Each camera's frames pass its motion
 * gate; frames with motion (or due for a refresh) go to one inference queue shared by all cameras, which
 * visits them round-robin with one detector session and drops a camera's oldest frames when it falls behind.
 */
export class Agent {
  private readonly cameras: CameraPipeline[] = [];
  /** One onnxruntime session per model name, shared by the cameras that use it. */
  private readonly detectors = new Map<string, Detector>();
  private scheduler: InferenceScheduler<Frame> | null = null;
  private outbox: Outbox | null = null;
  private uplink: Uplink | null = null;
  private recorder: EventRecorder | null = null;
  private statusTimer: NodeJS.Timeout | undefined;
  private healthTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  /** The CPUs the process had before pinning (stop() gives them back), and the split while pinned. */
  private allowedCpus: number[] | undefined;
  private pinned: { inference: number[]; others: number[] } | undefined;
  private readonly startedAt = Date.now();
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
    const models = new Set(config.cameras.map((c) => c.model ?? config.model.name));
    const plan = config.model.pinCores ? this.planCpus(config.model.threads * models.size) : undefined;
    for (const name of models) {
      const detector = await openDetector({
        model: name,
        modelsDir: this.opts.modelsDir,
        threads: config.model.threads,
        scoreThreshold: config.model.scoreThreshold,
        onWorkerExit: (err) => log.error({ model: name, err: err.message }, `${err.message}; frames in flight were lost, a new worker starts with the next frame`),
        ...(plan?.ok && { cpus: plan.inference }),
      });
      this.detectors.set(name ?? '', detector);
    }
    // Before any ffmpeg starts: the processes the main thread spawns inherit its CPUs.
    if (plan?.ok) this.pinOthers(plan);
    // Applied by the first model session; only its absence is news.
    const malloc = tuneMalloc();
    if (!malloc.tuned) log.warn({ reason: malloc.reason }, `malloc thresholds not set: ${malloc.reason}; detection runs 30–50 % slower in its worker thread`);
    const vision = nativeVision();
    if (!vision.ok) log.warn({ reason: vision.reason }, `frames are resized and outputs scanned in JavaScript: ${vision.reason}; about 2 ms more per detected frame`);
    const o = config.outbox;
    this.outbox = Outbox.open(join(this.dataDir, 'outbox.db'), {
      log,
      maxBytes: o.maxBytes,
      ttlMs: { high: o.ttlSeconds.high * 1000, normal: o.ttlSeconds.normal * 1000, low: o.ttlSeconds.low * 1000 },
      delivery: config.mqtt.delivery,
      confirmTimeoutMs: o.confirmTimeoutSeconds * 1000,
      alerts: { prefix: config.mqtt.prefix, gatewayId: config.gateway.id },
      onCorrupt: 'move-aside',
      // WAL checkpoints on a worker thread, beside the frame path rather than inside a commit (docs/delivery.md).
      checkpoint: 'background',
    });
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
      reconnect: config.mqtt.reconnect,
      sessionExpirySeconds: config.mqtt.sessionExpirySeconds,
    });
    this.uplink.start();
    this.recorder = new EventRecorder({ config, dataDir: this.dataDir, outbox: this.outbox, uplink: this.uplink, log });
    this.scheduler = new InferenceScheduler<Frame>({
      depth: config.model.queueDepth,
      // Three in flight: frames are preprocessed on this thread while the worker runs the model, and the worker
      // keeps one input in reserve, so a pause of this thread (a garbage collection, a burst of pipe reads) does
      // not leave it idle (docs/decisions.md). It answers in call order: each camera's rules see time order.
      concurrency: 3,
      run: (cameraId, frame) => this.detectFrame(this.camera(cameraId), frame),
      onError: (cameraId, err) => log.error({ camera: cameraId, err }, `camera ${cameraId}: detection failed`),
      onDrop: (cameraId, frame) => this.camera(cameraId).source.recycle(frame.data),
    });
    for (const cam of config.cameras) this.cameras.push(await this.openCamera(cam));
    this.statusTimer = setInterval(() => this.writeStatusFile(), STATUS_INTERVAL_MS);
    this.statusTimer.unref();
    const health = new HealthSampler({ gatewayId: config.gateway.id, version, dataDir: this.dataDir, ...(this.allowedCpus && { cores: this.allowedCpus.length }) });
    this.healthTimer = setInterval(() => this.publishHealth(health), config.health.intervalSeconds * 1000);
    this.healthTimer.unref();
    log.info({ cameras: this.cameras.length, models: [...this.detectors.values()].map((d) => d.model.name), dataDir: this.dataDir }, 'agent started');
  }

  /** The CPU split for `inferenceThreads`, or why there is none (logged). */
  private planCpus(inferenceThreads: number): CpuPlan {
    const allowed = allowedCpus();
    const plan = allowed.ok ? planCpus(allowed.cpus, inferenceThreads) : allowed;
    if (allowed.ok) this.allowedCpus = allowed.cpus;
    // Too few CPUs is how the gateway is; a missing addon is a broken install.
    if (!plan.ok) this.opts.log[allowed.ok ? 'info' : 'warn']({ reason: plan.reason }, `inference threads share the cores with decoding: ${plan.reason}`);
    return plan;
  }

  /** Moves this process's other threads off the inference CPUs, and checks the inference threads are on them. */
  private pinOthers(plan: Extract<CpuPlan, { ok: true }>): void {
    const { log } = this.opts;
    const r = pinProcessThreads(plan.others, plan.inference);
    if (r.moved > 0) this.pinned = { inference: plan.inference, others: plan.others };
    if (r.kept === 0 || r.failed > 0) {
      log.warn({ inference: plan.inference, others: plan.others, ...r }, `CPU pinning incomplete: ${r.kept} thread(s) on the inference CPUs, ${r.failed} thread(s) could not be moved; inference shares its cores with decoding`);
    } else {
      log.info({ inference: plan.inference, others: plan.others }, `inference on CPU ${plan.inference.join(',')} alone; decoding and the rest of the agent on CPU ${plan.others.join(',')}`);
    }
  }

  private async openCamera(cam: CameraConfig): Promise<CameraPipeline> {
    const { log } = this.opts;
    const source = new FrameSource({
      cameraId: cam.id,
      url: cam.source.url !== undefined ? cam.source.detectUrl ?? cam.source.url : cam.source.file,
      loop: 'loop' in cam.source ? Boolean(cam.source.loop) : false,
      fps: cam.detect.fps,
      width: cam.detect.width,
      height: cam.detect.height,
      ...(this.opts.frameFormat && { pixelFormat: this.opts.frameFormat }),
      stallSeconds: cam.stallSeconds,
      log: log.child({ camera: cam.id }),
    });
    const m = cam.motion;
    const now = Date.now();
    const pipe: CameraPipeline = {
      config: cam,
      source,
      detector: this.detectors.get(cam.model ?? this.opts.config.model.name ?? '')!,
      rules: await CameraRules.open(cam),
      gate: new MotionGate(
        m.enabled ? new MotionDetector({ threshold: m.threshold, minArea: m.minArea, backgroundSeconds: m.backgroundSeconds, masks: m.masks }) : null,
        { refreshMs: m.refreshSeconds * 1000 },
      ),
      objectsTracked: false,
      holds: new Map(),
      eventChain: Promise.resolve(),
      state: 'connecting',
      stateSince: now,
      counters: emptyCounters(),
      window: new StatsWindow(now),
    };
    this.scheduler!.addLane(cam.id);
    source.on('state', (s: SourceState) => {
      if (s.state !== pipe.state) pipe.stateSince = Date.now();
      pipe.state = s.state;
      pipe.reason = s.reason;
      const level = s.state === 'failed' || s.state === 'backoff' ? 'warn' : 'info';
      log[level]({ camera: cam.id, state: s.state, reason: s.reason }, `camera ${cam.id}: ${s.state}${s.reason ? ` (${s.reason})` : ''}`);
    });
    source.on('frame', (frame: Frame) => {
      pipe.counters.framesIn++;
      const { decision } = pipe.gate.decide(frame, pipe.objectsTracked);
      if (decision === 'motion') pipe.counters.motionFrames++;
      if (decision === 'skip' || this.stopping) return source.recycle(frame.data);
      pipe.gate.detected(frame.ts);
      pipe.counters.queued++;
      this.scheduler!.push(cam.id, frame);
    });
    source.start();
    return pipe;
  }

  private camera(id: string): CameraPipeline {
    return this.cameras.find((c) => c.config.id === id)!;
  }

  /**
   * Runs in the shared inference queue (three frames in flight across all cameras). The frame's buffer goes back
   * to its source for reuse once nothing reads it: the detector has copied it into its input by the time
   * `detect` settles; the rules only read it during `evaluate`; the last frame and each event's evidence hold it.
   */
  private async detectFrame(pipe: CameraPipeline, frame: Frame): Promise<void> {
    if (this.stopping) return;
    const timing: DetectTiming = { preprocessMs: 0, inferenceMs: 0, postMs: 0 };
    let detections;
    try {
      detections = remapClasses(await pipe.detector.detect(frame, timing), pipe.config.classMap);
    } catch (err) {
      pipe.source.recycle(frame.data);
      throw err;
    }
    // The worker's own time on this frame: wall time here would also count the frame ahead of it in the worker.
    pipe.counters.inferenceMs += timing.preprocessMs + timing.inferenceMs + timing.postMs;
    pipe.counters.detected++;
    const hits = pipe.rules.evaluate(frame.ts, frame.width, frame.height, detections, frame);
    pipe.objectsTracked = pipe.rules.hasTracks();
    this.hold(pipe, frame);
    if (pipe.lastFrame) this.unhold(pipe, pipe.lastFrame);
    pipe.lastFrame = frame;
    for (const hit of hits) {
      this.hold(pipe, frame);
      pipe.eventChain = pipe.eventChain.then(async () => {
        try {
          if (await this.recorder!.record(pipe.config, await this.evidenceFrame(pipe, frame), hit, pipe.detector.model)) pipe.counters.events++;
        } finally {
          this.unhold(pipe, frame);
        }
      });
    }
  }

  private hold(pipe: CameraPipeline, frame: Frame): void {
    pipe.holds.set(frame.data, (pipe.holds.get(frame.data) ?? 0) + 1);
  }

  private unhold(pipe: CameraPipeline, frame: Frame): void {
    const n = (pipe.holds.get(frame.data) ?? 1) - 1;
    if (n > 0) {
      pipe.holds.set(frame.data, n);
      return;
    }
    pipe.holds.delete(frame.data);
    pipe.source.recycle(frame.data);
  }

  /**
   * The frame an event's evidence is drawn on: with a sub-stream for detection, a fresh frame of the main
   * stream (boxes are normalized, so they fit any size); the detect frame, in RGB, when there is none or the grab
   * fails.
   */
  private async evidenceFrame(pipe: CameraPipeline, frame: Frame): Promise<RgbFrame> {
    const src = pipe.config.source;
    if (src.url === undefined || src.detectUrl === undefined) return toRgb(frame);
    try {
      return await grabFrame({ cameraId: pipe.config.id, url: src.url });
    } catch (err) {
      this.opts.log.warn({ camera: pipe.config.id, err: (err as Error).message }, `camera ${pipe.config.id}: evidence from the detect stream (${(err as Error).message})`);
      return toRgb(frame);
    }
  }

  /** While model.pinCores holds the inference on CPUs of its own: those, and the CPUs of everything else. */
  get cpuSplit(): { inference: number[]; others: number[] } | undefined {
    return this.pinned;
  }

  /** Per-camera state and rates over the last status interval (`edgepatrol status`, health). */
  cameraStatus(): CameraStatus[] {
    const scheduler = this.scheduler;
    return this.cameras.map((c) => {
      const status: CameraStatus = {
        id: c.config.id,
        state: c.state,
        since: new Date(c.stateSince).toISOString(),
        ...c.window.current,
        totals: { ...this.totals(c, scheduler) },
      };
      if (c.reason !== undefined) status.reason = c.reason;
      return status;
    });
  }

  private totals(c: CameraPipeline, scheduler: InferenceScheduler<Frame> | null): CameraCounters {
    return { ...c.counters, skipped: c.source.stats().dropped + (scheduler?.stats(c.config.id).dropped ?? 0) };
  }

  stats(): { cameras: CameraStatus[]; outbox: ReturnType<Outbox['stats']> | null } {
    return { cameras: this.cameraStatus(), outbox: this.outbox?.stats() ?? null };
  }

  /** The retained health message: gateway resources, outbox depth and drops, and each camera's state and rates. */
  private publishHealth(sampler: HealthSampler): void {
    if (!this.outbox || !this.uplink) return;
    try {
      const cameras = this.cameraStatus().map(({ totals, reason, ...rest }) => ({
        ...rest,
        ...(reason !== undefined && { reason }),
        framesIn: totals.framesIn,
        framesDetected: totals.detected,
        framesSkipped: totals.skipped,
        events: totals.events,
      }));
      this.uplink.publishHealth(sampler.sample({ outbox: this.outbox, uplink: this.uplink.status(), cameras }));
    } catch (err) {
      this.opts.log.warn({ err }, `health not published: ${(err as Error).message}`);
    }
  }

  private writeStatusFile(): void {
    const now = Date.now();
    for (const c of this.cameras) c.window.sample(this.totals(c, this.scheduler), now);
    const status: AgentStatus = {
      schema: 1,
      gatewayId: this.opts.config.gateway.id,
      pid: process.pid,
      version,
      startedAt: new Date(this.startedAt).toISOString(),
      writtenAt: new Date(now).toISOString(),
      windowSeconds: STATUS_INTERVAL_MS / 1000,
      cameras: this.cameraStatus(),
      outbox: this.outbox?.stats() ?? null,
    };
    try {
      writeStatus(this.dataDir, status);
    } catch (err) {
      this.opts.log.warn({ err, dataDir: this.dataDir }, `cannot write the status file in ${this.dataDir}: ${(err as Error).message}`);
    }
  }

  /** Stops the frame sources, lets running event writes finish, says offline on the broker, closes the store. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearInterval(this.statusTimer);
    clearInterval(this.healthTimer);
    await Promise.all(this.cameras.map((c) => c.source.stop()));
    await this.scheduler?.close();
    await Promise.all(this.cameras.map((c) => c.eventChain));
    // Open violations end with endReason agent_stopped, so the platform is not left waiting for an update.
    for (const c of this.cameras) await this.recorder?.recordStop(c.config, c.rules, c.lastFrame && toRgb(c.lastFrame), c.detector.model);
    await this.uplink?.stop();
    this.outbox?.close();
    for (const d of this.detectors.values()) await d.close();
    // The process may go on (tests, benches, an embedding program): its threads get all their CPUs back.
    if (this.pinned && this.allowedCpus) pinProcessThreads(this.allowedCpus);
    this.pinned = undefined;
    this.opts.log.info('agent stopped');
  }
}
