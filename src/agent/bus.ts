import type { Logger } from 'pino';
import type { StreamState } from '../ingest/index.js';
import type { RuleHit } from '../rules/index.js';
import type { RequestErrorCode } from '../uplink/index.js';
import type { ReloadResult } from './reload.js';
import type { CameraStatus } from './stats.js';

/**
 * What crosses stages of the agent, by event name. The frame path itself stays direct calls; these are its
 * edges, for components (src/components/) to follow without the core knowing them.
 */
export interface AgentEvents {
  /** A camera's frame source changed state (or its reason): connecting, streaming, stalled, backoff, failed, ended. */
  'camera.state': { cameraId: string; state: StreamState; reason?: string; since: number };
  /**
   * The detector ran on a frame of the camera; `ms` is the worker's own time on it (preprocess, inference,
   * postprocess), as counted in CameraCounters.inferenceMs. Emitted only while someone listens (metrics).
   */
  'frame.detected': { cameraId: string; ms: number };
  /** A rule produced a message of a violation on a detected frame; its event is stored next (or fails to be). */
  'rule.hit': { cameraId: string; hit: RuleHit };
  /** An event message committed to the outbox: it will be published. */
  'event.stored': { cameraId: string; eventId: string; messageId: string; type: string; state: RuleHit['state']; seq: number };
  /** The per-camera rates were sampled (every STATUS_INTERVAL_MS): `cameras` is cameraStatus() right after. */
  'cameras.sampled': { at: number; cameras: CameraStatus[] };
  /** A message arrived on a topic subscribed with uplink.subscribe and passed its schema (`payload`: parsed). */
  'message.received': { topic: string; filter: string; payload: unknown };
  /**
   * A request on {prefix}/{gw}/request/{verb} was answered (src/components/requests.ts): `verb` is one the gateway
   * knows or `other`, so a flood of made-up verbs cannot grow the metrics' label sets; `status` is ok or the error code.
   */
  'request.answered': { verb: string; status: 'ok' | RequestErrorCode; ms: number };
  /** A reload (SIGHUP) began: the new config is being read and checked; cameras may restart next. */
  'config.reloading': { at: number };
  /** A reload ended: applied (with what changed) or refused (the running config stays). */
  'config.reloaded': ReloadResult;
}

export type Listener<P> = (payload: P) => void | Promise<void>;

interface Entry {
  owner: string;
  listener: Listener<never>;
}

/**
 * A typed publish/subscribe bus. A listener that throws (or whose promise rejects) is logged with its owner and
 * the event, and never reaches the emitter or the other listeners: a broken component must not stop frames.
 */
export class EventBus<Events extends object = AgentEvents> {
  private readonly listeners = new Map<keyof Events, Set<Entry>>();

  constructor(private readonly log: Logger) {}

  /** Calls `listener` on each `event` until the returned function is called. `owner` names it in error logs. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>, owner = listener.name || 'anonymous'): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    const entry: Entry = { owner, listener: listener as Listener<never> };
    set.add(entry);
    return () => {
      set.delete(entry);
    };
  }

  /** Whether anyone listens to `event`: the frame path asks before it builds a payload. */
  listening(event: keyof Events): boolean {
    return (this.listeners.get(event)?.size ?? 0) > 0;
  }

  emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const entry of set) {
      try {
        const r = (entry.listener as Listener<Events[K]>)(payload);
        if (r && typeof r.then === 'function') r.then(undefined, (err: unknown) => this.failed(entry.owner, event, err));
      } catch (err) {
        this.failed(entry.owner, event, err);
      }
    }
  }

  /** The bus as one component sees it: its listeners carry its name, and dispose() removes those it left. */
  scoped(owner: string): ScopedBus<Events> {
    const offs = new Set<() => void>();
    return {
      on: (event, listener) => {
        const off = this.on(event, listener, owner);
        const once = (): void => {
          offs.delete(once);
          off();
        };
        offs.add(once);
        return once;
      },
      emit: (event, payload) => this.emit(event, payload),
      listening: (event) => this.listening(event),
      dispose: () => {
        for (const off of [...offs]) off();
      },
    };
  }

  private failed(owner: string, event: keyof Events, err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    const what = `${owner}: listener of ${String(event)} failed: ${message}; the other listeners still ran`;
    this.log.error({ component: owner, event, err }, what);
  }
}

export interface ScopedBus<Events extends object = AgentEvents> {
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void;
  emit<K extends keyof Events>(event: K, payload: Events[K]): void;
  listening(event: keyof Events): boolean;
  /** Removes every listener added through this view. */
  dispose(): void;
}
