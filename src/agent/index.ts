import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Config, CameraConfig } from '../config/index.js';
import { defaultModelsDir, nativeVision, openDetector, tuneMalloc, type Detector } from '../vision/index.js';
import { InferenceScheduler } from '../vision/scheduler.js';
import type { Frame } from '../vision/types.js';
import { Outbox } from '../outbox/index.js';
import { Uplink } from '../uplink/index.js';
import { version } from '../version.js';
import { EventBus, type ScopedBus } from './bus.js';
import { CameraPipeline } from './camera.js';
import type { Component, ComponentContext, ConfigFile } from './component.js';
import { CpuPinning } from './cpus.js';
import { EventRecorder } from './recorder.js';
import { diffConfig, reloadSummary, type ReloadResult } from './reload.js';
import { STATUS_INTERVAL_MS, type CameraStatus } from './stats.js';

export type { AgentEvents, EventBus, Listener, ScopedBus } from './bus.js';
export type { Cameras, Component, ComponentContext, ConfigFile } from './component.js';
export { diffConfig, reloadSummary, type ConfigDiff, type ReloadResult } from './reload.js';

export interface AgentOptions {
  config: Config;
  log: Logger;
  /**
   * What runs beside the core (health, the status file, retention, …): started in this order once the core
   * runs, stopped in reverse before it stops. Required rather than defaulted, since the list lives above the
   * agent (src/components/index.ts `defaultComponents()`, what `edgepatrol run` passes); `[]` is the bare core.
   */
  components: readonly Component[];
  /** Folder holding manifest.json and the model files (default: the project's models/). */
  modelsDir?: string;
  /**
   * The layout ffmpeg hands frames over in: yuv420p (default, half the bytes and no conversion of frames that
   * are not detected) or rgb24, which bench/pipeline.ts `ratio --format rgb24` measures against it.
   */
  frameFormat?: 'rgb24' | 'yuv420p';
  /** The file `config` was read from and how to check another like it (what a config task replaces). */
  configFile?: ConfigFile;
}

/**
 * The core: detectors, outbox, uplink and the cameras, wired camera → ingest → vision → rules → evidence →
 * outbox → uplink; then the components. Each camera's frames pass its motion gate; frames with motion (or due
 * for a refresh) go to one inference queue shared by all cameras, which visits them round-robin with one
 * detector session and drops a camera's oldest frames when it falls behind.
 */
export class Agent {
  private readonly cameras = new Map<string, CameraPipeline>();
  /** One onnxruntime session per model name, shared by the cameras that use it. */
  private readonly detectors = new Map<string, Detector>();
  private scheduler: InferenceScheduler<Frame> | null = null;
  private outbox: Outbox | null = null;
  private uplink: Uplink | null = null;
  private recorder: EventRecorder | null = null;
  private readonly bus: EventBus;
  private readonly cpus: CpuPinning;
  /** Components started so far, in start order, each with its view of the bus. */
  private readonly running: { component: Component; bus: ScopedBus }[] = [];
  private windowTimer: NodeJS.Timeout | undefined;
  private stopped: Promise<void> | undefined;
  /** What stop() is waiting for right now (see stopPending()). */
  private stopPhase = 'not stopping';
  private readonly startedAt = Date.now();
  private readonly dataDir: string;
  /** The running config: opts.config, with the cameras of the last applied reload. */
  private current: Config;
  /** Reloads run one at a time, in the order asked for. */
  private reloads: Promise<unknown> = Promise.resolve();

  private constructor(private readonly opts: AgentOptions) {
    this.dataDir = resolve(opts.config.gateway.dataDir);
    this.current = opts.config;
    this.bus = new EventBus(opts.log);
    this.cpus = new CpuPinning(opts.log);
  }

  /**
   * Starts the core, then the components. When any part fails, what had started is stopped (components, then
   * the core: no ffmpeg, worker thread, timer or open database is left) and the error is thrown.
   */
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
    await this.openCore();
    for (const cam of this.current.cameras) (await this.openCamera(cam)).start();
    for (const component of this.opts.components) await this.startComponent(component);
    this.uplink?.inboundReady();
    const models = [...this.detectors.values()].map((d) => d.model.name);
    const components = this.running.map((r) => r.component.name);
    this.opts.log.info({ cameras: this.cameras.size, models, components, dataDir: this.dataDir }, 'agent started');
  }

  /** Data folder, detectors (and the CPU split for them), outbox, uplink, recorder and the inference queue. */
  private async openCore(): Promise<void> {
    const { config, log } = this.opts;
    mkdirSync(this.dataDir, { recursive: true, mode: 0o750 });
    const models = new Set(config.cameras.map((c) => c.model ?? config.model.name));
    if (config.model.pinCores) this.cpus.plan(config.model.threads * models.size);
    const cpus = this.cpus.inference;
    for (const name of models) await this.openModel(name, cpus);
    // Before any ffmpeg starts: the processes the main thread spawns inherit its CPUs.
    this.cpus.pinOthers();
    // Applied by the first model session; only its absence is news.
    const malloc = tuneMalloc();
    if (!malloc.tuned)
      log.warn(
        { reason: malloc.reason },
        `malloc thresholds not set: ${malloc.reason}; detection runs 30–50 % slower in its worker thread`,
      );
    const vision = nativeVision();
    if (!vision.ok)
      log.warn(
        { reason: vision.reason },
        `frames are resized and outputs scanned in JavaScript: ${vision.reason}; about 2 ms more per detected frame`,
      );
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
    this.uplink.on('received', (topic, filter, payload) => {
      if (this.bus.listening('message.received')) this.bus.emit('message.received', { topic, filter, payload });
    });
    this.uplink.start();
    this.recorder = new EventRecorder({ config, dataDir: this.dataDir, outbox: this.outbox, uplink: this.uplink, log, bus: this.bus });
    this.scheduler = new InferenceScheduler<Frame>({
      depth: config.model.queueDepth,
      // Three in flight: frames are preprocessed on this thread while the worker runs the model, and the worker
      // keeps one input in reserve, so a pause of this thread (a garbage collection, a burst of pipe reads) does
      // not leave it idle (docs/decisions/0017-detector-in-a-worker-thread.md). It answers in call order: each
      // camera's rules see time order.
      concurrency: 3,
      run: (cameraId, frame) => this.cameras.get(cameraId)!.detect(frame),
      onError: (cameraId, err) => log.error({ camera: cameraId, err }, `camera ${cameraId}: detection failed`),
      onDrop: (cameraId, frame) => this.cameras.get(cameraId)!.drop(frame),
    });
    // The rates of every camera cover the same window; the status file is written right after each sample.
    this.windowTimer = setInterval(() => this.sampleCameras(), STATUS_INTERVAL_MS);
    this.windowTimer.unref();
  }

  /** Opens the detector session of model `name` (undefined: the manifest's default) once; cameras share it. */
  private async openModel(name: string | undefined, cpus = this.cpus.inference): Promise<Detector> {
    const key = name ?? '';
    const open = this.detectors.get(key);
    if (open) return open;
    const { config, log } = this.opts;
    const detector = await openDetector({
      model: name,
      modelsDir: this.opts.modelsDir,
      threads: config.model.threads,
      scoreThreshold: config.model.scoreThreshold,
      onWorkerExit: (err) =>
        log.error({ model: name, err: err.message }, `${err.message}; frames in flight were lost, a new worker starts with the next frame`),
      ...(cpus && { cpus }),
    });
    this.detectors.set(key, detector);
    return detector;
  }

  /** Sets up camera `cam` (its rules, scene references, frame source) and adds it; start() lets its frames flow. */
  private async openCamera(cam: CameraConfig): Promise<CameraPipeline> {
    const pipe = await this.buildCamera(cam);
    this.cameras.set(cam.id, pipe);
    return pipe;
  }

  /** The pipeline of camera `cam`, not added or started: a bad view or scene reference throws here. */
  private async buildCamera(cam: CameraConfig): Promise<CameraPipeline> {
    const { log, frameFormat } = this.opts;
    return CameraPipeline.open({
      config: cam,
      detector: await this.openModel(cam.model ?? this.current.model.name),
      scheduler: this.scheduler!,
      recorder: this.recorder!,
      bus: this.bus,
      log,
      ...(frameFormat && { frameFormat }),
    });
  }

  private async startComponent(component: Component): Promise<void> {
    const bus = this.bus.scoped(component.name);
    const agent = this;
    const ctx: ComponentContext = {
      get config() {
        return agent.current;
      },
      log: this.opts.log.child({ component: component.name }),
      bus,
      outbox: this.outbox!,
      uplink: this.uplink!,
      dataDir: this.dataDir,
      modelsDir: resolve(this.opts.modelsDir ?? defaultModelsDir()),
      version,
      startedAt: this.startedAt,
      cameras: {
        get ids() {
          return [...agent.cameras.keys()];
        },
        status: () => this.cameraStatus(),
        setView: (id, view) => this.camera(id).setView(view),
        pause: (id, reason) => this.camera(id).pause(reason),
        resume: (id) => this.camera(id).resume(),
        tapFrames: (id, read) => this.camera(id).tapFrames(read),
        viewState: (id) => this.camera(id).viewState,
      },
      reload: (load) => this.reload(load),
      configFile: this.opts.configFile,
      allowedCpus: this.cpus.allowed,
    };
    try {
      await component.start(ctx);
    } catch (err) {
      bus.dispose();
      throw new Error(`component ${component.name} failed to start: ${(err as Error).message}; the agent did not start`, { cause: err });
    }
    this.running.push({ component, bus });
  }

  private sampleCameras(): void {
    const now = Date.now();
    for (const c of this.cameras.values()) c.sample(now);
    if (this.bus.listening('cameras.sampled')) this.bus.emit('cameras.sampled', { at: now, cameras: this.cameraStatus() });
  }

  /** While model.pinCores holds the inference on CPUs of its own: those, and the CPUs of everything else. */
  get cpuSplit(): { inference: number[]; others: number[] } | undefined {
    return this.cpus.split;
  }

  /** The running pipeline of camera `id`; throws naming the id and the cameras there are. */
  camera(id: string): CameraPipeline {
    const pipe = this.cameras.get(id);
    if (!pipe) throw new Error(`no camera '${id}' in this agent (cameras: ${[...this.cameras.keys()].join(', ') || 'none'})`);
    return pipe;
  }

  /**
   * Reloads the config (SIGHUP): `load` reads and checks the new one; a load that throws refuses the reload and
   * the running config stays. Otherwise the cameras that are new or changed are set up first (one that cannot be,
   * e.g. a missing scene reference, refuses the whole reload, the running cameras untouched); then the changed and
   * removed ones stop, their open events ending with `config_changed`, and the new ones start. Unchanged cameras
   * run on, open events and all. Other sections that changed are reported in `needsRestart` and keep their
   * running values. Every outcome is logged and sent on the bus (`config.reloaded`: health, metrics, systemd).
   * Reloads run one at a time.
   */
  reload(load: () => Config | Promise<Config>): Promise<ReloadResult> {
    const run = this.reloads.then(() => this.applyReload(load));
    this.reloads = run.catch(() => undefined);
    return run;
  }

  private async applyReload(load: () => Config | Promise<Config>): Promise<ReloadResult> {
    const { log } = this.opts;
    const started = Date.now();
    const result: ReloadResult = {
      at: new Date(started).toISOString(),
      result: 'refused',
      added: [],
      removed: [],
      restarted: [],
      unchanged: [...this.cameras.keys()],
      needsRestart: [],
      durationMs: 0,
    };
    const finish = (): ReloadResult => {
      result.durationMs = Date.now() - started;
      const level = result.result === 'refused' ? 'error' : result.needsRestart.length ? 'warn' : 'info';
      log[level]({ reload: result }, reloadSummary(result));
      if (this.bus.listening('config.reloaded')) this.bus.emit('config.reloaded', result);
      return result;
    };
    if (this.bus.listening('config.reloading')) this.bus.emit('config.reloading', { at: started });
    if (this.stopped) {
      result.error = 'the agent is stopping';
      return finish();
    }
    let next: Config;
    try {
      next = await load();
    } catch (err) {
      result.error = (err as Error).message;
      return finish();
    }
    const diff = diffConfig(this.current, next);
    const built = new Map<string, CameraPipeline>();
    for (const cam of [...diff.changed, ...diff.added]) {
      try {
        built.set(cam.id, await this.buildCamera(cam));
      } catch (err) {
        result.error = `camera ${cam.id}: ${(err as Error).message}`;
        return finish();
      }
    }
    this.stopPhase = 'reload: stopping changed and removed cameras';
    await Promise.all([...diff.removed, ...diff.changed.map((c) => c.id)].map((id) => this.closeCamera(id, 'config_changed')));
    // In the new config's order, which status and health list them in.
    const running = new Map(this.cameras);
    this.cameras.clear();
    for (const cam of next.cameras) this.cameras.set(cam.id, built.get(cam.id) ?? running.get(cam.id)!);
    this.current = { ...this.current, cameras: next.cameras };
    for (const pipe of built.values()) pipe.start();
    this.stopPhase = 'not stopping';
    Object.assign(result, {
      result: 'applied',
      added: diff.added.map((c) => c.id),
      removed: diff.removed,
      restarted: diff.changed.map((c) => c.id),
      unchanged: diff.unchanged,
      needsRestart: diff.needsRestart,
    });
    return finish();
  }

  /**
   * Stops one camera for good (a reload changed or removed it): no new frames, its queued frames dropped, running
   * detections and event writes finished, open events ended with `reason`; then it leaves the agent.
   */
  private async closeCamera(id: string, reason: 'config_changed'): Promise<void> {
    const pipe = this.camera(id);
    await pipe.stop();
    await this.scheduler?.removeLane(id);
    await pipe.drained();
    await pipe.endOpenEvents(reason);
    this.cameras.delete(id);
  }

  /** Per-camera state and rates over the last status interval (`edgepatrol status`, health). */
  cameraStatus(): CameraStatus[] {
    return [...this.cameras.values()].map((c) => c.status());
  }

  stats(): { cameras: CameraStatus[]; outbox: ReturnType<Outbox['stats']> | null } {
    return { cameras: this.cameraStatus(), outbox: this.outbox?.stats() ?? null };
  }

  /**
   * Stops the components (last started first), then the frame sources; lets running event writes finish, says
   * offline on the broker, closes the store. Calling it again returns the same promise.
   */
  stop(): Promise<void> {
    return (this.stopped ??= this.close());
  }

  /** What a running stop() is waiting for, e.g. "uplink (offline message and PUBACKs)"; run logs it when its deadline passes. */
  stopPending(): string {
    return this.stopPhase;
  }

  private async close(): Promise<void> {
    const { log } = this.opts;
    // A reload in progress finishes first (a later one sees `stopped` and is refused): cameras are not swapped
    // under the stop.
    this.stopPhase = 'a config reload';
    await this.reloads;
    for (const { component, bus } of this.running.reverse()) {
      this.stopPhase = `component ${component.name}`;
      try {
        await component.stop();
      } catch (err) {
        log.error({ component: component.name, err }, `component ${component.name} did not stop cleanly: ${(err as Error).message}`);
      } finally {
        bus.dispose();
      }
    }
    this.running.length = 0;
    clearInterval(this.windowTimer);
    const cameras = [...this.cameras.values()];
    this.stopPhase = 'frame sources';
    await Promise.all(cameras.map((c) => c.stop()));
    this.stopPhase = 'in-flight inference';
    await this.scheduler?.close();
    this.stopPhase = 'event writes';
    await Promise.all(cameras.map((c) => c.drained()));
    // Open violations end with endReason agent_stopped, so the platform is not left waiting for an update.
    this.stopPhase = 'ending open events';
    for (const c of cameras) await c.endOpenEvents();
    this.stopPhase = 'uplink (availability offline and PUBACKs)';
    await this.uplink?.stop();
    this.stopPhase = 'closing the outbox';
    this.outbox?.close();
    this.stopPhase = 'closing the detectors';
    for (const d of this.detectors.values()) await d.close();
    this.cpus.release();
    this.stopPhase = 'stopped';
    log.info('agent stopped');
  }
}
