import { readFileSync } from 'node:fs';
import type { MqttClient } from 'mqtt';
import { v7 as uuidv7 } from 'uuid';
import { parsePrivateKey, signTask } from '../common/signing.js';
import type { GatewayTopics } from '../common/topics.js';
import { finalStates, TASK_SCHEMA_ID, taskSchema, taskStatePayloadSchema, type TaskStatePayload } from '../tasks/index.js';

/**
 * The task service's side of the task contract (docs/decisions/0047-task-inbox.md), as the commands that send a
 * task use it: `task send` and `patrol run`.
 */

/**
 * `fields` with the defaults filled in ("schema", "id" a new UUIDv7, "issuedAt" now), signed with the Ed25519
 * private key in `keyFile` when given, and checked against the contract. `what` names the task in errors.
 */
export function completeTask(fields: Record<string, unknown>, keyFile: string | undefined, what: string): Record<string, unknown> {
  let task: Record<string, unknown> = { schema: TASK_SCHEMA_ID, id: uuidv7(), issuedAt: new Date().toISOString(), ...fields };
  if (keyFile !== undefined) {
    let key;
    try {
      key = parsePrivateKey(readFileSync(keyFile, 'utf8'));
    } catch (err) {
      throw new Error(`cannot use key ${keyFile}: ${(err as Error).message}`);
    }
    task = signTask(task, key);
  }
  const parsed = taskSchema.safeParse(task);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new Error(`${what} does not match ${TASK_SCHEMA_ID}: ${problems}`);
  }
  return task;
}

/** One state as `task send` prints it: `{taskId} #{seq} {state} (reason) — detail {result}`. */
export function stateLine(s: TaskStatePayload): string {
  const parts = [`${s.taskId} #${s.seq} ${s.state}`];
  if (s.reason) parts.push(`(${s.reason})`);
  if (s.detail) parts.push(`— ${s.detail}`);
  if (s.result) parts.push(JSON.stringify(s.result));
  return `${parts.join(' ')}\n`;
}

/** How following a task ended: its final state, no final state within the time, or the caller stopped watching. */
export type Followed = { end: 'final'; state: TaskStatePayload } | { end: 'timeout' } | { end: 'aborted' };

export interface FollowOptions {
  timeoutMs: number;
  /** Each state once, in the order they arrive (a QoS 1 redelivery of the same seq is dropped). */
  onState(state: TaskStatePayload): void;
  /** A message on the state topic that breaks the contract: ignored, and said why. */
  onInvalid(problem: string): void;
  /** Once the broker has the task (PUBACK). */
  onSent?(): void;
  /** Stops following (the task goes on on the gateway). */
  signal?: AbortSignal;
}

/**
 * Subscribes to the task's state topic, publishes the task (QoS 1) and follows its states until a final one.
 * Subscribing first means no state is missed, however fast the gateway answers.
 */
export async function followTask(
  client: MqttClient,
  topics: GatewayTopics,
  task: Record<string, unknown>,
  o: FollowOptions,
): Promise<Followed> {
  const id = task.id as string;
  const stateTopic = topics.taskState(id);
  const seen = new Set<number>();
  let onMessage: ((topic: string, payload: Buffer) => void) | undefined;
  let onAbort: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    return await new Promise<Followed>((resolve, fail) => {
      let finished = false;
      // Several messages can arrive in one read: nothing is reported after the end.
      const done = (f: Followed): void => {
        finished = true;
        resolve(f);
      };
      if (o.signal?.aborted) return done({ end: 'aborted' });
      timer = setTimeout(() => done({ end: 'timeout' }), o.timeoutMs);
      onAbort = () => done({ end: 'aborted' });
      o.signal?.addEventListener('abort', onAbort, { once: true });
      onMessage = (topic, payload) => {
        if (finished || topic !== stateTopic) return;
        const parsed = (() => {
          try {
            return taskStatePayloadSchema.safeParse(JSON.parse(payload.toString('utf8')));
          } catch (err) {
            return { success: false as const, error: err as Error };
          }
        })();
        if (!parsed.success) return o.onInvalid(parsed.error.message.slice(0, 300));
        const state = parsed.data;
        if (state.taskId !== id || seen.has(state.seq)) return;
        seen.add(state.seq);
        o.onState(state);
        if (finalStates.has(state.state)) done({ end: 'final', state });
      };
      client.on('message', onMessage);
      client
        .subscribeAsync(stateTopic, { qos: 1 })
        .then(() => client.publishAsync(topics.task(id), JSON.stringify(task), { qos: 1 }))
        .then(() => o.onSent?.())
        .catch(fail);
    });
  } finally {
    clearTimeout(timer);
    if (onMessage) client.off('message', onMessage);
    if (onAbort) o.signal?.removeEventListener('abort', onAbort);
  }
}
