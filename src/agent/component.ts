import type { Logger } from 'pino';
import type { Config } from '../config/index.js';
import type { Outbox } from '../outbox/index.js';
import type { PauseReason, ViewInput } from '../rules/index.js';
import type { Uplink } from '../uplink/index.js';
import type { Frame } from '../vision/types.js';
import type { ScopedBus } from './bus.js';
import type { ReloadResult } from './reload.js';
import type { CameraStatus } from './stats.js';

/**
 * A capability of the agent beside the frame path (health, the status file, evidence retention, …): it starts
 * once the core runs (outbox, uplink, cameras) and stops before the core does, so it may still publish while
 * stopping. The list the agent runs is src/components/index.ts; README "Layout" says where a new one goes.
 */
export interface Component {
  /** Names the component in logs and in the error when its start fails. */
  readonly name: string;
  /** Sets up timers and bus listeners. A start that throws must undo what it made itself: stop() is not called then. */
  start(ctx: ComponentContext): Promise<void> | void;
  /** Undoes start(). Its bus listeners are removed after it returns, whether it removed them or not. */
  stop(): Promise<void> | void;
}

/**
 * The cameras as a component sees them: their status, and control of one running camera by id. An unknown id
 * throws an Error naming it.
 */
export interface Cameras {
  /** The running cameras' ids (a reload may add or remove some). */
  readonly ids: readonly string[];
  /** Per-camera state, rates over the last status window, and running totals (Agent.cameraStatus()). */
  status(): CameraStatus[];
  /** Swaps the camera's view (CameraPipeline.setView): open events end with `view_changed`; a bad view throws. */
  setView(cameraId: string, view: ViewInput): Promise<void>;
  /** Stops evaluating the camera until resume (CameraPipeline.pause); open events end with `reason`. */
  pause(cameraId: string, reason: PauseReason): Promise<void>;
  resume(cameraId: string): void;
  /** Every frame the camera's stream delivers (CameraPipeline.tapFrames); valid only during the call. */
  tapFrames(cameraId: string, read: (frame: Frame) => void): () => void;
  /** The camera's view id, pause reason and open violations (CameraPipeline.viewState). */
  viewState(cameraId: string): { view: string; paused?: PauseReason; open: Array<{ eventId: string; zoneId: string; ruleId: string }> };
}

/** The config file the agent runs from, for a component that replaces it (the config task). */
export interface ConfigFile {
  /** The file, absolute. */
  readonly path: string;
  /**
   * Reads and checks a config file as the agent's own file is checked at start and on SIGHUP (schema, file mode,
   * TLS files, the models' classes, the command line's overrides); throws ConfigError listing the problems.
   */
  read(file: string): Config;
}

/** What a component gets from the core. */
export interface ComponentContext {
  /** The running config: after a reload (`config.reloaded` on the bus) its cameras are the new ones. */
  readonly config: Config;
  /** A child logger with `component: <name>`. */
  log: Logger;
  /** The agent's event bus; listeners added here carry the component's name and go when it stops. */
  bus: ScopedBus;
  outbox: Outbox;
  uplink: Uplink;
  /** gateway.dataDir, resolved. */
  dataDir: string;
  /** The folder of models/manifest.json the detectors were opened from, resolved. */
  modelsDir: string;
  version: string;
  /** When the agent started (ms since the epoch). */
  startedAt: number;
  cameras: Cameras;
  /** Agent.reload: applies the config `load` returns as SIGHUP does, one reload at a time. */
  reload(load: () => Config | Promise<Config>): Promise<ReloadResult>;
  /** The config file the agent was started from; undefined when it was given a config object only (tests, benches). */
  configFile: ConfigFile | undefined;
  /**
   * The CPUs the process had before the agent pinned its threads (model.pinCores); undefined when they were
   * not read. The process's own CPU count is too low once it is pinned.
   */
  allowedCpus: readonly number[] | undefined;
}
