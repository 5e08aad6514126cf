import { join } from 'node:path';
import { Outbox, type OutboxRow, type OutboxState } from '../outbox/index.js';
import { EXIT, parseCommandArgs, reportError, UsageError, writeJson, type CommandIo } from './io.js';

const help = `usage: edgepatrol outbox <stats|ls|show <id-or-seq>|replay> [--data-dir DIR | --file FILE] [options]

Reads the gateway's local event store ({dataDir}/outbox.db). Safe while the agent runs (SQLite WAL).
  stats                 counts by state, bytes held, oldest undelivered event, drops by what/reason/priority
  ls                    one line per event: seq, state, priority, attempts, created, camera, type, id
      --state S         only pending, sent, acked or confirmed
      --since TIME      only events created at or after TIME (ISO 8601, e.g. 2025-03-01T08:00:00Z)
      --limit N         at most N lines (default 50)
  show <id-or-seq>      one event: every column and its payload, pretty-printed
  replay                set events back to pending so the running agent publishes them again (at least once:
                        subscribers de-duplicate by id); within 5 s, or at the next start
      --since TIME      only events created at or after TIME (default: all)
  --data-dir DIR        the gateway data folder (default /var/lib/edgepatrol)
  --file FILE           the outbox file itself
  --json                machine-readable output on stdout, errors on stderr:
      stats   {"file","pending","sent","acked","confirmed","lastSeq","bytes","maxBytes","oldestPendingTs",
              "dropped":{"events","evidence"},"drops":[{"what","reason","priority","count","bytes"}]}
      ls      one line per event: {"seq","id","state","priority","attempts","createdAt","camera","type","topic",
              "evidence"} (JSON lines, the rows of the text form)
      show    {every column of the event…, "evidenceFile", "payload":{the message as published}}
      replay  {"file","replayed":N}
exit codes: 0 done, 1 bad usage, no such event, or a store that cannot be opened
`;

const STATES: OutboxState[] = ['pending', 'sent', 'acked', 'confirmed'];
const VERBS = ['stats', 'ls', 'show', 'replay'] as const;
const isVerb = (word: string | undefined): word is (typeof VERBS)[number] => VERBS.includes(word as never);

const options = {
  'data-dir': { type: 'string', default: '/var/lib/edgepatrol' },
  file: { type: 'string' },
  state: { type: 'string' },
  since: { type: 'string' },
  limit: { type: 'string', default: '50' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h' },
} as const;

function parse(argv: string[]) {
  const { values: v, positionals } = parseCommandArgs(argv, options, { positionals: true });
  if (v.help) return { help: true as const };
  const [verb, target, ...extra] = positionals;
  if (!isVerb(verb)) {
    throw new UsageError(
      verb === undefined
        ? 'expected stats, ls, show <id> or replay'
        : `unknown sub-command 'outbox ${verb}': expected stats, ls, show <id> or replay`,
    );
  }
  if (verb === 'show' && target === undefined) throw new UsageError('give an event id or seq (edgepatrol outbox ls lists them)');
  const unexpected = verb === 'show' ? extra[0] : target;
  if (unexpected !== undefined) throw new UsageError(`unexpected argument '${unexpected}'`);
  const sinceMs = v.since === undefined ? undefined : Date.parse(v.since);
  if (sinceMs !== undefined && Number.isNaN(sinceMs))
    throw new UsageError(`--since ${v.since} is not a time; use ISO 8601, e.g. 2025-03-01T08:00:00Z`);
  if (v.state !== undefined && !STATES.includes(v.state as OutboxState))
    throw new UsageError(`--state ${v.state}: expected one of ${STATES.join(', ')}`);
  const limit = Number(v.limit);
  if (!(Number.isInteger(limit) && limit > 0)) throw new UsageError(`--limit ${v.limit}: expected a positive integer`);
  return {
    help: false as const,
    verb,
    target,
    sinceMs,
    state: v.state as OutboxState | undefined,
    limit,
    json: v.json,
    file: v.file ?? join(v['data-dir'], 'outbox.db'),
  };
}

export async function outboxCommand(argv: string[], io: CommandIo = process): Promise<number> {
  let opts: ReturnType<typeof parse>;
  let outbox: Outbox;
  try {
    opts = parse(argv);
    if (opts.help) {
      io.stdout.write(help);
      return EXIT.ok;
    }
    outbox = Outbox.open(opts.file);
  } catch (err) {
    return reportError(io, isVerb(argv[0]) ? `outbox ${argv[0]}` : 'outbox', err, help);
  }
  const { verb, target, sinceMs, file } = opts;
  try {
    const out = (s: string): void => {
      io.stdout.write(`${s}\n`);
    };
    const json = (value: unknown): void => writeJson(io, value);
    switch (verb) {
      case 'stats': {
        const stats = outbox.stats();
        const drops = outbox.drops();
        if (opts.json) {
          json({ file, ...stats, drops });
          break;
        }
        out(`outbox ${file}`);
        out(
          `  pending ${stats.pending}, sent ${stats.sent}, acked ${stats.acked}, confirmed ${stats.confirmed}; last seq ${stats.lastSeq}`,
        );
        out(`  ${stats.bytes} bytes held${stats.maxBytes === null ? '' : ` of ${stats.maxBytes}`} (payloads and kept evidence)`);
        out(`  oldest undelivered: ${stats.oldestPendingTs === null ? 'none' : new Date(stats.oldestPendingTs).toISOString()}`);
        out(`  dropped: ${stats.dropped.events} event(s), ${stats.dropped.evidence} evidence image(s)`);
        for (const d of drops) out(`    ${d.what} ${d.reason} ${d.priority}: ${d.count} (${d.bytes} bytes)`);
        break;
      }
      case 'ls': {
        const rows = outbox.list({ sinceMs, state: opts.state, limit: opts.limit });
        if (opts.json) {
          for (const r of rows) json(summary(r));
          break;
        }
        for (const r of rows) {
          out(
            [
              String(r.seq).padStart(7),
              r.state.padEnd(9),
              r.priority.padEnd(6),
              `x${r.attempts}`.padEnd(4),
              new Date(r.createdAt).toISOString(),
              r.cameraId,
              r.type,
              r.id,
              r.evidenceState === 'dropped' ? '(evidence dropped)' : '',
            ]
              .join(' ')
              .trimEnd(),
          );
        }
        break;
      }
      case 'show': {
        const row = outbox.get(target!);
        if (!row) {
          io.stderr.write(`edgepatrol outbox show: no event ${target} in ${file}; edgepatrol outbox ls lists them\n`);
          return EXIT.failed;
        }
        // The text form is the same document, indented for reading.
        const { payload: text, ...columns } = row;
        const doc = {
          ...columns,
          evidenceFile: row.evidencePath ? outbox.evidenceFile(row.evidencePath) : null,
          payload: JSON.parse(text) as unknown,
        };
        if (opts.json) json(doc);
        else out(JSON.stringify(doc, null, 2));
        break;
      }
      case 'replay': {
        const n = outbox.replay(sinceMs ?? 0);
        if (opts.json) {
          json({ file, replayed: n });
          break;
        }
        out(`${n} event(s) set back to pending in ${file}; a running agent publishes them within 5 s, otherwise at its next start`);
        break;
      }
    }
    return EXIT.ok;
  } finally {
    outbox.close();
  }
}

function summary(r: OutboxRow): object {
  return {
    seq: r.seq,
    id: r.id,
    state: r.state,
    priority: r.priority,
    attempts: r.attempts,
    createdAt: new Date(r.createdAt).toISOString(),
    camera: r.cameraId,
    type: r.type,
    topic: r.topic,
    evidence: r.evidenceState,
  };
}
