import type { Logger } from 'pino';
import type { CameraConfig } from '../config/index.js';
import { FrameSource, grabFrame, type SourceState, type StreamState } from '../ingest/index.js';
import { remapClasses, type Detector } from '../vision/index.js';
import type { DetectTiming } from '../vision/inference.js';
import { MotionDetector, MotionGate } from '../vision/motion.js';
import type { InferenceScheduler } from '../vision/scheduler.js';
import type { Frame, RgbFrame } from '../vision/types.js';
import { toRgb } from '../vision/yuv.js';
import { CameraRules, cameraWithView, type PauseReason, type RuleHit, type ViewInput } from '../rules/index.js';
import type { EventBus } from './bus.js';
import type { EventRecorder } from './recorder.js';
import { emptyCounters, StatsWindow, type CameraCounters, type CameraStatus } from './stats.js';

export interface CameraPipelineOptions {
  config: CameraConfig;
  /** The camera's model session, shared with every camera naming the same model. */
  detector: Detector;
  /** The inference queue shared by all cameras; the pipeline adds its lane. */
  scheduler: InferenceScheduler<Frame>;
  recorder: EventRecorder;
  bus: EventBus;
  log: Logger;
  /** The layout ffmpeg hands frames over in (AgentOptions.frameFormat). */
  frameFormat?: 'rgb24' | 'yuv420p';
}

/**
 * Everything the agent runs for one camera: frame source → motion gate → the shared inference queue →
 * detector → rules → event recorder, its counters and its state. The agent owns it and closes it.
 * Control of one running camera (pause it, swap its view: rules, zones, masks, scene references) is here, as
 * methods the agent reaches by camera id (ComponentContext.cameras), so the frame path keeps its direct calls.
 */
export class CameraPipeline {
  readonly id: string;
  private readonly source: FrameSource;
  private readonly gate: MotionGate;
  /** The rules' tracker holds objects (seen or coasting): while it does, the gate refreshes detection even without motion. */
  private objectsTracked = false;
  /** The last frame the detector ran on: the evidence of events still open when the agent stops. */
  private lastFrame?: Frame;
  /** Readers still holding a detected frame (the last frame, evidence being drawn); at zero it goes back to the source. */
  private readonly holds = new Map<Uint8Array, number>();
  /** Event writes of one camera run one after another, so events keep the order their frames had. */
  private eventChain: Promise<void> = Promise.resolve();
  private state: StreamState = 'connecting';
  private reason?: string;
  private stateSince = Date.now();
  private readonly counters = emptyCounters();
  private readonly window = new StatsWindow(this.stateSince);
  private stopping = false;
  /** The camera's config under its current view: the zones evidence is drawn with and the masks of the gate. */
  private viewConfig: CameraConfig;
  /** Frames captured before this (a view change, a pause, a resume) belong to another view: they are not evaluated. */
  private viewSince = 0;
  private pauseReason: PauseReason | undefined;
  /** Readers of every frame the stream delivers (tapFrames). */
  private readonly taps = new Set<(frame: Frame) => void>();

  static async open(opts: CameraPipelineOptions): Promise<CameraPipeline> {
    return new CameraPipeline(opts, await CameraRules.open(opts.config));
  }

  private constructor(
    private readonly opts: CameraPipelineOptions,
    private readonly rules: CameraRules,
  ) {
    const cam = opts.config;
    this.id = cam.id;
    this.viewConfig = cam;
    this.source = new FrameSource({
      cameraId: cam.id,
      url: cam.source.url !== undefined ? (cam.source.detectUrl ?? cam.source.url) : cam.source.file,
      loop: 'loop' in cam.source ? Boolean(cam.source.loop) : false,
      fps: cam.detect.fps,
      width: cam.detect.width,
      height: cam.detect.height,
      ...(opts.frameFormat && { pixelFormat: opts.frameFormat }),
      stallSeconds: cam.stallSeconds,
      log: opts.log.child({ camera: cam.id }),
    });
    const m = cam.motion;
    this.gate = new MotionGate(
      m.enabled
        ? new MotionDetector({ threshold: m.threshold, minArea: m.minArea, backgroundSeconds: m.backgroundSeconds, masks: m.masks })
        : null,
      { refreshMs: m.refreshSeconds * 1000 },
    );
  }

  /** Starts the camera's ffmpeg; its frames flow from here on. */
  start(): void {
    const { log, bus, scheduler } = this.opts;
    const id = this.id;
    scheduler.addLane(id);
    this.source.on('state', (s: SourceState) => {
      if (s.state !== this.state) this.stateSince = Date.now();
      this.state = s.state;
      this.reason = s.reason;
      const level = s.state === 'failed' || s.state === 'backoff' ? 'warn' : 'info';
      log[level]({ camera: id, state: s.state, reason: s.reason }, `camera ${id}: ${s.state}${s.reason ? ` (${s.reason})` : ''}`);
      if (bus.listening('camera.state')) {
        bus.emit('camera.state', { cameraId: id, state: s.state, reason: s.reason, since: this.stateSince });
      }
    });
    this.source.on('frame', (frame: Frame) => {
      this.counters.framesIn++;
      for (const tap of this.taps) {
        try {
          tap(frame);
        } catch (err) {
          log.warn({ camera: id, err: (err as Error).message }, `camera ${id}: a frame reader failed: ${(err as Error).message}`);
        }
      }
      if (this.pauseReason !== undefined) return this.source.recycle(frame.data);
      const { decision } = this.gate.decide(frame, this.objectsTracked);
      if (decision === 'motion') this.counters.motionFrames++;
      if (decision === 'skip' || this.stopping) return this.source.recycle(frame.data);
      this.gate.detected(frame.ts);
      this.counters.queued++;
      scheduler.push(id, frame);
    });
    this.source.start();
  }

  /**
   * Runs in the shared inference queue (three frames in flight across all cameras). The frame's buffer goes back
   * to its source for reuse once nothing reads it: the detector has copied it into its input by the time
   * `detect` settles; the rules only read it during `evaluate`; the last frame and each event's evidence hold it.
   */
  async detect(frame: Frame): Promise<void> {
    if (this.stopping) return;
    const { detector, bus, recorder, config } = this.opts;
    const cam = this.viewConfig;
    const timing: DetectTiming = { preprocessMs: 0, inferenceMs: 0, postMs: 0 };
    let detections;
    try {
      detections = remapClasses(await detector.detect(frame, timing), config.classMap);
    } catch (err) {
      this.source.recycle(frame.data);
      throw err;
    }
    // The worker's own time on this frame: wall time here would also count the frame ahead of it in the worker.
    const ms = timing.preprocessMs + timing.inferenceMs + timing.postMs;
    this.counters.inferenceMs += ms;
    this.counters.detected++;
    if (bus.listening('frame.detected')) bus.emit('frame.detected', { cameraId: this.id, ms });
    if (frame.ts < this.viewSince || this.pauseReason !== undefined) return this.source.recycle(frame.data);
    const hits = this.rules.evaluate(frame.ts, frame.width, frame.height, detections, frame);
    this.objectsTracked = this.rules.hasTracks();
    this.hold(frame);
    if (this.lastFrame) this.unhold(this.lastFrame);
    this.lastFrame = frame;
    for (const hit of hits) {
      if (bus.listening('rule.hit')) bus.emit('rule.hit', { cameraId: this.id, hit });
      this.hold(frame);
      this.eventChain = this.eventChain.then(async () => {
        try {
          if (await recorder.record(cam, await this.evidenceFrame(frame), hit, detector.model)) this.counters.events++;
        } finally {
          this.unhold(frame);
        }
      });
    }
  }

  /**
   * Calls `read` with every frame the stream delivers, paused or not, before the frame path sees it (e.g. whether
   * the picture is still after a PTZ move). The frame's buffer is only valid during the call: copy what you keep.
   * Returns the function that stops it.
   */
  tapFrames(read: (frame: Frame) => void): () => void {
    this.taps.add(read);
    return () => this.taps.delete(read);
  }

  /** The id of the view the rules run on (`config`: the camera's own) and why it is paused, if it is. */
  get viewState(): { view: string; paused?: PauseReason; open: Array<{ eventId: string; zoneId: string; ruleId: string }> } {
    return {
      view: this.rules.view.id,
      ...(this.pauseReason !== undefined && { paused: this.pauseReason }),
      open: this.rules.openEvents(),
    };
  }

  /**
   * Swaps the camera's view (zones and their rules, motion masks, scene references) while it runs, e.g. for a PTZ
   * preset. A bad view throws (ConfigError or SceneReferenceError, naming the camera and the problem) and the old
   * view keeps running. Otherwise open violations end with endReason `view_changed`, drawn on the last frame with
   * the old view's zones; frames captured before the change are not evaluated; the motion background restarts.
   */
  async setView(view: ViewInput): Promise<void> {
    const before = this.viewConfig;
    const ts = Date.now();
    const ended = await this.rules.setView(view, ts);
    this.viewSince = ts;
    this.viewConfig = cameraWithView(this.opts.config, this.rules.view);
    this.gate.reset(this.rules.view.motionMasks);
    this.objectsTracked = false;
    await this.recordEnded(before, ended);
  }

  /**
   * Stops evaluating the camera (its stream keeps running, frames are dropped undetected) until resume(): open
   * violations end with endReason `reason` (`camera_paused`, or `view_changed` when the camera is moving away).
   */
  async pause(reason: PauseReason): Promise<void> {
    if (this.pauseReason !== undefined) return;
    const ts = Date.now();
    this.pauseReason = reason;
    this.viewSince = ts;
    this.objectsTracked = false;
    await this.recordEnded(this.viewConfig, this.rules.pause(reason, ts));
  }

  /** Evaluates the camera again from its next frame, with a fresh motion background: the scene may have changed. */
  resume(): void {
    if (this.pauseReason === undefined) return;
    this.rules.resume();
    this.gate.reset();
    this.viewSince = Date.now();
    this.pauseReason = undefined;
  }

  /** Records violations a view change or pause ended, after the camera's earlier event writes, on its last frame. */
  private recordEnded(cam: CameraConfig, ended: RuleHit[]): Promise<void> {
    if (ended.length === 0) return this.eventChain;
    const frame = this.lastFrame;
    const { recorder, detector, log } = this.opts;
    if (!frame) {
      log.warn(
        { camera: this.id, events: ended.map((h) => h.eventId) },
        `camera ${this.id}: ${ended.length} ended events not recorded: no frame for their evidence`,
      );
      return this.eventChain;
    }
    this.hold(frame);
    this.eventChain = this.eventChain.then(async () => {
      try {
        const rgb = toRgb(frame);
        for (const hit of ended) if (await recorder.record(cam, rgb, hit, detector.model)) this.counters.events++;
      } finally {
        this.unhold(frame);
      }
    });
    return this.eventChain;
  }

  /** A frame the inference queue dropped goes back to the source unread. */
  drop(frame: Frame): void {
    this.source.recycle(frame.data);
  }

  private hold(frame: Frame): void {
    this.holds.set(frame.data, (this.holds.get(frame.data) ?? 0) + 1);
  }

  private unhold(frame: Frame): void {
    const n = (this.holds.get(frame.data) ?? 1) - 1;
    if (n > 0) {
      this.holds.set(frame.data, n);
      return;
    }
    this.holds.delete(frame.data);
    this.source.recycle(frame.data);
  }

  /**
   * The frame an event's evidence is drawn on: with a sub-stream for detection, a fresh frame of the main
   * stream (boxes are normalized, so they fit any size); the detect frame, in RGB, when there is none or the grab
   * fails.
   */
  private async evidenceFrame(frame: Frame): Promise<RgbFrame> {
    const src = this.opts.config.source;
    if (src.url === undefined || src.detectUrl === undefined) return toRgb(frame);
    try {
      return await grabFrame({ cameraId: this.id, url: src.url });
    } catch (err) {
      this.opts.log.warn(
        { camera: this.id, err: (err as Error).message },
        `camera ${this.id}: evidence from the detect stream (${(err as Error).message})`,
      );
      return toRgb(frame);
    }
  }

  /** Running totals, with frames skipped in ingest and in the inference queue. */
  totals(): CameraCounters {
    return { ...this.counters, skipped: this.source.stats().dropped + this.opts.scheduler.stats(this.id).dropped };
  }

  /** Closes the rate window: the rates of status() then cover the time since the previous sample. */
  sample(now: number): void {
    this.window.sample(this.totals(), now);
  }

  /** State and rates over the last window (`edgepatrol status`, health). */
  status(): CameraStatus {
    const since = new Date(this.stateSince).toISOString();
    const status: CameraStatus = { id: this.id, state: this.state, since, ...this.window.current, totals: this.totals() };
    if (this.reason !== undefined) status.reason = this.reason;
    if (this.rules.view.id !== 'config') status.view = this.rules.view.id;
    if (this.pauseReason !== undefined) status.paused = this.pauseReason;
    return status;
  }

  /** Stops taking frames (those still queued are not detected) and stops ffmpeg. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.source.stop();
  }

  /** After stop() and the inference queue's close: settles when the camera's running event writes have. */
  drained(): Promise<void> {
    return this.eventChain;
  }

  /**
   * After drained(): ends the camera's open violations (endReason agent_stopped, or config_changed when a reload
   * replaces or removes the camera), with evidence drawn on the last frame its detector saw, so the platform is not
   * left waiting for an update.
   */
  async endOpenEvents(reason: 'agent_stopped' | 'config_changed' = 'agent_stopped'): Promise<void> {
    const { recorder, detector } = this.opts;
    await recorder.recordStop(this.viewConfig, this.rules, this.lastFrame && toRgb(this.lastFrame), detector.model, reason);
  }
}
