import type { Component, ComponentContext } from '../agent/index.js';
import { STATUS_INTERVAL_MS, writeStatus, type AgentStatus } from '../agent/stats.js';

/**
 * {dataDir}/status.json, what `edgepatrol status` reads: rewritten each time the agent samples its cameras'
 * rates (every STATUS_INTERVAL_MS), so the rates in the file cover the window that just closed.
 */
export class StatusFile implements Component {
  readonly name = 'status-file';

  start(ctx: ComponentContext): void {
    ctx.bus.on('cameras.sampled', ({ at, cameras }) => {
      const status: AgentStatus = {
        schema: 1,
        gatewayId: ctx.config.gateway.id,
        pid: process.pid,
        version: ctx.version,
        startedAt: new Date(ctx.startedAt).toISOString(),
        writtenAt: new Date(at).toISOString(),
        windowSeconds: STATUS_INTERVAL_MS / 1000,
        cameras,
        outbox: ctx.outbox.stats(),
      };
      try {
        writeStatus(ctx.dataDir, status);
      } catch (err) {
        ctx.log.warn({ err, dataDir: ctx.dataDir }, `cannot write the status file in ${ctx.dataDir}: ${(err as Error).message}`);
      }
    });
  }

  /** Its listener goes with it; the last file stays for `edgepatrol status` to report the agent stopped. */
  stop(): void {}
}
