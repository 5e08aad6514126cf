import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Outbox, OutboxError, type OutboxRow, type OutboxState } from '../outbox/index.js';

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
  --json                machine-readable output (stats, ls, show)
`;

export async function outboxCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: {
      'data-dir': { type: 'string', default: '/var/lib/edgepatrol' },
      file: { type: 'string' },
      state: { type: 'string' },
      since: { type: 'string' },
      limit: { type: 'string', default: '50' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    } });
  } catch (err) {
    process.stderr.write(`edgepatrol outbox: ${(err as Error).message}\n\n${help}`);
    return 1;
  }
  const { values: v, positionals } = parsed;
  const [verb, target] = positionals;
  if (v.help) { process.stdout.write(help); return 0; }
  if (!verb || !['stats', 'ls', 'show', 'replay'].includes(verb)) {
    process.stderr.write(`edgepatrol outbox: expected stats, ls, show <id> or replay\n\n${help}`);
    return 1;
  }
  const sinceMs = v.since === undefined ? undefined : Date.parse(v.since);
  if (sinceMs !== undefined && Number.isNaN(sinceMs)) {
    process.stderr.write(`edgepatrol outbox: --since ${v.since} is not a time; use ISO 8601, e.g. 2025-03-01T08:00:00Z\n`);
    return 1;
  }
  const states: OutboxState[] = ['pending', 'sent', 'acked', 'confirmed'];
  if (v.state !== undefined && !states.includes(v.state as OutboxState)) {
    process.stderr.write(`edgepatrol outbox: --state ${v.state}: expected one of ${states.join(', ')}\n`);
    return 1;
  }
  const file = v.file ?? join(v['data-dir'], 'outbox.db');
  let outbox: Outbox;
  try {
    outbox = Outbox.open(file);
  } catch (err) {
    process.stderr.write(`edgepatrol outbox: ${err instanceof OutboxError ? err.message : String(err)}\n`);
    return 1;
  }
  try {
    const out = (s: string): void => { process.stdout.write(s + '\n'); };
    switch (verb) {
      case 'stats': {
        const stats = outbox.stats();
        const drops = outbox.drops();
        if (v.json) { out(JSON.stringify({ file, ...stats, drops })); break; }
        out(`outbox ${file}`);
        out(`  pending ${stats.pending}, sent ${stats.sent}, acked ${stats.acked}, confirmed ${stats.confirmed}; last seq ${stats.lastSeq}`);
        out(`  ${stats.bytes} bytes held${stats.maxBytes === null ? '' : ` of ${stats.maxBytes}`} (payloads and kept evidence)`);
        out(`  oldest undelivered: ${stats.oldestPendingTs === null ? 'none' : new Date(stats.oldestPendingTs).toISOString()}`);
        out(`  dropped: ${stats.dropped.events} event(s), ${stats.dropped.evidence} evidence image(s)`);
        for (const d of drops) out(`    ${d.what} ${d.reason} ${d.priority}: ${d.count} (${d.bytes} bytes)`);
        break;
      }
      case 'ls': {
        const rows = outbox.list({ sinceMs, state: v.state as OutboxState | undefined, limit: Number(v.limit) });
        if (v.json) { for (const r of rows) out(JSON.stringify(summary(r))); break; }
        for (const r of rows) {
          out([String(r.seq).padStart(7), r.state.padEnd(9), r.priority.padEnd(6), `x${r.attempts}`.padEnd(4),
            new Date(r.createdAt).toISOString(), r.cameraId, r.type, r.id, r.evidenceState === 'dropped' ? '(evidence dropped)' : ''].join(' ').trimEnd());
        }
        break;
      }
      case 'show': {
        if (!target) { process.stderr.write('edgepatrol outbox show: give an event id or seq\n'); return 1; }
        const row = outbox.get(target);
        if (!row) { process.stderr.write(`edgepatrol outbox: no event ${target} in ${file}\n`); return 1; }
        const payload = JSON.parse(row.payload) as unknown;
        if (v.json) { out(JSON.stringify({ ...row, payload })); break; }
        const { payload: _text, ...columns } = row;
        out(JSON.stringify({ ...columns, evidenceFile: row.evidencePath ? outbox.evidenceFile(row.evidencePath) : null, payload }, null, 2));
        break;
      }
      case 'replay': {
        const n = outbox.replay(sinceMs ?? 0);
        out(`${n} event(s) set back to pending in ${file}; a running agent publishes them within 5 s, otherwise at its next start`);
        break;
      }
    }
    return 0;
  } finally {
    outbox.close();
  }
}

function summary(r: OutboxRow): object {
  return { seq: r.seq, id: r.id, state: r.state, priority: r.priority, attempts: r.attempts, createdAt: new Date(r.createdAt).toISOString(),
    camera: r.cameraId, type: r.type, topic: r.topic, evidence: r.evidenceState };
}
