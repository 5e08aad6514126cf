import type { Component, ComponentContext } from '../agent/index.js';
import { HealthSampler } from '../health/index.js';

/**
 * The retained health message on `{prefix}/{gatewayId}/health` every health.intervalSeconds: gateway resources,
 * outbox depth and drops, each camera's state and totals.
 */
export class HealthPublisher implements Component {
  readonly name = 'health';
  private timer: NodeJS.Timeout | undefined;

  start(ctx: ComponentContext): void {
    const { config, allowedCpus, version, dataDir } = ctx;
    const cores = allowedCpus && { cores: allowedCpus.length };
    const sampler = new HealthSampler({ gatewayId: config.gateway.id, version, dataDir, ...cores });
    this.timer = setInterval(() => publish(ctx, sampler), config.health.intervalSeconds * 1000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

function publish({ outbox, uplink, cameras, log }: ComponentContext, sampler: HealthSampler): void {
  try {
    const list = cameras.status().map(({ totals, reason, ...rest }) => ({
      ...rest,
      ...(reason !== undefined && { reason }),
      framesIn: totals.framesIn,
      framesDetected: totals.detected,
      framesSkipped: totals.skipped,
      events: totals.events,
    }));
    uplink.publishHealth(sampler.sample({ outbox, uplink: uplink.status(), cameras: list }));
  } catch (err) {
    log.warn({ err }, `health not published: ${(err as Error).message}`);
  }
}
