import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { v7 as uuidv7 } from 'uuid';
import { outboxCommand } from '../src/cli/outbox.js';
import { Outbox } from '../src/outbox/index.js';

/** Runs the command in-process and returns its exit code and what it printed. */
async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const write = { out: process.stdout.write.bind(process.stdout), err: process.stderr.write.bind(process.stderr) };
  process.stdout.write = ((s: string) => {
    out += s;
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => {
    err += s;
    return true;
  }) as typeof process.stderr.write;
  try {
    return { code: await outboxCommand(argv), out, err };
  } finally {
    process.stdout.write = write.out;
    process.stderr.write = write.err;
  }
}

t.test('edgepatrol outbox stats|ls|show|replay on a real store', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgepatrol-outbox-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const outbox = Outbox.open(join(dir, 'outbox.db'), { maxBytes: 1_000_000 });
  const ids = Array.from({ length: 4 }, () => uuidv7());
  for (const [i, id] of ids.entries()) {
    outbox.add(
      { id, cameraId: `cam-${i % 2}`, type: 'presence', topic: 'ep/gw-1/event/presence', priority: i === 3 ? 'high' : 'normal' },
      (seq) => ({ id, seq }),
    );
  }
  outbox.markAcked(1, 2);
  outbox.close();

  const stats = await run(['stats', '--data-dir', dir]);
  t.equal(stats.code, 0);
  t.match(stats.out, /pending 2, sent 0, acked 2, confirmed 0; last seq 4/);
  t.match(stats.out, /of 1000000|bytes held/);
  const json = JSON.parse((await run(['stats', '--data-dir', dir, '--json'])).out) as { pending: number; acked: number };
  t.match(json, { pending: 2, acked: 2 });

  const ls = await run(['ls', '--data-dir', dir, '--state', 'pending']);
  t.same(
    ls.out
      .trim()
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[0]),
    ['3', '4'],
  );
  t.match(ls.out, new RegExp(`pending\\s+high.*cam-1 presence ${ids[3]}`));

  const show = await run(['show', ids[1]!, '--file', join(dir, 'outbox.db')]);
  t.equal(show.code, 0);
  t.match(JSON.parse(show.out), { seq: 2, state: 'acked', payload: { id: ids[1], seq: 2 } });
  t.match((await run(['show', '2', '--data-dir', dir])).out, ids[1]!, 'by seq too');
  t.equal((await run(['show', uuidv7(), '--data-dir', dir])).code, 1);

  const replay = await run(['replay', '--data-dir', dir]);
  t.match(replay.out, /^2 event\(s\) set back to pending/);
  t.match((await run(['stats', '--data-dir', dir])).out, /pending 4, sent 0, acked 0/);

  const bad = await run(['ls', '--data-dir', dir, '--since', 'yesterday']);
  t.equal(bad.code, 1);
  t.match(bad.err, /--since yesterday is not a time/);
  const missing = await run(['stats', '--data-dir', join(dir, 'nope')]);
  t.equal(missing.code, 1);
  t.match(missing.err, /cannot open outbox .*nope/);
});
