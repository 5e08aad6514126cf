import { renameSync, statSync, unlinkSync, existsSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { v7 as uuidv7 } from 'uuid';
import { migrations } from './migrations.js';
import { ALERT_SCHEMA_ID } from './alert.js';
/** Eviction order: low goes first. */
export const priorities = ['low', 'normal', 'high'];
const rank = { low: 0, normal: 1, high: 2 };
/** SQLite's default: the committing connection checkpoints once the WAL holds this many pages. */
const INLINE_CHECKPOINT_PAGES = 1000;
/**
 * With the background checkpointer, the inline checkpoint still runs at this size: under a steady stream of
 * commits the worker never finds a quiet moment for the WAL to start over from its beginning, and the inline
 * checkpoint, finding most frames already copied by the worker, is what lets it (16 MiB of WAL at most).
 */
const BACKSTOP_CHECKPOINT_PAGES = 4_000;
const CHECKPOINT_INTERVAL_MS = 200;
/** An outbox that cannot be opened or used; `file` names the SQLite file so a technician can find it. */
export class OutboxError extends Error {
    file;
    name = 'OutboxError';
    constructor(message, file, options) {
        super(message, options);
        this.file = file;
        this.code = options?.code;
    }
    code;
}
const rowColumns = `seq, id, camera_id AS cameraId, type, topic, payload, priority, bytes, evidence_path AS evidencePath,
  evidence_sha256 AS evidenceSha256, evidence_bytes AS evidenceBytes, evidence_state AS evidenceState,
  created_at AS createdAt, state, attempts, acked_at AS ackedAt, confirmed_at AS confirmedAt`;
const outgoingColumns = `seq, id, topic, payload, bytes, evidence_path AS evidencePath, evidence_sha256 AS evidenceSha256,
  evidence_state AS evidenceState`;
/** Camera id of rows the outbox writes itself (alerts): they keep their own order, apart from every camera's. */
export const GATEWAY_STREAM = '_gateway';
function sqliteCode(err) {
    return err instanceof Database.SqliteError ? err.code : undefined;
}
function message(err) {
    return err instanceof Error ? err.message : String(err);
}
function toText(payload) {
    return typeof payload === 'string' ? payload : JSON.stringify(payload);
}
/** Thrown inside the add transaction to roll it back when the event cannot fit. */
class DoesNotFit extends Error {
    index = 0;
}
/**
 * The durable queue between event creation and MQTT. Durability: WAL journal with synchronous=FULL, so a
 * transaction is fsynced to the WAL before it commits — an event `add` returned for survives a process
 * crash and a power loss (given a disk that honours fsync). Synchronous by design: better-sqlite3 calls take
 * microseconds to a few ms and the agent has one writer.
 *
 * The outbox owns the evidence files its rows point to from the moment they are added: it deletes them when
 * it evicts them or prunes delivered rows.
 */
export class Outbox {
    file;
    delivery;
    db;
    log;
    folder;
    maxBytes;
    opts;
    now;
    st;
    /** Evidence files of committed deletions; unlinked after the commit, so a rolled-back eviction keeps its files. */
    unlinkAfterCommit = [];
    lastAlertAt = -Infinity;
    checkpointer;
    constructor(db, file, opts) {
        this.db = db;
        this.file = file;
        this.opts = opts;
        this.log = opts.log;
        this.folder = dirname(file);
        this.delivery = opts.delivery ?? 'broker';
        this.maxBytes = opts.maxBytes ?? Infinity;
        this.now = opts.now ?? Date.now;
        const delivered = this.delivery === 'service' ? `state = 'confirmed'` : `state IN ('acked', 'confirmed')`;
        const undelivered = `NOT (${delivered})`;
        const p = (sql) => db.prepare(sql);
        this.st = {
            insert: p(`INSERT INTO events (id, camera_id, type, topic, payload, bytes, priority, evidence_path, evidence_sha256,
        evidence_bytes, evidence_state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
            setPayload: p('UPDATE events SET payload = ?, bytes = ? WHERE seq = ?'),
            unsent: p(`SELECT ${rowColumns} FROM events WHERE state IN ('pending', 'sent') AND seq > ? ORDER BY seq LIMIT ?`),
            outgoing: p(`SELECT ${outgoingColumns} FROM events WHERE state IN ('pending', 'sent') AND seq > ? ORDER BY seq LIMIT ?`),
            ack: p(`UPDATE events SET state = 'acked', acked_at = ? WHERE seq = ? AND state IN ('pending', 'sent')`),
            confirm: p(`UPDATE events SET state = 'confirmed', confirmed_at = ?, acked_at = coalesce(acked_at, ?) WHERE id = ? AND state != 'confirmed'`),
            sent: p(`UPDATE events SET attempts = attempts + ?, state = CASE WHEN state = 'pending' THEN 'sent' ELSE state END WHERE seq = ?`),
            sentAcked: p(`UPDATE events SET attempts = attempts + ?, state = 'acked', acked_at = ? WHERE seq = ? AND state IN ('pending', 'sent')`),
            usage: p('SELECT bytes FROM usage WHERE id = 1'),
            delivered: p(`SELECT seq, priority, bytes, evidence_path AS evidencePath, evidence_state AS evidenceState, evidence_bytes AS evidenceBytes
        FROM events WHERE ${delivered} AND seq != ? ORDER BY seq LIMIT 64`),
            evidenceOf: p(`SELECT seq, priority, bytes, evidence_path AS evidencePath, evidence_state AS evidenceState, evidence_bytes AS evidenceBytes
        FROM events WHERE priority = ? AND evidence_state = 'kept' AND ${undelivered} AND seq != ? ORDER BY seq LIMIT 64`),
            eventsOf: p(`SELECT seq, priority, bytes, evidence_path AS evidencePath, evidence_state AS evidenceState, evidence_bytes AS evidenceBytes
        FROM events WHERE priority = ? AND ${undelivered} AND seq != ? ORDER BY seq LIMIT 64`),
            expiredOf: p(`SELECT seq, priority, bytes, evidence_path AS evidencePath, evidence_state AS evidenceState, evidence_bytes AS evidenceBytes
        FROM events WHERE priority = ? AND ${undelivered} AND created_at < ? ORDER BY seq LIMIT 256`),
            dropEvidence: p(`UPDATE events SET evidence_state = 'dropped' WHERE seq = ?`),
            deleteRow: p('DELETE FROM events WHERE seq = ?'),
            countDrop: p(`INSERT INTO drops (what, reason, priority, count, bytes) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (what, reason, priority) DO UPDATE SET count = count + excluded.count, bytes = bytes + excluded.bytes`),
            unreported: p(`SELECT what, reason, priority, count - reported AS count, bytes FROM drops WHERE count > reported`),
            markReported: p('UPDATE drops SET reported = count'),
            drops: p('SELECT what, reason, priority, count, bytes FROM drops ORDER BY what, reason, priority'),
            requeue: p(`UPDATE events SET state = 'pending' WHERE state = 'acked' AND acked_at < ?`),
            stats: p(`SELECT
        (SELECT count(*) FROM events WHERE state = 'pending') AS pending,
        (SELECT count(*) FROM events WHERE state = 'sent') AS sent,
        (SELECT count(*) FROM events WHERE state = 'acked') AS acked,
        (SELECT count(*) FROM events WHERE state = 'confirmed') AS confirmed,
        (SELECT min(created_at) FROM events WHERE ${undelivered}) AS oldestPendingTs,
        coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0) AS lastSeq,
        (SELECT bytes FROM usage WHERE id = 1) AS bytes,
        coalesce((SELECT sum(count) FROM drops WHERE what = 'event'), 0) AS droppedEvents,
        coalesce((SELECT sum(count) FROM drops WHERE what = 'evidence'), 0) AS droppedEvidence`),
            byId: p(`SELECT ${rowColumns} FROM events WHERE id = ?`),
            bySeq: p(`SELECT ${rowColumns} FROM events WHERE seq = ?`),
            list: p(`SELECT ${rowColumns} FROM events WHERE seq > ? AND created_at >= ? AND (? IS NULL OR state = ?) ORDER BY seq LIMIT ?`),
            replay: p(`UPDATE events SET state = 'pending' WHERE created_at >= ? AND state != 'pending'`),
            replayCount: p(`SELECT count(*) AS n FROM events WHERE created_at >= ? AND state != 'pending'`),
            spaceVictims: p(`SELECT seq, priority, bytes, evidence_path AS evidencePath, evidence_state AS evidenceState, evidence_bytes AS evidenceBytes,
        (${delivered}) AS delivered FROM events WHERE evidence_state = 'kept'
        ORDER BY delivered DESC, CASE priority WHEN 'low' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END, seq`),
        };
    }
    /**
     * Opens (creating if absent) and migrates the outbox file. Throws OutboxError naming the file. With
     * onCorrupt 'move-aside', a damaged file is renamed to `<file>.corrupt-<time>` (kept for inspection), a new
     * outbox is made and an `outbox_corrupt` alert event is its first row.
     */
    static open(file, opts = {}) {
        try {
            return Outbox.openOnce(file, opts);
        }
        catch (err) {
            if (!(err instanceof OutboxError) || err.code !== 'corrupt' || opts.onCorrupt !== 'move-aside')
                throw err;
            const movedTo = `${file}.corrupt-${new Date(opts.now?.() ?? Date.now()).toISOString().replace(/[:.]/g, '-')}`;
            for (const suffix of ['', '-wal', '-shm']) {
                if (existsSync(file + suffix))
                    renameSync(file + suffix, movedTo + suffix);
            }
            opts.log?.error({ file, movedTo, err: err.message }, `outbox ${file} is damaged; moved it to ${movedTo} and started a new outbox (events in the old file are not sent; keep it for inspection)`);
            const outbox = Outbox.openOnce(file, opts);
            outbox.afterWrite(() => outbox.transaction(() => outbox.addAlert('outbox_corrupt', `outbox ${file} was damaged and replaced by a new one; the old file is kept as ${movedTo}`, { movedTo, error: err.message })));
            return outbox;
        }
    }
    static openOnce(file, opts) {
        let db;
        try {
            db = new Database(file);
        }
        catch (err) {
            throw new OutboxError(`cannot open outbox ${file}: ${message(err)}`, file, { cause: err });
        }
        try {
            const from = prepare(db, file);
            const outbox = new Outbox(db, file, opts);
            if (opts.checkpoint === 'background')
                outbox.startCheckpointer();
            opts.log?.info({ file, schema: migrations.length, migratedFrom: from, ...outbox.stats() }, 'outbox open');
            return outbox;
        }
        catch (err) {
            db.close();
            if (err instanceof OutboxError)
                throw err;
            const code = sqliteCode(err);
            if (code === 'SQLITE_NOTADB' || code?.startsWith('SQLITE_CORRUPT')) {
                throw new OutboxError(`outbox ${file} is not a readable SQLite database (${message(err)}); it was left untouched: ` +
                    'move it aside to start a new outbox, or keep it for inspection', file, { cause: err, code: 'corrupt' });
            }
            throw new OutboxError(`cannot open outbox ${file}: ${message(err)}`, file, { cause: err });
        }
    }
    add(e, build) {
        const [result] = this.addMany([e], build ? (_e, seq) => build(seq) : undefined);
        return result;
    }
    /** Stores several events in one transaction (one fsync): the batched form of add, same rules. */
    addMany(events, build) {
        for (const e of events) {
            if (!build && e.payload === undefined)
                throw new TypeError(`outbox add: event ${e.id} has neither a payload nor a payload builder`);
        }
        const sizes = events.map((e) => (e.evidencePath ? (e.evidenceBytes ?? this.fileSize(e.evidencePath)) : 0));
        const run = () => this.transaction(() => events.map((e, i) => {
            try {
                return this.insertOne(e, sizes[i], build);
            }
            catch (err) {
                if (err instanceof DoesNotFit)
                    err.index = i;
                throw err;
            }
        }));
        let added;
        try {
            added = this.afterWrite(run);
        }
        catch (err) {
            if (err instanceof DoesNotFit) {
                const e = events[err.index];
                const priority = e.priority ?? 'normal';
                this.transaction(() => {
                    this.st.countDrop.run('event', 'full', priority, 1, 0);
                    if (e.evidencePath)
                        this.st.countDrop.run('evidence', 'full', priority, 1, sizes[err.index]);
                    else if (e.evidenceDropped)
                        this.st.countDrop.run('evidence', e.evidenceDropped.reason, priority, 1, e.evidenceDropped.bytes);
                });
                if (e.evidencePath)
                    this.unlink(e.evidencePath);
                this.log?.error({ file: this.file, event: e.id, priority, maxBytes: this.maxBytes }, `outbox ${this.file} is full: ${priority} event ${e.id} dropped (nothing of lower priority left to evict)`);
                this.reportDropsIfDue();
                throw new OutboxError(`outbox ${this.file} is full (max ${this.maxBytes} bytes); event ${e.id} was dropped`, this.file, { code: 'full' });
            }
            if (sqliteCode(err) === 'SQLITE_CONSTRAINT_UNIQUE') {
                const dup = events.find((e) => this.st.byId.get(e.id)) ?? events[0];
                throw new OutboxError(`event id ${dup.id} is already in outbox ${this.file}`, this.file, { cause: err, code: 'duplicate' });
            }
            if (sqliteCode(err) === 'SQLITE_FULL') {
                const freed = this.freeDiskSpace(4 * 1024 * 1024 + sizes.reduce((a, b) => a + b, 0));
                this.log?.error({ file: this.file, freedFiles: freed.files, freedBytes: freed.bytes }, `disk full under ${this.folder}: dropped ${freed.files} evidence image(s) (${freed.bytes} bytes) to keep events; free space on that disk`);
                added = this.afterWrite(run);
            }
            else {
                throw err;
            }
        }
        // After the add has committed: an alert that cannot be written must not look like a failed add.
        this.reportDropsIfDue();
        return added;
    }
    insertOne(e, evidenceBytes, build, capped = true) {
        const priority = e.priority ?? 'normal';
        if (!(priority in rank))
            throw new TypeError(`outbox add: event ${e.id} has unknown priority ${String(priority)}`);
        const dropped = e.evidencePath ? undefined : e.evidenceDropped;
        const text = build ? '' : toText(e.payload);
        const { lastInsertRowid } = this.st.insert.run(e.id, e.cameraId, e.type, e.topic, text, Buffer.byteLength(text), priority, e.evidencePath ?? null, e.evidenceSha256 ?? null, dropped ? dropped.bytes : evidenceBytes, e.evidencePath ? 'kept' : dropped ? 'dropped' : null, this.now());
        const seq = Number(lastInsertRowid);
        if (dropped)
            this.st.countDrop.run('evidence', dropped.reason, priority, 1, dropped.bytes);
        if (build) {
            // The payload embeds its own seq, so it is written in the same transaction as the row.
            const built = toText(build(e, seq));
            this.st.setPayload.run(built, Buffer.byteLength(built), seq);
        }
        if (capped)
            this.makeRoom(seq, priority);
        return { seq };
    }
    /**
     * Brings the byte total under the cap after inserting row `seq`, in this order: delivered rows (no loss),
     * then evidence of undelivered rows, then the new row's own evidence, then undelivered rows; each step from
     * low priority to the new row's priority, oldest first. Nothing of higher priority than the new row is touched.
     */
    makeRoom(seq, priority) {
        if (this.usage() <= this.maxBytes)
            return;
        const over = () => this.usage() > this.maxBytes;
        const allowed = priorities.filter((p) => rank[p] <= rank[priority]);
        for (let batch = this.st.delivered.all(seq); batch.length && over(); batch = this.st.delivered.all(seq)) {
            for (const v of batch) {
                if (!over())
                    break;
                this.deleteRow(v, null);
            }
        }
        for (const p of allowed) {
            for (let batch = this.st.evidenceOf.all(p, seq); batch.length && over(); batch = this.st.evidenceOf.all(p, seq)) {
                for (const v of batch) {
                    if (!over())
                        break;
                    this.dropEvidence(v, 'full');
                }
            }
        }
        const own = this.st.bySeq.get(seq);
        if (over() && own.evidenceState === 'kept')
            this.dropEvidence({ ...own }, 'full');
        for (const p of allowed) {
            for (let batch = this.st.eventsOf.all(p, seq); batch.length && over(); batch = this.st.eventsOf.all(p, seq)) {
                for (const v of batch) {
                    if (!over())
                        break;
                    this.deleteRow(v, 'full');
                }
            }
        }
        if (over())
            throw new DoesNotFit();
    }
    dropEvidence(v, reason) {
        this.st.dropEvidence.run(v.seq);
        this.st.countDrop.run('evidence', reason, v.priority, 1, v.evidenceBytes);
        if (v.evidencePath)
            this.unlinkAfterCommit.push(v.evidencePath);
    }
    /** Deletes a row and its evidence file; `reason` null means it was delivered (pruned, not a drop). */
    deleteRow(v, reason) {
        this.st.deleteRow.run(v.seq);
        if (reason) {
            this.st.countDrop.run('event', reason, v.priority, 1, v.bytes);
            if (v.evidenceState === 'kept')
                this.st.countDrop.run('evidence', reason, v.priority, 1, v.evidenceBytes);
        }
        if (v.evidencePath && v.evidenceState === 'kept')
            this.unlinkAfterCommit.push(v.evidencePath);
    }
    /** Up to `limit` rows not yet acknowledged (pending or sent) with seq > afterSeq, in seq order. */
    pending(limit, afterSeq = 0) {
        return this.st.unsent.all(afterSeq, limit);
    }
    /** The uplink's read: `pending(limit, afterSeq)` with only the columns a publish needs. */
    outgoing(limit, afterSeq = 0) {
        return this.st.outgoing.all(afterSeq, limit);
    }
    /** Records that rows were handed to MQTT (state sent, attempts + 1): a row with attempts > 1 went out more than once. */
    markSent(seqs) {
        this.stateTransaction(() => { for (const seq of seqs)
            this.st.sent.run(1, seq); });
    }
    /** Marks rows acked (by the broker's PUBACK) in one transaction; returns how many were still unacknowledged. */
    markAcked(...seqs) {
        const at = this.now();
        return this.stateTransaction(() => seqs.reduce((n, seq) => n + this.st.ack.run(at, seq).changes, 0));
    }
    /**
     * markSent and markAcked in one transaction, the uplink's bookkeeping per drain step; returns how many rows
     * became acked. `sent` is applied first, so a row may be sent and acked in the same call.
     */
    recordDelivery(sent, acked) {
        const at = this.now();
        return this.stateTransaction(() => {
            const times = new Map();
            for (const seq of sent)
                times.set(seq, (times.get(seq) ?? 0) + 1);
            let changed = 0;
            for (const seq of acked) {
                const k = times.get(seq) ?? 0;
                times.delete(seq);
                // At speed most rows are handed over and PUBACKed within one batch: one row write instead of two
                // (bench/outbox.ts; docs/decisions.md). A row already acked or confirmed only counts the attempt.
                if (this.st.sentAcked.run(k, at, seq).changes)
                    changed++;
                else if (k)
                    this.st.sent.run(k, seq);
            }
            for (const [seq, k] of times)
                this.st.sent.run(k, seq);
            return changed;
        });
    }
    /** Marks events confirmed by the task service's ack (by event id); returns how many changed. Unknown ids are ignored. */
    markConfirmed(ids) {
        const at = this.now();
        return this.stateTransaction(() => ids.reduce((n, id) => n + this.st.confirm.run(at, at, id).changes, 0));
    }
    /** The evidence file of a row was gone when it was to be published: the event goes out without it, counted. */
    markEvidenceMissing(seq) {
        const row = this.st.bySeq.get(seq);
        if (!row || row.evidenceState !== 'kept')
            return;
        this.transaction(() => {
            this.st.dropEvidence.run(seq);
            this.st.countDrop.run('evidence', 'missing', row.priority, 1, row.evidenceBytes);
        });
        this.log?.warn({ file: this.file, seq, event: row.id, evidence: row.evidencePath }, `evidence file ${row.evidencePath} of event ${row.id} is missing; the event is sent without it`);
        this.reportDropsIfDue();
    }
    /**
     * Periodic upkeep, called by the uplink every few seconds: expires rows past their priority's time-to-live,
     * (delivery: service) re-queues acked rows the service has not confirmed in time, and writes a drop alert
     * when drops are unreported and the alert interval has passed.
     */
    maintain() {
        const now = this.now();
        let expired = 0;
        let requeued = 0;
        this.afterWrite(() => this.transaction(() => {
            for (const p of priorities) {
                const ttl = this.opts.ttlMs?.[p];
                if (ttl === undefined)
                    continue;
                for (let batch = this.st.expiredOf.all(p, now - ttl); batch.length; batch = this.st.expiredOf.all(p, now - ttl)) {
                    for (const v of batch)
                        this.deleteRow(v, 'ttl');
                    expired += batch.length;
                }
            }
            if (this.delivery === 'service')
                requeued = this.st.requeue.run(now - (this.opts.confirmTimeoutMs ?? 60_000)).changes;
        }));
        if (expired)
            this.log?.warn({ file: this.file, expired }, `outbox: ${expired} undelivered event(s) expired (time-to-live) and were dropped`);
        const alerts = this.reportDropsIfDue() ? 1 : 0;
        return { expired, requeued, alerts };
    }
    /**
     * Deletes evidence files to free at least `bytes` on the disk: delivered rows' first, then undelivered ones
     * from low priority, oldest first (counted as disk_full drops). For the caller that got ENOSPC writing a file.
     */
    freeDiskSpace(bytes) {
        let files = 0;
        let freed = 0;
        // Files go first: with the disk full, SQLite may not be able to write until some space is back.
        for (const v of this.st.spaceVictims.all()) {
            if (freed >= bytes)
                break;
            if (v.evidencePath)
                this.unlink(v.evidencePath);
            freed += v.evidenceBytes;
            files++;
            try {
                this.transaction(() => {
                    this.st.dropEvidence.run(v.seq);
                    if (!v.delivered)
                        this.st.countDrop.run('evidence', 'disk_full', v.priority, 1, v.evidenceBytes);
                });
            }
            catch (err) {
                // Still no room to record it: the uplink will find the file gone and count it as missing.
                if (sqliteCode(err) !== 'SQLITE_FULL')
                    throw err;
            }
        }
        return { files, bytes: freed };
    }
    /** Sets rows created at or after `sinceMs` (all rows by default) back to pending, so they are published again. */
    replay(sinceMs = 0) {
        return this.transaction(() => this.st.replay.run(sinceMs).changes);
    }
    get(idOrSeq) {
        const seq = typeof idOrSeq === 'number' ? idOrSeq : /^\d+$/.test(idOrSeq) ? Number(idOrSeq) : undefined;
        return (seq === undefined ? this.st.byId.get(idOrSeq) : this.st.bySeq.get(seq));
    }
    /** Rows in seq order, for the CLI. */
    list(opts = {}) {
        const state = opts.state ?? null;
        return this.st.list.all(opts.afterSeq ?? 0, opts.sinceMs ?? 0, state, state, opts.limit ?? 100);
    }
    drops() {
        return this.st.drops.all();
    }
    /** Absolute path of an evidence file named by a row. */
    evidenceFile(path) {
        return isAbsolute(path) ? path : join(this.folder, path);
    }
    stats() {
        const s = this.st.stats.get();
        return {
            pending: s.pending,
            sent: s.sent,
            acked: s.acked,
            confirmed: s.confirmed,
            oldestPendingTs: s.oldestPendingTs ?? null,
            lastSeq: s.lastSeq,
            bytes: s.bytes,
            maxBytes: Number.isFinite(this.maxBytes) ? this.maxBytes : null,
            dropped: { events: s.droppedEvents, evidence: s.droppedEvidence },
        };
    }
    close() {
        if (!this.db.open)
            return;
        const checkpointer = this.checkpointer;
        this.checkpointer = undefined;
        checkpointer?.postMessage('stop');
        this.db.close();
        this.log?.info({ file: this.file }, 'outbox closed');
    }
    /**
     * Moves WAL checkpoints to a worker thread (docs/decisions.md: they were the largest stall of the drain). If
     * the worker fails, inline checkpoints come back, so the WAL never grows without bound.
     */
    startCheckpointer() {
        const url = new URL(import.meta.url.endsWith('.ts') ? './checkpointer.ts' : './checkpointer.js', import.meta.url);
        const worker = new Worker(url, { workerData: { file: this.file, intervalMs: CHECKPOINT_INTERVAL_MS } });
        // Housekeeping only: it must not keep a process alive that is otherwise done.
        worker.unref();
        this.checkpointer = worker;
        this.db.pragma(`wal_autocheckpoint = ${BACKSTOP_CHECKPOINT_PAGES}`);
        const fallBack = (why) => {
            if (this.checkpointer !== worker)
                return;
            this.checkpointer = undefined;
            if (this.db.open)
                this.db.pragma(`wal_autocheckpoint = ${INLINE_CHECKPOINT_PAGES}`);
            this.log?.warn({ file: this.file, why }, `outbox ${this.file}: background WAL checkpoints stopped (${why}); checkpointing on the main thread again`);
        };
        worker.on('error', (err) => fallBack(message(err)));
        worker.on('exit', (code) => fallBack(`worker exited with code ${code}`));
    }
    /** Writes an alert row (high priority, its own stream, outside the byte cap), when alerts are configured. */
    addAlert(kind, text, detail) {
        const alerts = this.opts.alerts;
        if (!alerts)
            return;
        const id = uuidv7();
        const at = new Date(this.now()).toISOString();
        this.insertOne({ id, cameraId: GATEWAY_STREAM, type: kind, topic: `${alerts.prefix}/${alerts.gatewayId}/alert/${kind}`, priority: 'high' }, 0, (_e, seq) => ({ schema: ALERT_SCHEMA_ID, id, seq, gatewayId: alerts.gatewayId, kind, at, message: text, detail }), 
        // Exempt from the cap: an alert is small and rare (one per interval), and evicting for it would create
        // drops that only the next alert could announce.
        false);
    }
    /** One alert per interval summarising drops not yet announced; returns true when it wrote one. */
    reportDropsIfDue() {
        if (!this.opts.alerts)
            return false;
        const now = this.now();
        if (now - this.lastAlertAt < (this.opts.alerts.intervalMs ?? 60_000))
            return false;
        let wrote;
        try {
            wrote = this.afterWrite(() => this.transaction(() => this.writeDropAlert()));
        }
        catch (err) {
            // The drops stay unreported and go into the next alert; the events that caused them are committed already.
            if (sqliteCode(err) !== 'SQLITE_FULL')
                throw err;
            this.log?.warn({ file: this.file }, `disk full under ${this.folder}: the outbox_drop alert is postponed until there is room`);
            return false;
        }
        if (wrote)
            this.lastAlertAt = now;
        return wrote;
    }
    /** Inside a transaction: one alert row for the drops not yet announced; false when there are none. */
    writeDropAlert() {
        const fresh = this.st.unreported.all();
        if (fresh.length === 0)
            return false;
        const total = this.stats().dropped;
        const events = fresh.filter((d) => d.what === 'event').reduce((n, d) => n + d.count, 0);
        const evidence = fresh.filter((d) => d.what === 'evidence').reduce((n, d) => n + d.count, 0);
        this.st.markReported.run();
        this.addAlert('outbox_drop', `outbox dropped ${events} event(s) and ${evidence} evidence image(s) since the last alert`, { since: Number.isFinite(this.lastAlertAt) ? new Date(this.lastAlertAt).toISOString() : null,
            dropped: fresh.map(({ what, reason, priority, count }) => ({ what, reason, priority, count })), total });
        return true;
    }
    usage() {
        return this.st.usage.get().bytes;
    }
    transaction(fn) {
        return this.db.transaction(fn).immediate();
    }
    /**
     * A delivery-state change (sent, acked, confirmed) committed without its own fsync (synchronous=NORMAL for
     * this transaction only). It survives a crash of the agent (the WAL is in the OS's cache) and becomes durable
     * with the next fsynced commit or checkpoint; a power cut may undo the newest ones, which only means those
     * events are sent again — duplicates, never loss. Adds and evictions stay synchronous=FULL.
     * Measured by bench/outbox.ts: the drain rate is bound by these commits (docs/decisions.md).
     */
    stateTransaction(fn) {
        this.db.pragma('synchronous = NORMAL');
        try {
            return this.transaction(fn);
        }
        finally {
            this.db.pragma('synchronous = FULL');
        }
    }
    /** Runs a write; evidence files of rows it deleted are removed once it has committed. */
    afterWrite(fn) {
        this.unlinkAfterCommit = [];
        let result;
        try {
            result = fn();
        }
        catch (err) {
            this.unlinkAfterCommit = [];
            throw err;
        }
        const paths = this.unlinkAfterCommit;
        this.unlinkAfterCommit = [];
        for (const path of paths)
            this.unlink(path);
        return result;
    }
    unlink(path) {
        try {
            unlinkSync(this.evidenceFile(path));
        }
        catch (err) {
            if (err.code !== 'ENOENT')
                this.log?.warn({ file: this.evidenceFile(path), err: message(err) }, 'cannot delete an evidence file');
        }
    }
    fileSize(path) {
        try {
            return statSync(this.evidenceFile(path)).size;
        }
        catch (err) {
            throw new OutboxError(`evidence file ${this.evidenceFile(path)} cannot be read: ${message(err)}`, this.file, { cause: err });
        }
    }
}
/** Sets the durability pragmas, checks the file and migrates; returns the schema version the file had. */
function prepare(db, file) {
    // Read before any write: a file that is not a database fails here, before SQLite could touch it.
    const from = db.pragma('user_version', { simple: true });
    if (from > migrations.length) {
        throw new OutboxError(`outbox ${file} has schema version ${from}, newer than this edgepatrol knows ` +
            `(${migrations.length}); run the newer edgepatrol or move the file aside`, file);
    }
    // quick_check reads every page once (a few ms per MB): damage found now is handled at start, not mid-drain.
    const check = db.pragma('quick_check', { simple: true });
    if (check !== 'ok') {
        throw new OutboxError(`outbox ${file} failed SQLite's quick_check (${check})`, file, { code: 'corrupt' });
    }
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal') {
        throw new OutboxError(`outbox ${file}: SQLite refused WAL mode (journal_mode is ${mode}); put the outbox on a local disk`, file);
    }
    // FULL in WAL mode fsyncs the WAL on every commit: committed events survive power loss, not only a crash
    // (NORMAL would only sync at checkpoints). The cost is one fsync per add/ack transaction.
    db.pragma('synchronous = FULL');
    // Another process reading the file (sqlite3 shell, a diagnostic command) must delay a write, not fail it.
    db.pragma('busy_timeout = 5000');
    for (let v = from; v < migrations.length; v++) {
        const sql = migrations[v];
        db.transaction(() => {
            db.exec(sql);
            db.pragma(`user_version = ${v + 1}`);
        }).immediate();
    }
    return from;
}
