import { createRequire } from 'node:module';
import { join } from 'node:path';
import { projectRoot } from './version.js';

/**
 * The project's native addons (native/*.c, built into build/Release by `npm ci`'s install script or
 * `npm run build:native`). Each is optional: without it the agent runs its JavaScript path and says why.
 */
export type Addon<T> = { ok: true; addon: T } | { ok: false; reason: string };

const loaded = new Map<string, Addon<unknown>>();

/**
 * Loads build/Release/<name>.node once per thread; `switchedOff` names an environment variable that, set to
 * `off`, leaves it unloaded (an operator's way out, and the benchmarks' baseline). Never throws.
 */
export function loadAddon<T>(name: string, switchedOff: string): Addon<T> {
  const known = loaded.get(name);
  if (known) return known as Addon<T>;
  let result: Addon<T>;
  const file = join(projectRoot, 'build', 'Release', `${name}.node`);
  if (process.env[switchedOff] === 'off') {
    result = { ok: false, reason: `switched off by ${switchedOff}=off` };
  } else {
    try {
      result = { ok: true, addon: createRequire(import.meta.url)(file) as T };
    } catch (err) {
      result = { ok: false, reason: `cannot load ${file} (${(err as Error).message.split('\n')[0]}); build it with npm run build:native` };
    }
  }
  loaded.set(name, result);
  return result;
}
