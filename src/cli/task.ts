import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import type { MqttClient } from 'mqtt';
import { gatewayTopics } from '../common/topics.js';
import { loadConfig } from '../config/index.js';
import { listTasks } from '../outbox/index.js';
import { connectBroker } from './broker.js';
import { DEFAULT_CONFIG, EXIT, parseCommandArgs, reportError, UsageError, writeJson, type CommandIo } from './io.js';
import { completeTask, followTask, stateLine } from './task-client.js';

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
  return completeTask(json as Record<string, unknown>, keyFile, `task ${file}`);
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
  let client: MqttClient;
  try {
    client = await connectBroker(v.url, { connectTimeout: 5000 });
  } catch (err) {
    io.stderr.write(`edgepatrol task send: cannot connect to ${v.url}: ${(err as Error).message}; check --url and that the broker runs\n`);
    return EXIT.broker;
  }
  try {
    const followed = await followTask(client, topics, task, {
      timeoutMs: timeoutS * 1000,
      onState: (state) => (v.json ? writeJson(io, state) : io.stdout.write(stateLine(state))),
      onInvalid: (problem) => io.stderr.write(`edgepatrol task send: ignored a state that breaks the contract: ${problem}\n`),
      onSent: () => {
        if (!v.json) io.stderr.write(`edgepatrol task send: sent task ${id} (${String(task.kind)}) to ${topics.task(id)}\n`);
      },
    });
    if (followed.end === 'final') return followed.state.state === 'succeeded' ? EXIT.ok : EXIT.taskNotSucceeded;
    io.stderr.write(`edgepatrol task send: no final state of task ${id} within ${timeoutS} s; is gateway ${gatewayId} connected?\n`);
    return EXIT.taskTimeout;
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
