import type { Component } from '../agent/index.js';
import { HealthPublisher } from './health.js';
import { MetricsServer } from './metrics.js';
import { RequestsServer } from './requests.js';
import { EvidenceRetention } from './retention.js';
import { StatusFile } from './status.js';
import { SystemdNotify } from './systemd.js';
import { Tasks } from './tasks.js';
import { Patrols } from './patrols.js';
import { PtzHub } from '../ptz/index.js';

export { HealthPublisher } from './health.js';
export { MetricsServer } from './metrics.js';
export { redact } from '../config/index.js';
export { MAX_SNAPSHOT_BYTES, RequestError, REQUESTS_PER_SECOND, RequestsServer, type TaskCanceler } from './requests.js';
export { EvidenceRetention, PRUNE_INTERVAL_MS } from './retention.js';
export { StatusFile } from './status.js';
export { Tasks, type CancelResult } from './tasks.js';
export { Patrols } from './patrols.js';
export { runConfigTask, type ConfigOutcome } from './config-task.js';
export { frameProblems, notifyAddon, statusLine, SystemdNotify } from './systemd.js';

/**
 * The components `edgepatrol run` starts, in start order (they stop in reverse). A new capability is a file
 * of this folder implementing Component (src/agent/component.ts), added here. RequestsServer comes after MetricsServer,
 * whose counter of answers listens from its start. Patrols come before Tasks, which share their PTZ movers. SystemdNotify is last: its READY=1
 * tells systemd the whole agent runs, and its STOPPING=1 comes first on stop.
 */
export function defaultComponents(): Component[] {
  // The PTZ cameras' movers, shared: a verification task takes a dome from a scheduled round through its lease.
  const ptz = new PtzHub();
  const tasks = new Tasks(ptz);
  return [
    new StatusFile(),
    new HealthPublisher(),
    new EvidenceRetention(),
    new MetricsServer(),
    new RequestsServer(tasks),
    new Patrols(ptz),
    tasks,
    new SystemdNotify(),
  ];
}
