import type { Logger } from 'pino';
import type { Cameras, ReloadResult } from '../agent/index.js';
import type { CameraConfig } from '../config/index.js';
import { PtzCamera } from './camera.js';

/** A camera the agent can move: it has onvif and presets. */
export function isPtzCamera(cam: CameraConfig): boolean {
  return cam.onvif !== undefined && (cam.presets?.length ?? 0) > 0;
}

/**
 * The gateway's PTZ cameras, one PtzCamera each, shared by the patrol schedules and the task runner. A camera's
 * mover starts in the background (it sends the camera home first), so an unreachable dome never holds up the
 * agent's start; `get` waits for it. A reload replaces the movers of changed cameras.
 */
export class PtzHub {
  private readonly movers = new Map<string, { ptz: PtzCamera; ready: Promise<void> }>();
  private cameras: Cameras | undefined;
  private log: Logger | undefined;
  private users = 0;

  /** Starts the movers once, however many components use the hub. */
  start(config: readonly CameraConfig[], cameras: Cameras, log: Logger): void {
    this.users++;
    if (this.users > 1) return;
    this.cameras = cameras;
    this.log = log;
    for (const cam of config) if (isPtzCamera(cam)) this.add(cam);
  }

  stop(): void {
    this.users = Math.max(0, this.users - 1);
    if (this.users > 0) return;
    for (const { ptz } of this.movers.values()) ptz.stop();
    this.movers.clear();
  }

  /** The camera's mover once it has started, or undefined when the camera is not a PTZ camera. */
  async get(cameraId: string): Promise<PtzCamera | undefined> {
    const m = this.movers.get(cameraId);
    if (!m) return undefined;
    await m.ready;
    return m.ptz;
  }

  /** The mover's state (lease holder, manual hold, moves in the last hour), once it exists; undefined otherwise. */
  stateOf(cameraId: string): PtzCamera['state'] | undefined {
    return this.movers.get(cameraId)?.ptz.state;
  }

  /** After a reload: changed and removed cameras' movers stop (their rounds abort); changed and added ones start. */
  reloaded(result: ReloadResult, config: readonly CameraConfig[]): void {
    if (!this.cameras || !this.log) return;
    if (result.result !== 'applied') return;
    for (const id of [...result.restarted, ...result.removed]) {
      this.movers.get(id)?.ptz.stop();
      this.movers.delete(id);
    }
    for (const id of [...result.restarted, ...result.added]) {
      const cam = config.find((c) => c.id === id);
      if (cam && isPtzCamera(cam)) this.add(cam);
    }
  }

  private add(cam: CameraConfig): void {
    const log = this.log!;
    const ptz = new PtzCamera({ camera: cam, cameras: this.cameras!, log });
    const ready = ptz.start().catch((err: Error) => {
      log.warn({ camera: cam.id, err: err.message }, `camera ${cam.id}: PTZ control is not ready: ${err.message}`);
    });
    this.movers.set(cam.id, { ptz, ready });
  }
}
