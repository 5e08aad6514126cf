import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import t, { type Test } from 'tap';
import { v7 as uuidv7 } from 'uuid';
import { Outbox, OutboxError } from '../src/outbox/index.js';

/** Child mode: add events until killed, reporting each committed seq to the parent over IPC. */
if (process.env.EDGEPATROL_OUTBOX_WRITER) {
  const outbox = Outbox.open(process.env.EDGEPATROL_OUTBOX_WRITER);
  const send = process.send!.bind(process);
  const next = (): void => {
    const id = uuidv7();
    const { seq } = outbox.add({ id, cameraId: 'cam-1', type: 'presence', topic: 't/gw/event/presence' }, (s) => ({ id, seq: s }));
    send({ seq, id }, next);
  };
  next();
} else {
  tests();
}

function tempFile(tt: Test, name = 'outbox.db'): string {
  const dir = mkdtempSync(join(tmpdir(), 'edgepatrol-outbox-'));
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, name);
}

function event(n: number, extra: Partial<{ cameraId: string; type: string }> = {}) {
  return {
    id: uuidv7(),
    cameraId: extra.cameraId ?? 'cam-1',
    type: extra.type ?? 'presence',
    topic: 'ep/gw-1/event/presence',
    payload: { n },
  };
}

function tests(): void {
  t.test('add assigns increasing seqs, builds the payload from its seq, stores every field', (t) => {
    const file = tempFile(t);
    const outbox = Outbox.open(file);
    t.teardown(() => outbox.close());
    const a = outbox.add(event(1));
    const id = uuidv7();
    const b = outbox.add(
      {
        id,
        cameraId: 'cam-2',
        type: 'dwell',
        topic: 'ep/gw-1/event/dwell',
        evidencePath: '/ev/x.jpg',
        evidenceSha256: 'ab'.repeat(32),
        evidenceBytes: 1234,
      },
      (seq) => ({ id, seq }),
    );
    t.equal(a.seq, 1);
    t.equal(b.seq, 2);
    const [r1, r2] = outbox.pending(10);
    t.match(r1, {
      seq: 1,
      cameraId: 'cam-1',
      type: 'presence',
      payload: '{"n":1}',
      priority: 'normal',
      bytes: 7,
      evidencePath: null,
      evidenceState: null,
      state: 'pending',
      attempts: 0,
      ackedAt: null,
    });
    t.match(r2, {
      seq: 2,
      id,
      cameraId: 'cam-2',
      type: 'dwell',
      topic: 'ep/gw-1/event/dwell',
      evidencePath: '/ev/x.jpg',
      evidenceSha256: 'ab'.repeat(32),
      evidenceBytes: 1234,
      evidenceState: 'kept',
    });
    t.equal(outbox.stats().bytes, 7 + r2!.bytes + 1234, 'bytes count payloads and kept evidence');
    t.same(JSON.parse(r2!.payload), { id, seq: 2 });
    t.ok(Math.abs(r1!.createdAt - Date.now()) < 60_000, 'created_at is ms since the epoch');
    t.end();
  });

  t.test('a failing payload builder commits nothing', (t) => {
    const outbox = Outbox.open(tempFile(t));
    t.teardown(() => outbox.close());
    t.throws(
      () =>
        outbox.add(event(1), () => {
          throw new Error('boom');
        }),
      /boom/,
    );
    t.match(outbox.stats(), { pending: 0, acked: 0, oldestPendingTs: null, lastSeq: 0, bytes: 0 });
    t.end();
  });

  t.test('a duplicate event id is refused with the id and the file named', (t) => {
    const file = tempFile(t);
    const outbox = Outbox.open(file);
    t.teardown(() => outbox.close());
    const e = event(1);
    outbox.add(e);
    const err = t.throws(() => outbox.add(e)) as Error;
    t.ok(err instanceof OutboxError);
    t.match(err.message, e.id);
    t.match(err.message, file);
    t.equal((err as OutboxError).code, 'duplicate');
    t.end();
  });

  t.test('pending is in seq order, honours limit and afterSeq; markAcked and stats', (t) => {
    const outbox = Outbox.open(tempFile(t));
    t.teardown(() => outbox.close());
    for (let n = 1; n <= 10; n++) outbox.add(event(n, { cameraId: `cam-${n % 3}` }));
    t.same(
      outbox.pending(4).map((r) => r.seq),
      [1, 2, 3, 4],
    );
    t.same(
      outbox.pending(4, 8).map((r) => r.seq),
      [9, 10],
    );
    t.equal(outbox.markAcked(1, 3, 5), 3);
    t.equal(outbox.markAcked(3), 0, 'acking twice changes nothing');
    t.same(
      outbox.pending(100).map((r) => r.seq),
      [2, 4, 6, 7, 8, 9, 10],
    );
    outbox.markSent([2, 2, 4]);
    t.same(
      outbox.pending(2).map((r) => [r.state, r.attempts]),
      [
        ['sent', 2],
        ['sent', 1],
      ],
    );
    const stats = outbox.stats();
    t.match(stats, { pending: 5, sent: 2, acked: 3, lastSeq: 10 });
    t.equal(stats.oldestPendingTs, outbox.pending(1)[0]!.createdAt);
    outbox.markAcked(2, 4, 6, 7, 8, 9, 10);
    t.match(outbox.stats(), { pending: 0, sent: 0, acked: 10, oldestPendingTs: null, lastSeq: 10 });
    t.end();
  });

  t.test('seq keeps increasing across reopen and is never reused after the newest rows are deleted', (t) => {
    const file = tempFile(t);
    let outbox = Outbox.open(file);
    for (let n = 1; n <= 3; n++) outbox.add(event(n));
    outbox.close();
    outbox = Outbox.open(file);
    t.equal(outbox.add(event(4)).seq, 4);
    outbox.close();
    // Eviction (a later issue) deletes rows; AUTOINCREMENT must still never hand out 3 or 4 again.
    const raw = new Database(file);
    raw.prepare('DELETE FROM event_rows WHERE seq >= 3').run();
    raw.close();
    outbox = Outbox.open(file);
    t.teardown(() => outbox.close());
    t.equal(outbox.add(event(5)).seq, 5);
    t.equal(outbox.stats().lastSeq, 5);
    t.end();
  });

  t.test('the file is WAL, synchronous=FULL, at the current schema version', (t) => {
    const file = tempFile(t);
    const outbox = Outbox.open(file);
    outbox.add(event(1));
    t.ok(existsSync(`${file}-wal`), 'a WAL file exists while open');
    outbox.close();
    const raw = new Database(file, { readonly: true });
    t.teardown(() => raw.close());
    t.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
    t.equal(raw.pragma('user_version', { simple: true }), 4);
    t.end();
  });

  t.test('a file that is not a database: clear error naming it, file untouched', (t) => {
    const file = tempFile(t, 'notadb.db');
    const junk = Buffer.from('this is a log file someone pointed the outbox at by mistake\n'.repeat(20));
    writeFileSync(file, junk);
    const err = t.throws(() => Outbox.open(file)) as Error;
    t.ok(err instanceof OutboxError);
    t.equal((err as OutboxError).file, file);
    t.match(err.message, `outbox ${file} is not a readable SQLite database`);
    t.equal((err as OutboxError).code, 'corrupt');
    t.same(readFileSync(file), junk, 'contents unchanged');
    t.same(readdirSync(join(file, '..')), ['notadb.db'], 'no -wal/-shm left beside it');
    t.end();
  });

  t.test('a schema newer than this code is refused, naming the file', (t) => {
    const file = tempFile(t);
    const raw = new Database(file);
    raw.pragma('user_version = 99');
    raw.close();
    t.throws(() => Outbox.open(file), { name: 'OutboxError', message: new RegExp(`${file} has schema version 99`) });
    t.end();
  });

  t.test('an unopenable path is an OutboxError naming it', (t) => {
    const file = join(tempFile(t), 'no-such-dir', 'outbox.db');
    t.throws(() => Outbox.open(file), { name: 'OutboxError', message: new RegExp(file) });
    t.end();
  });

  t.test('add latency with an fsync per commit (informational)', (t) => {
    const outbox = Outbox.open(tempFile(t));
    t.teardown(() => outbox.close());
    const n = 200;
    let started = performance.now();
    for (let i = 0; i < n; i++) outbox.add(event(i));
    const addMs = (performance.now() - started) / n;
    started = performance.now();
    for (let seq = 1; seq <= n; seq += 20) outbox.markAcked(...Array.from({ length: 20 }, (_v, k) => seq + k));
    const ackBatchMs = (performance.now() - started) / (n / 20);
    t.comment(`add: ${addMs.toFixed(2)} ms each; markAcked of 20 rows: ${ackBatchMs.toFixed(2)} ms per batch (${tmpdir()})`);
    t.equal(outbox.stats().acked, n);
    t.end();
  });

  t.test('add is durable: a writer SIGKILLed mid-stream loses nothing it reported', async (t) => {
    const file = tempFile(t);
    // Only the TypeScript loader: the writer child must not report into this test run.
    const execArgv = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^_?TAP/.test(k)));
    const child = spawn(process.execPath, [...execArgv, fileURLToPath(import.meta.url)], {
      env: { ...env, EDGEPATROL_OUTBOX_WRITER: file },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    t.teardown(() => {
      child.kill('SIGKILL');
    });
    const reported: { seq: number; id: string }[] = [];
    await new Promise<void>((resolve, reject) => {
      child.on('message', (m: { seq: number; id: string }) => {
        reported.push(m);
        if (reported.length === 100) {
          child.kill('SIGKILL');
          resolve();
        }
      });
      child.once('exit', () => reject(new Error(`writer exited early: ${stderr}`)));
    });
    t.equal(await exited, 'SIGKILL');
    const outbox = Outbox.open(file);
    t.teardown(() => outbox.close());
    const rows = outbox.pending(100_000);
    const byId = new Map(rows.map((r) => [r.id, r]));
    const missing = reported.filter((r) => byId.get(r.id)?.seq !== r.seq);
    t.same(missing, [], 'every reported event is in the file with its seq');
    t.same(
      rows.map((r) => r.seq),
      rows.map((_r, i) => i + 1),
      'seqs are 1..n without gaps',
    );
    t.ok(
      rows.every((r) => (JSON.parse(r.payload) as { seq: number }).seq === r.seq),
      'each payload carries its own seq',
    );
    t.equal(outbox.add(event(0)).seq, rows.length + 1, 'the next seq follows the last committed one');
  });

  t.test(
    "checkpoint: 'background' copies the WAL into the database file from a worker thread; inline leaves it to SQLite's 1,000-page threshold",
    async (t) => {
      // 300 rows of ~2 kB: a few hundred WAL pages, under both the inline threshold and the background backstop.
      const fill = (outbox: Outbox) =>
        outbox.addMany(Array.from({ length: 300 }, (_v, i) => ({ ...event(i), payload: { n: i, pad: 'x'.repeat(2000) } })));
      const size = (file: string) => statSync(file).size;
      const inlineFile = tempFile(t);
      const inline = Outbox.open(inlineFile);
      fill(inline);
      const bgFile = tempFile(t);
      const background = Outbox.open(bgFile, { checkpoint: 'background' });
      const before = size(bgFile);
      fill(background);
      // The worker starts in well under a second from dist/; from TypeScript sources its loader compiles first.
      const deadline = Date.now() + 30_000;
      while (size(bgFile) < before + 300 * 2000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      t.ok(size(bgFile) >= before + 300 * 2000, `the worker checkpointed the rows into ${bgFile} (${size(bgFile)} bytes)`);
      t.ok(size(inlineFile) < 300 * 2000, `inline: still in the WAL (${size(inlineFile)} bytes in the database file)`);
      t.equal(background.stats().pending, 300, 'every row readable');
      background.close();
      inline.close();
      const reopened = Outbox.open(bgFile);
      t.equal(reopened.stats().pending, 300, 'and after reopening');
      reopened.close();
    },
  );
}
