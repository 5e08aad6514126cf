import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { StreamState } from '../ingest/index.js';

/** Running totals of one camera's frame path; the agent increments them, `StatsWindow` turns them into rates. */
export interface CameraCounters {
  /** Frames decoded and delivered by ffmpeg. */
  framesIn: number;
  /** Frames the motion gate found motion on. */
  motionFrames: number;
  /** Frames handed to the inference queue (motion or refresh). */
  queued: number;
  /** Frames the detector ran on. */
  detected: number;
  /** Frames lost before detection: replaced in ingest's slot, or pushed out of the inference queue. */
  skipped: number;
  /** Sum of detector times, ms. */
  inferenceMs: number;
  /** Events stored. */
  events: number;
}

/** One camera in `edgepatrol status` and the health topic. Rates are over the last window. */
export interface CameraStatus {
  id: string;
  state: StreamState;
  reason?: string;
  /** The id of the view the camera's rules run on, when it is not the config's own (CameraPipeline.setView). */
  view?: string;
  /** Why the camera's rules are paused (CameraPipeline.pause); absent while they run. */
  paused?: string;
  /** When the camera entered its state (ISO time). */
  since: string;
  decodeFps: number;
  detectFps: number;
  skippedFps: number;
  /** Fraction of decoded frames with motion. */
  motionRatio: number;
  /** Mean detector time per frame, ms. */
  inferenceMs: number;
  totals: CameraCounters;
}

export interface AgentStatus {
  schema: 1;
  gatewayId: string;
  pid: number;
  version: string;
  startedAt: string;
  writtenAt: string;
  /** The window the rates cover, seconds. */
  windowSeconds: number;
  cameras: CameraStatus[];
  /** The outbox's own stats (src/outbox), null before it is open. */
  outbox: unknown;
}

export const STATUS_FILE = 'status.json';
/**
 * How often the agent samples each camera's rates (rates cover this interval) and the status-file component
 * (src/components/status.ts) rewrites {dataDir}/status.json, read by `edgepatrol status`.
 */
export const STATUS_INTERVAL_MS = 5000;

export function emptyCounters(): CameraCounters {
  return { framesIn: 0, motionFrames: 0, queued: 0, detected: 0, skipped: 0, inferenceMs: 0, events: 0 };
}

const round = (x: number, digits: number): number => Math.round(x * 10 ** digits) / 10 ** digits;

/** Rates of one camera between the last two samples of its counters. */
export class StatsWindow {
  private prev: CameraCounters = emptyCounters();
  private prevAt: number;
  private rates = { decodeFps: 0, detectFps: 0, skippedFps: 0, motionRatio: 0, inferenceMs: 0 };

  constructor(now: number) {
    this.prevAt = now;
  }

  /** Takes a sample; the rates then cover the time since the previous one. */
  sample(c: CameraCounters, now: number): void {
    const dt = (now - this.prevAt) / 1000;
    if (dt <= 0) return;
    const d = (k: keyof CameraCounters): number => c[k] - this.prev[k];
    this.rates = {
      decodeFps: round(d('framesIn') / dt, 2),
      detectFps: round(d('detected') / dt, 2),
      skippedFps: round(d('skipped') / dt, 2),
      motionRatio: d('framesIn') > 0 ? round(d('motionFrames') / d('framesIn'), 3) : 0,
      inferenceMs: d('detected') > 0 ? round(d('inferenceMs') / d('detected'), 1) : 0,
    };
    this.prev = { ...c };
    this.prevAt = now;
  }

  get current(): Omit<CameraStatus, 'id' | 'state' | 'reason' | 'since' | 'totals'> {
    return { ...this.rates };
  }
}

/** Writes the status file atomically (temporary file, then rename), so a reader never sees half of it. */
export function writeStatus(dataDir: string, status: AgentStatus): void {
  const file = join(dataDir, STATUS_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(status, null, 2)}\n`, { mode: 0o640 });
  renameSync(tmp, file);
}

export function readStatus(dataDir: string): AgentStatus {
  return JSON.parse(readFileSync(join(dataDir, STATUS_FILE), 'utf8')) as AgentStatus;
}
