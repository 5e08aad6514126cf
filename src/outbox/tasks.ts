/**
 * The task inbox: the tasks table of the outbox file (migration 4) and the one write that moves a task to a
 * new state. A state change and the state message it publishes are one transaction: the task row is updated and
 * an outbox row on the task's state topic (priority high) is added together, so a state is never recorded
 * without being sent, nor sent without being recorded, and states leave in the order they happened, across
 * outages and restarts. The inbox stores text; what a task means is src/tasks and src/components/tasks.ts.
 */
import type Database from 'better-sqlite3';
import { v7 as uuidv7 } from 'uuid';
import { insertRow } from './enqueue.js';
import type { RowStore } from './store.js';
import type { Payload } from './types.js';

/** States a task row can hold; `progress` is published while the row stays running. */
export type InboxState = 'accepted' | 'rejected' | 'running' | 'succeeded' | 'failed' | 'expired' | 'canceled';

/** Camera id of task state rows: their own stream, apart from every camera's events. */
export const TASK_STREAM = '_tasks';

export interface TaskRow {
  id: string;
  kind: string | null;
  cameraId: string | null;
  payload: string;
  version: number;
  state: InboxState;
  reason: string | null;
  checkpoint: string | null;
  /** seq of the last state published for the task (0: none yet). */
  stateSeq: number;
  receivedAt: number;
  updatedAt: number;
}

/** A new task (insert), or a queued one replaced by a higher version (replace). */
export interface TaskRecord {
  id: string;
  kind: string | null;
  cameraId: string | null;
  payload: string;
  version: number;
}

/**
 * What is published with a state: built from the task's next state seq, the time of the change and the row's
 * per-gateway seq (shared with events and alerts, so a subscriber of all three sees no gap in it).
 */
export interface StateMessage {
  topic: string;
  build: (seq: number, at: number, gatewaySeq: number) => Payload;
}

const columns = `id, kind, camera_id AS cameraId, payload, version, state, reason, checkpoint, state_seq AS stateSeq,
  received_at AS receivedAt, updated_at AS updatedAt`;

function statements(db: Database.Database) {
  const p = (sql: string) => db.prepare(sql);
  return {
    get: p(`SELECT ${columns} FROM tasks WHERE id = ?`),
    open: p(`SELECT ${columns} FROM tasks WHERE state IN ('accepted', 'running') ORDER BY received_at, rowid`),
    list: p(`SELECT ${columns} FROM tasks ORDER BY received_at DESC, rowid DESC LIMIT ?`),
    listIn: p(`SELECT ${columns} FROM tasks WHERE state = ? ORDER BY received_at DESC, rowid DESC LIMIT ?`),
    insert: p(`INSERT INTO tasks (id, kind, camera_id, payload, version, state, reason, state_seq, received_at, updated_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)`),
    replace: p(`UPDATE tasks SET kind = ?, camera_id = ?, payload = ?, version = ?, state = ?, reason = ?,
      state_seq = state_seq + 1, updated_at = ? WHERE id = ?`),
    move: p('UPDATE tasks SET state = ?, reason = ?, state_seq = state_seq + 1, updated_at = ? WHERE id = ? RETURNING state_seq'),
    checkpoint: p('UPDATE tasks SET checkpoint = ?, updated_at = ? WHERE id = ?'),
    counts: p('SELECT state, count(*) AS n FROM tasks GROUP BY state'),
  };
}

/** Reads the inbox of an outbox file opened elsewhere (read-only, for `edgepatrol task list`). */
export function listTasks(db: Database.Database, limit: number): TaskRow[] {
  return db.prepare(`SELECT ${columns} FROM tasks ORDER BY received_at DESC, rowid DESC LIMIT ?`).all(limit) as TaskRow[];
}

export class TaskInbox {
  private readonly st: ReturnType<typeof statements>;

  constructor(private readonly store: RowStore) {
    this.st = statements(store.db);
  }

  get(id: string): TaskRow | undefined {
    return this.st.get.get(id) as TaskRow | undefined;
  }

  /** Tasks queued (accepted) or running, in the order they arrived. */
  open(): TaskRow[] {
    return this.st.open.all() as TaskRow[];
  }

  /** The newest `limit` tasks (of those in `state`, when given), newest first. */
  list(limit = 100, state?: InboxState): TaskRow[] {
    return (state === undefined ? this.st.list.all(limit) : this.st.listIn.all(state, limit)) as TaskRow[];
  }

  counts(): Partial<Record<InboxState, number>> {
    const out: Partial<Record<InboxState, number>> = {};
    for (const { state, n } of this.st.counts.all() as { state: InboxState; n: number }[]) out[state] = n;
    return out;
  }

  /** Stores a task not seen before in `state` and publishes its first state (seq 1). Throws if the id exists. */
  insert(task: TaskRecord, state: InboxState, reason: string | null, message: StateMessage): number {
    return this.write(() => {
      const now = this.store.now();
      this.st.insert.run(task.id, task.kind, task.cameraId, task.payload, task.version, state, reason, now, now);
      return { seq: 1, at: now };
    }, message);
  }

  /** Replaces a queued task by a newer version of it (state back to `state`), publishing the next state. */
  replace(task: TaskRecord, state: InboxState, reason: string | null, message: StateMessage): number {
    return this.write(() => {
      const now = this.store.now();
      this.st.replace.run(task.kind, task.cameraId, task.payload, task.version, state, reason, now, task.id);
      return { seq: (this.get(task.id) as TaskRow).stateSeq, at: now };
    }, message);
  }

  /** Moves a stored task to `state` (or publishes `progress`, state unchanged) and publishes it; returns its seq. */
  move(id: string, state: InboxState, reason: string | null, message: StateMessage): number {
    return this.write(() => {
      const now = this.store.now();
      const row = this.st.move.get(state, reason, now, id) as { state_seq: number } | undefined;
      if (!row) throw new Error(`task inbox: no task ${id}`);
      return { seq: row.state_seq, at: now };
    }, message);
  }

  /** Saves a running task's checkpoint (JSON), for kinds that resume after a restart. */
  saveCheckpoint(id: string, checkpoint: unknown): void {
    this.store.transaction(() => this.st.checkpoint.run(JSON.stringify(checkpoint), this.store.now(), id));
  }

  private write(change: () => { seq: number; at: number }, message: StateMessage): number {
    const { store } = this;
    return store.afterWrite(() =>
      store.transaction(() => {
        const { seq, at } = change();
        insertRow(
          store,
          { id: uuidv7(), cameraId: TASK_STREAM, type: 'task_state', topic: message.topic, priority: 'high' },
          0,
          (_e, gatewaySeq) => message.build(seq, at, gatewaySeq),
        );
        return seq;
      }),
    );
  }
}
