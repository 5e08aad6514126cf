import { readdirSync, readFileSync, statfsSync } from 'node:fs';
import { availableParallelism, freemem, loadavg, totalmem } from 'node:os';
import type { Outbox } from '../outbox/index.js';
import type { UplinkStatus } from '../uplink/index.js';
import { HEALTH_SCHEMA_ID, type HealthPayload } from '../uplink/health-payload.js';

export interface HealthInputs {
  outbox: Outbox;
  uplink: UplinkStatus;
  /** Per-camera state and counters, as the agent keeps them. */
  cameras: HealthPayload['cameras'];
  /** The reloads of the config so far. */
  config: HealthPayload['config'];
}

export interface HealthSamplerOptions {
  gatewayId: string;
  version: string;
  /** The data folder: its file system is the one reported as disk. */
  dataDir: string;
  /** Where thermal zones live (default /sys/class/thermal); tests point it elsewhere. */
  thermalDir?: string;
  /**
   * The CPUs the agent may use. Default: those of the thread that builds the sampler, which is too few once the
   * agent has pinned its threads (model.pinCores), so the agent passes the count it had before.
   */
  cores?: number;
  /** evidence.minFreeBytes: below it the recorder writes no evidence (0: no floor). */
  diskFloorBytes?: number;
}

/**
 * Builds health snapshots. Keeps the previous CPU sample, so processPercent is the agent's CPU use between two
 * snapshots rather than since it started.
 */
export class HealthSampler {
  private lastCpu = process.cpuUsage();
  private lastAt = performance.now();

  private readonly cores: number;

  constructor(private readonly opts: HealthSamplerOptions) {
    this.cores = opts.cores ?? availableParallelism();
  }

  sample(inputs: HealthInputs): HealthPayload {
    const cpu = process.cpuUsage();
    const at = performance.now();
    const usedMs = (cpu.user - this.lastCpu.user + cpu.system - this.lastCpu.system) / 1000;
    const processPercent = at > this.lastAt ? Math.round((usedMs / (at - this.lastAt)) * 1000) / 10 : 0;
    this.lastCpu = cpu;
    this.lastAt = at;
    const o = inputs.outbox.stats();
    return {
      schema: HEALTH_SCHEMA_ID,
      gatewayId: this.opts.gatewayId,
      at: new Date().toISOString(),
      version: this.opts.version,
      uptimeSeconds: Math.round(process.uptime()),
      cpu: { cores: this.cores, load1: Math.round((loadavg()[0] ?? 0) * 100) / 100, processPercent },
      mem: { totalBytes: totalmem(), availableBytes: availableMemory(), processRssBytes: process.memoryUsage.rss() },
      tempCelsius: hottestZone(this.opts.thermalDir ?? '/sys/class/thermal'),
      disk: diskOf(this.opts.dataDir, this.opts.diskFloorBytes ?? 0),
      outbox: {
        pending: o.pending,
        sent: o.sent,
        acked: o.acked,
        confirmed: o.confirmed,
        bytes: o.bytes,
        maxBytes: o.maxBytes,
        oldestUndeliveredAt: o.oldestPendingTs === null ? null : new Date(o.oldestPendingTs).toISOString(),
        lastSeq: o.lastSeq,
        dropped: o.dropped,
        drops: inputs.outbox.drops().map(({ what, reason, priority, count }) => ({ what, reason, priority, count })),
      },
      uplink: { connected: inputs.uplink.connected, inFlight: inputs.uplink.inFlight, reconnectAttempts: inputs.uplink.reconnectAttempts },
      config: inputs.config,
      cameras: inputs.cameras,
    };
  }
}

/** MemAvailable from /proc/meminfo (what can be used without swapping); os.freemem() where it is missing. */
function availableMemory(): number {
  try {
    const kb = /^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1];
    if (kb) return Number(kb) * 1024;
  } catch {
    // Not Linux, or /proc not mounted: fall through.
  }
  return freemem();
}

/** The highest reading of /sys/class/thermal/thermal_zone*\/temp (millidegrees), null when none is readable (VMs, containers). */
export function hottestZone(dir: string): number | null {
  let zones: string[];
  try {
    zones = readdirSync(dir).filter((z) => z.startsWith('thermal_zone'));
  } catch {
    return null;
  }
  let hottest: number | null = null;
  for (const zone of zones) {
    try {
      const milli = Number(readFileSync(`${dir}/${zone}/temp`, 'utf8').trim());
      if (Number.isFinite(milli)) hottest = Math.max(hottest ?? -Infinity, milli / 1000);
    } catch {
      // A zone whose sensor cannot be read right now (some report EIO while suspended): skip it.
    }
  }
  return hottest;
}

function diskOf(path: string, floorBytes: number): HealthPayload['disk'] {
  try {
    const s = statfsSync(path);
    const freeBytes = s.bavail * s.bsize;
    return { path, totalBytes: s.blocks * s.bsize, freeBytes, floorBytes, evidencePaused: floorBytes > 0 && freeBytes < floorBytes };
  } catch {
    return null;
  }
}
