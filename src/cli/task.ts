import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { v7 as uuidv7 } from 'uuid';
import { parsePrivateKey, signTask } from '../common/signing.js';
import { gatewayTopics } from '../common/topics.js';
import { loadConfig } from '../config/index.js';
import { listTasks } from '../outbox/index.js';
import { finalStates, TASK_SCHEMA_ID, taskSchema, taskStatePayloadSchema, type TaskStatePayload } from '../tasks/index.js';
import { DEFAULT_CONFIG, EXIT, parseCommandArgs, reportError, UsageError, writeJson, type CommandIo } from './io.js';

const help = `usage: edgepatrol task send <gateway-id> <task.json> [options]
       edgepatrol task list [--config FILE] [--json]

  send     publishes the task (QoS 1) on {prefix}/{gateway-id}/task/{id} and prints its states as they arrive
           on …/task/{id}/state until a final one (docs/decisions/0047-task-inbox.md). The file holds one task;
           "schema", "id" (a new UUIDv7) and "issuedAt" (now) are filled in when absent.
      --url URL        broker (default mqtt://127.0.0.1:1883)
      --prefix P       topic prefix (default edgepatrol)
      --key FILE       sign the task with this Ed25519 private key (PEM, PKCS #8)
      --timeout S      give up after S seconds without a final state (default 60)
      --json           one JSON line per state: the state message as published
  list     the gateway's task inbox, newest first: id, kind, camera, state, reason, version, received, updated;
           read-only, safe while the agent runs
      --config FILE    the gateway config (default ${DEFAULT_CONFIG}); the inbox is {dataDir}/outbox.db
      --limit N        at most N tasks (default 50)
      --json           one JSON line per task
exit codes: 0 done (send: the task succeeded), 1 bad usage or a failure, 2 invalid config, 4 broker unreachable,
            10 the task ended rejected, failed, expired or canceled, 11 no final state within --timeout
`;

const options = {
  url: { type: 'string', default: 'mqtt://127.0.0.1:1883' },
  prefix: { type: 'string', default: 'edgepatrol' },
  key: { type: 'string' },
  timeout: { type: 'string', default: '60' },
  config: { type: 'string', default: DEFAULT_CONFIG },
  limit: { type: 'string', default: '50' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h' },
} as const;

function positiveNumber(text: string, what: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${what} ${text} is not a positive number`);
  return n;
}

/** The task of `file` with its defaults filled in, checked against the contract, signed when a key is given. */
export function readTask(file: string, keyFile: string | undefined): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read task ${file}: ${(err as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`task ${file} must hold one JSON object`);
  let task: Record<string, unknown> = { schema: TASK_SCHEMA_ID, id: uuidv7(), issuedAt: new Date().toISOString(), ...json };
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
    throw new Error(`task ${file} does not match ${TASK_SCHEMA_ID}: ${problems}`);
  }
  return task;
}

function stateLine(s: TaskStatePayload): string {
  const parts = [`${s.taskId} #${s.seq} ${s.state}`];
  if (s.reason) parts.push(`(${s.reason})`);
  if (s.detail) parts.push(`— ${s.detail}`);
  if (s.result) parts.push(JSON.stringify(s.result));
  return `${parts.join(' ')}\n`;
}

async function send(
  gatewayId: string,
  file: string,
  v: { url: string; prefix: string; key?: string; timeout: string; json: boolean },
  io: CommandIo,
) {
  const timeoutS = positiveNumber(v.timeout, '--timeout');
  const topics = gatewayTopics(v.prefix, gatewayId);
  const task = readTask(file, v.key);
  const id = task.id as string;
  let client: mqtt.MqttClient;
  try {
    client = await mqtt.connectAsync(v.url, { protocolVersion: 5, connectTimeout: 5000, reconnectPeriod: 0 });
  } catch (err) {
    io.stderr.write(`edgepatrol task send: cannot connect to ${v.url}: ${(err as Error).message}; check --url and that the broker runs\n`);
    return EXIT.broker;
  }
  try {
    return await new Promise<number>((done, fail) => {
      const timer = setTimeout(() => {
        io.stderr.write(`edgepatrol task send: no final state of task ${id} within ${timeoutS} s; is gateway ${gatewayId} connected?\n`);
        done(EXIT.taskTimeout);
      }, timeoutS * 1000);
      client.on('message', (topic, payload) => {
        if (topic !== topics.taskState(id)) return;
        let state: TaskStatePayload;
        try {
          state = taskStatePayloadSchema.parse(JSON.parse(payload.toString('utf8')));
        } catch (err) {
          io.stderr.write(`edgepatrol task send: ignored a state that breaks the contract: ${(err as Error).message.slice(0, 300)}\n`);
          return;
        }
        if (v.json) writeJson(io, state);
        else io.stdout.write(stateLine(state));
        if (!finalStates.has(state.state)) return;
        clearTimeout(timer);
        done(state.state === 'succeeded' ? EXIT.ok : EXIT.taskNotSucceeded);
      });
      client
        .subscribeAsync(topics.taskState(id), { qos: 1 })
        .then(() => client.publishAsync(topics.task(id), JSON.stringify(task), { qos: 1 }))
        .then(() => {
          if (!v.json) io.stderr.write(`edgepatrol task send: sent task ${id} (${String(task.kind)}) to ${topics.task(id)}\n`);
        })
        .catch((err: unknown) => {
          clearTimeout(timer);
          fail(err);
        });
    });
  } finally {
    await client.endAsync();
  }
}

function list(configFile: string, limit: number, json: boolean, io: CommandIo): number {
  const dataDir = resolve(loadConfig(configFile).gateway.dataDir);
  const file = join(dataDir, 'outbox.db');
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw new Error(`cannot open the task inbox ${file}: ${(err as Error).message}`);
  }
  try {
    const hasTable = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tasks'").get();
    const rows = hasTable ? listTasks(db, limit) : [];
    for (const r of rows) {
      const row = {
        id: r.id,
        kind: r.kind,
        camera: r.cameraId,
        state: r.state,
        reason: r.reason,
        version: r.version,
        receivedAt: new Date(r.receivedAt).toISOString(),
        updatedAt: new Date(r.updatedAt).toISOString(),
      };
      if (json) writeJson(io, row);
      else
        io.stdout.write(
          `${row.id}  ${row.kind ?? '?'}  ${row.camera ?? '-'}  ${row.state}${row.reason ? ` (${row.reason})` : ''}  v${row.version}  ${row.receivedAt}  ${row.updatedAt}\n`,
        );
    }
    if (!json && rows.length === 0) io.stdout.write(`no tasks in ${file}\n`);
    return EXIT.ok;
  } finally {
    db.close();
  }
}

export async function taskCommand(argv: string[], io: CommandIo): Promise<number> {
  const name = argv[0] === 'send' || argv[0] === 'list' ? `task ${argv[0]}` : 'task';
  try {
    const { values: v, positionals } = parseCommandArgs(argv, options, { positionals: true });
    if (v.help) {
      io.stdout.write(help);
      return EXIT.ok;
    }
    const [verb, ...rest] = positionals;
    if (verb === 'send') {
      const [gatewayId, file, extra] = rest;
      if (gatewayId === undefined || file === undefined) throw new UsageError('task send needs a gateway id and a task file');
      if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}'`);
      return await send(gatewayId, file, v, io);
    }
    if (verb === 'list') {
      if (rest[0] !== undefined) throw new UsageError(`unexpected argument '${rest[0]}'`);
      return list(v.config, positiveNumber(v.limit, '--limit'), v.json, io);
    }
    throw new UsageError(verb === undefined ? 'expected send or list' : `unknown sub-command 'task ${verb}': expected send or list`);
  } catch (err) {
    return reportError(io, name, err, help);
  }
}
