import { isDeepStrictEqual } from 'node:util';
import type { CameraConfig, Config } from '../config/index.js';

/**
 * What a reload (SIGHUP) changes: cameras by id, and the config's other sections, which apply only at start
 * (docs/decisions/0045-reload.md). A camera counts as changed when anything in its own settings differs
 * (source, detection, zones, rules, model, …): it restarts; the others carry on with their open events.
 */
export interface ConfigDiff {
  added: CameraConfig[];
  removed: string[];
  changed: CameraConfig[];
  unchanged: string[];
  /** Top-level sections other than `cameras` that differ: kept as they were until the agent restarts. */
  needsRestart: string[];
}

export function diffConfig(running: Config, next: Config): ConfigDiff {
  const before = new Map(running.cameras.map((c) => [c.id, c]));
  const after = new Set(next.cameras.map((c) => c.id));
  const diff: ConfigDiff = { added: [], removed: [], changed: [], unchanged: [], needsRestart: [] };
  for (const cam of next.cameras) {
    const old = before.get(cam.id);
    if (!old) diff.added.push(cam);
    else if (isDeepStrictEqual(old, cam)) diff.unchanged.push(cam.id);
    else diff.changed.push(cam);
  }
  for (const id of before.keys()) if (!after.has(id)) diff.removed.push(id);
  const sections = new Set([...Object.keys(running), ...Object.keys(next)]);
  sections.delete('cameras');
  for (const key of sections) {
    if (!isDeepStrictEqual(running[key as keyof Config], next[key as keyof Config])) diff.needsRestart.push(key);
  }
  return diff;
}

/** The outcome of one reload, as logged, published in health and sent on the bus (`config.reloaded`). */
export interface ReloadResult {
  /** When the reload was asked for (ISO time). */
  at: string;
  result: 'applied' | 'refused';
  /** refused: why (the config's errors, a camera that could not be set up); the running config is unchanged. */
  error?: string;
  added: string[];
  removed: string[];
  /** Cameras whose settings changed: restarted, their open events ended with `config_changed`. */
  restarted: string[];
  unchanged: string[];
  /** Sections that changed but apply only at start (gateway, mqtt, model, …): restart the agent for them. */
  needsRestart: string[];
  durationMs: number;
}

/** One line for the log and STATUS=. */
export function reloadSummary(r: ReloadResult): string {
  if (r.result === 'refused') return `config reload refused, the running config stays: ${r.error}`;
  const parts = [
    r.added.length && `added ${r.added.join(', ')}`,
    r.removed.length && `removed ${r.removed.join(', ')}`,
    r.restarted.length && `restarted ${r.restarted.join(', ')}`,
    `${r.unchanged.length} unchanged`,
  ].filter(Boolean);
  const restart = r.needsRestart.length
    ? `; ${r.needsRestart.join(', ')} changed too, which apply only at start: restart the agent for them`
    : '';
  return `config reloaded: ${parts.join(', ')}${restart}`;
}
