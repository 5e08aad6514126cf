import { basename } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { stringify } from 'yaml';
import type { ComponentContext, ConfigFile } from '../agent/index.js';
import { ConfigError, keepRedacted, redactedLeft, StagedConfig, type Config } from '../config/index.js';
import { scrubSecrets } from '../log.js';
import type { TaskReason } from '../tasks/index.js';

/** How often the cameras a config task started are looked at while it waits for them to stream. */
const POLL_MS = 200;
/** Longest detail a task state carries (its schema's limit). */
const DETAIL_CHARS = 500;

export interface ConfigOutcome {
  state: 'succeeded' | 'failed';
  reason?: TaskReason;
  detail?: string;
  result?: Record<string, unknown>;
}

function clip(text: string): string {
  const safe = scrubSecrets(text);
  return safe.length > DETAIL_CHARS ? `${safe.slice(0, DETAIL_CHARS - 1)}…` : safe;
}

function failed(reason: TaskReason, detail: string): ConfigOutcome {
  return { state: 'failed', reason, detail: clip(detail) };
}

/** The problems of a config that does not check, without the staged file's name (the centre never sees that file). */
function problems(err: unknown, staged: StagedConfig, file: ConfigFile): string {
  if (err instanceof ConfigError) return err.issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ');
  return (err as Error).message.replaceAll(staged.path, file.path);
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });

/**
 * Waits until each of `ids` has streamed (state streaming, or frames decoded) or `timeoutMs` passes; returns the
 * ones that did not, with their state, or null when `signal` ends the wait (the agent stops).
 */
async function laggards(ctx: ComponentContext, ids: readonly string[], timeoutMs: number, signal: AbortSignal): Promise<string[] | null> {
  const up = new Set<string>();
  const end = Date.now() + timeoutMs;
  for (;;) {
    const status = new Map(ctx.cameras.status().map((s) => [s.id, s]));
    for (const id of ids) {
      const s = status.get(id);
      if (s && (s.state === 'streaming' || s.totals.framesIn > 0)) up.add(id);
    }
    const down = ids.filter((id) => !up.has(id));
    if (down.length === 0) return [];
    if (signal.aborted) return null;
    if (Date.now() >= end) {
      return down.map((id) => {
        const s = status.get(id);
        return s ? `${id} (${s.state}${s.reason ? `: ${s.reason}` : ''})` : `${id} (not running)`;
      });
    }
    await sleep(POLL_MS, signal);
  }
}

/**
 * Runs a config task (docs/decisions/0048-config-task.md): the config the centre sent, with the secrets config/get
 * showed as *** put back, is written beside the config file and checked as that file is (schema, models, file
 * checks), applied as a SIGHUP reload, and given tasks.configTimeoutSeconds for every camera it adds or changes to
 * stream. Then the file is replaced (the old one kept as `<file>.previous`). A reload that is refused changes
 * nothing (`invalid_config`); cameras that do not stream, or a file that cannot be replaced, bring the previous
 * config back (`rolled_back`) and the file is left as it was. Returns null when the agent stops meanwhile: the
 * file is not replaced, and the next start fails the task as interrupted.
 */
export async function runConfigTask(
  ctx: ComponentContext,
  taskId: string,
  sent: Record<string, unknown>,
  signal: AbortSignal,
): Promise<ConfigOutcome | null> {
  const file = ctx.configFile;
  if (!file) return failed('internal', 'this agent was started without a config file; it has none to replace');
  const previous: Config = ctx.config;
  const wanted = keepRedacted(sent, previous) as Record<string, unknown>;
  const left = redactedLeft(wanted);
  if (left.length > 0) {
    return failed(
      'invalid_config',
      `${left.join(', ')}: *** (a secret as config/get shows it) where this gateway has no value to keep; send the value itself`,
    );
  }
  const header = `# Written by edgepatrol for config task ${taskId} at ${new Date().toISOString()}; the file it replaced is ${basename(file.path)}.previous.\n`;
  let staged: StagedConfig;
  try {
    staged = StagedConfig.write(file.path, header + stringify(wanted));
  } catch (err) {
    return failed('internal', (err as Error).message);
  }
  let next: Config;
  try {
    next = file.read(staged.path);
  } catch (err) {
    staged.discard();
    return failed('invalid_config', problems(err, staged, file));
  }

  const applied = await ctx.reload(() => next);
  if (applied.result === 'refused') {
    staged.discard();
    return failed('invalid_config', `the reload refused it, nothing changed: ${applied.error ?? 'no reason given'}`);
  }
  const rollBack = async (why: string): Promise<ConfigOutcome> => {
    staged.discard();
    const back = await ctx.reload(() => previous);
    const after =
      back.result === 'applied'
        ? `the previous config runs again and ${basename(file.path)} is unchanged`
        : `the previous config could not be reloaded (${back.error ?? 'refused'}): restart the agent, which reads the unchanged ${file.path}`;
    ctx.log.warn({ task: taskId, rollback: back.result }, `config task ${taskId} rolled back: ${why}; ${after}`);
    return failed('rolled_back', `${why}; ${after}`);
  };

  const timeout = ctx.config.tasks.configTimeoutSeconds;
  const down = await laggards(ctx, [...applied.added, ...applied.restarted], timeout * 1000, signal);
  if (down === null) {
    staged.discard();
    return null;
  }
  if (down.length > 0) return rollBack(`not streaming ${timeout} s after the reload: camera ${down.join(', camera ')}`);
  if (!isDeepStrictEqual(ctx.config.cameras, next.cameras)) {
    // Another reload (SIGHUP) ran meanwhile: the file is left to match what it loaded.
    staged.discard();
    return failed('rolled_back', `another reload replaced the cameras while the task waited for them; ${basename(file.path)} is unchanged`);
  }
  try {
    staged.commit();
  } catch (err) {
    return rollBack((err as Error).message);
  }
  ctx.log.info({ task: taskId, file: file.path }, `config task ${taskId} applied and written to ${file.path}`);
  return {
    state: 'succeeded',
    result: {
      added: applied.added,
      removed: applied.removed,
      changed: applied.restarted,
      unchanged: applied.unchanged,
      needsRestart: applied.needsRestart,
    },
  };
}
