import { Cron } from 'croner';
import type { Component, ComponentContext } from '../agent/index.js';
import type { CameraConfig, PatrolConfig } from '../config/index.js';
import { PtzError, type PtzHub, runRound } from '../ptz/index.js';
import { ptzContext } from './ptz-tasks.js';

/**
 * Patrol rounds on their schedules (cameras[].patrols[].schedule, cron in the camera's time zone). A round whose
 * time comes while the camera is busy (another round, a verification, a person steering it) is skipped, not
 * queued: the next one comes soon enough, and a queue of rounds behind a long manual session would only run
 * late, one after another. Each round is logged with its stops; its events go out as any others.
 */
export class Patrols implements Component {
  readonly name = 'patrols';
  private ctx: ComponentContext | undefined;
  private readonly jobs = new Map<string, Cron[]>();
  private readonly running = new Set<Promise<void>>();
  private readonly controller = new AbortController();

  constructor(private readonly ptz: PtzHub) {}

  start(ctx: ComponentContext): void {
    this.ctx = ctx;
    this.ptz.start(ctx.config.cameras, ctx.cameras, ctx.log);
    for (const cam of ctx.config.cameras) this.schedule(cam);
    ctx.bus.on('config.reloaded', (result) => {
      this.ptz.reloaded(result, ctx.config.cameras);
      if (result.result !== 'applied') return;
      for (const id of [...result.restarted, ...result.removed]) this.unschedule(id);
      for (const id of [...result.restarted, ...result.added]) {
        const cam = ctx.config.cameras.find((c) => c.id === id);
        if (cam) this.schedule(cam);
      }
    });
  }

  async stop(): Promise<void> {
    for (const id of [...this.jobs.keys()]) this.unschedule(id);
    this.controller.abort(new PtzError('stopped', 'the agent is stopping'));
    await Promise.allSettled([...this.running]);
    this.ptz.stop();
  }

  private schedule(cam: CameraConfig): void {
    const ctx = this.ctx!;
    const jobs: Cron[] = [];
    for (const round of cam.patrols ?? []) {
      if (round.schedule === undefined) continue;
      const timezone = cam.timezone ?? ctx.config.gateway.timezone;
      const job = new Cron(round.schedule, { timezone, unref: true, protect: true }, () => this.fire(cam, round));
      jobs.push(job);
      ctx.log.info(
        { camera: cam.id, round: round.id, schedule: round.schedule, next: job.nextRun()?.toISOString() },
        `camera ${cam.id}: patrol ${round.id} scheduled (${round.schedule}, ${timezone})`,
      );
    }
    if (jobs.length > 0) this.jobs.set(cam.id, jobs);
  }

  private unschedule(cameraId: string): void {
    for (const job of this.jobs.get(cameraId) ?? []) job.stop();
    this.jobs.delete(cameraId);
  }

  private fire(cam: CameraConfig, round: PatrolConfig): void {
    const run = this.runScheduled(cam, round).finally(() => this.running.delete(run));
    this.running.add(run);
  }

  private async runScheduled(cam: CameraConfig, round: PatrolConfig): Promise<void> {
    const ctx = this.ctx!;
    const log = ctx.log.child({ camera: cam.id, round: round.id });
    try {
      const ptz = await this.ptz.get(cam.id);
      if (!ptz) return;
      const lease = await ptz.acquire('patrol', `schedule ${round.id}`, { wait: false, signal: this.controller.signal });
      try {
        const result = await runRound({
          ptz,
          lease,
          round,
          ...ptzContext(ctx),
          evidenceName: `patrol-${cam.id}-${round.id}`,
          signal: this.controller.signal,
        });
        const events = result.stops.reduce((n, s) => n + s.events.length, 0);
        log.info({ result }, `camera ${cam.id}: patrol ${round.id} done: ${result.stops.length} stops, ${events} events`);
      } finally {
        lease.release();
      }
    } catch (err) {
      const reason = err instanceof PtzError ? err.reason : 'error';
      const level = reason === 'busy' || reason === 'stopped' ? 'info' : 'warn';
      log[level](
        { reason, err: (err as Error).message },
        `camera ${cam.id}: patrol ${round.id} skipped or cut short (${reason}): ${(err as Error).message}`,
      );
    }
  }
}
