import type { Component, ComponentContext } from '../agent/index.js';
import { HealthSampler } from '../health/index.js';
import type { HealthPayload } from '../uplink/health-payload.js';

/**
 * The retained health message on `{prefix}/{gatewayId}/health` every health.intervalSeconds: gateway resources,
 * the disk and its evidence floor, outbox depth and drops, the config's reloads, each camera's state and totals.
 * A reload's outcome is published at once, not at the next interval: the operator who sent SIGHUP is waiting.
 */
export class HealthPublisher implements Component {
  readonly name = 'health';
  private timer: NodeJS.Timeout | undefined;

  private readonly reloads: HealthPayload['config'] = { reloads: { applied: 0, refused: 0 }, lastReload: null };

  start(ctx: ComponentContext): void {
    const { config, allowedCpus, version, dataDir, bus } = ctx;
    const cores = allowedCpus && { cores: allowedCpus.length };
    const sampler = new HealthSampler({
      gatewayId: config.gateway.id,
      version,
      dataDir,
      diskFloorBytes: config.evidence.minFreeBytes,
      ...cores,
    });
    this.timer = setInterval(() => publish(ctx, sampler, this.reloads), config.health.intervalSeconds * 1000);
    this.timer.unref();
    bus.on('config.reloaded', (r) => {
      this.reloads.reloads[r.result]++;
      this.reloads.lastReload = { ...r };
      publish(ctx, sampler, this.reloads);
    });
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

function publish({ outbox, uplink, cameras, log }: ComponentContext, sampler: HealthSampler, config: HealthPayload['config']): void {
  try {
    const list = cameras.status().map(({ totals, reason, ...rest }) => ({
      ...rest,
      ...(reason !== undefined && { reason }),
      framesIn: totals.framesIn,
      framesDetected: totals.detected,
      framesSkipped: totals.skipped,
      events: totals.events,
    }));
    uplink.publishHealth(sampler.sample({ outbox, uplink: uplink.status(), cameras: list, config }));
  } catch (err) {
    log.warn({ err }, `health not published: ${(err as Error).message}`);
  }
}
