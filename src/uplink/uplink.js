import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import mqtt from 'mqtt';
import { backoffDelay } from '../ingest/backoff.js';
import { safeUrl } from '../log.js';
import { ackPayloadSchema } from './contract.js';
function message(err) {
    return err instanceof Error ? err.message : String(err);
}
function readPem(what, file) {
    try {
        return readFileSync(file);
    }
    catch (err) {
        throw new Error(`uplink: cannot read the TLS ${what} file ${file}: ${message(err)}`, { cause: err });
    }
}
/** How long PUBACKs are collected before they are written to the outbox in one transaction. */
const ACK_FLUSH_MS = 20;
/** Room left in a packet for its header, topic and properties; the user properties of an evidence part stay under 300 bytes. */
const PACKET_OVERHEAD = 400;
/**
 * Publishes the outbox to the broker: at least once, in seq order, marking a row acked only when the PUBACKs
 * of its event message and of every part of its evidence have arrived.
 *
 * The outbox is the only queue. Events are published only while connected, and on every (re)connect the
 * drain restarts from the oldest unacknowledged row; mqtt.js's own in-memory copies of unacknowledged
 * publishes are dropped when a connection closes, so a broker outage costs duplicates (same event id), never
 * memory or loss. Flow control: at most `window` messages and `maxInFlightBytes` bytes await PUBACK, and
 * rows are read from SQLite only when there is room.
 */
export class Uplink extends EventEmitter {
    opts;
    log;
    topics;
    maxWindow;
    maxInFlightBytes;
    reconnect;
    client;
    connected = false;
    stopping;
    /** Bumped on every connect and close, so a late callback from an old connection does not touch the window. */
    generation = 0;
    /** Highest seq read on the current connection: the drain reads unacknowledged rows after it. */
    cursor = 0;
    inFlight = 0;
    inFlightBytes = 0;
    window;
    maxPacketSize = null;
    /** Messages of rows already read, not yet published (a row's evidence parts wait here for window room). */
    queue = [];
    /** Per row on this connection: messages still without PUBACK, and whether the broker refused one. */
    rows = new Map();
    /** Rows handed to MQTT and PUBACKed seqs, written to the outbox together in one transaction per drain step. */
    sentBatch = [];
    ackBatch = [];
    ackFlush;
    retryTimer;
    /** The drain goes back to just before the lowest refused seq when retryTimer fires. */
    rewindTo = Infinity;
    reconnectTimer;
    reconnectAttempts = 0;
    maintainTimer;
    pumpImmediate;
    constructor(opts) {
        super();
        this.opts = opts;
        this.log = opts.log.child({ component: 'uplink' });
        const base = `${opts.prefix}/${opts.gatewayId}`;
        this.topics = {
            availability: `${base}/availability`,
            health: `${base}/health`,
            ack: `${base}/ack`,
            evidence: (id) => `${base}/evidence/${id}`,
        };
        this.maxWindow = Math.max(1, opts.window ?? 32);
        this.window = this.maxWindow;
        this.maxInFlightBytes = opts.maxInFlightBytes ?? 4 * 1024 * 1024;
        this.reconnect = opts.reconnect ?? { initialMs: 1_000, maxMs: 60_000 };
    }
    status() {
        return { connected: this.connected, inFlight: this.inFlight, inFlightBytes: this.inFlightBytes, window: this.window,
            maxPacketSize: this.maxPacketSize, reconnectAttempts: this.reconnectAttempts };
    }
    /** Connects and keeps reconnecting until stop(). Throws at once if a TLS file cannot be read. */
    start() {
        if (this.client || this.stopping)
            throw new Error('uplink: start() called twice; create a new Uplink instead');
        const { url, tls } = this.opts;
        const clientId = this.opts.clientId ?? `edgepatrol-${this.opts.gatewayId}`;
        const service = this.opts.outbox.delivery === 'service';
        const client = mqtt.connect(url, {
            protocolVersion: 5,
            clientId,
            username: this.opts.username,
            password: this.opts.password,
            // With delivery: service the gateway subscribes to its ack topic, and acks sent while it is offline must
            // wait at the broker: a persistent session. Otherwise the outbox, not a session, holds all state.
            clean: !service,
            ...(service ? { properties: { sessionExpiryInterval: this.opts.sessionExpirySeconds ?? 7 * 24 * 3600 } } : {}),
            resubscribe: false,
            keepalive: 30,
            connectTimeout: 10_000,
            // Reconnects are scheduled here (exponential backoff with jitter), not by mqtt.js's fixed-period timer.
            reconnectPeriod: 0,
            will: {
                topic: this.topics.availability,
                payload: Buffer.from(JSON.stringify({ state: 'offline', version: this.opts.version })),
                qos: 1,
                retain: true,
            },
            ...(tls?.ca ? { ca: readPem('CA', tls.ca) } : {}),
            ...(tls?.cert ? { cert: readPem('client certificate', tls.cert) } : {}),
            ...(tls?.key ? { key: readPem('client key', tls.key) } : {}),
            ...(tls?.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: tls.rejectUnauthorized }),
        });
        this.client = client;
        client.on('connect', (connack) => this.onConnect(client, connack));
        client.on('close', () => this.onClose(client));
        client.on('message', (topic, payload) => this.onMessage(topic, payload));
        client.on('error', (err) => {
            // One warning per outage; the retries go to debug.
            const level = this.reconnectAttempts === 0 ? 'warn' : 'debug';
            this.log[level]({ broker: safeUrl(url), err: message(err), attempts: this.reconnectAttempts }, 'mqtt error; retrying');
        });
        this.maintainTimer = setInterval(() => this.maintain(), this.opts.maintainMs ?? 5_000);
        this.log.info({ broker: safeUrl(url), clientId, tls: Boolean(tls), delivery: this.opts.outbox.delivery }, 'uplink connecting');
    }
    /** Tells the uplink that new pending rows exist. Cheap when nothing can be sent. */
    notify() {
        this.pump();
    }
    /**
     * Publishes a health snapshot on {prefix}/{gw}/health, QoS 0, retained (the newest one is what a dashboard
     * wants; a lost one is replaced by the next). Returns false when not connected: health is not queued.
     */
    publishHealth(payload) {
        const client = this.client;
        if (!client || !this.connected || this.stopping)
            return false;
        client.publish(this.topics.health, JSON.stringify(payload), {
            qos: 0, retain: true, properties: { contentType: 'application/json', payloadFormatIndicator: true },
        });
        return true;
    }
    /** Publishes availability offline (if connected), waits briefly for outstanding PUBACKs, disconnects. */
    stop() {
        this.stopping ??= this.shutdown();
        return this.stopping;
    }
    async shutdown() {
        clearTimeout(this.retryTimer);
        clearTimeout(this.reconnectTimer);
        clearInterval(this.maintainTimer);
        clearImmediate(this.pumpImmediate);
        this.retryTimer = undefined;
        const client = this.client;
        if (!client)
            return;
        const timeoutMs = this.opts.stopTimeoutMs ?? 5_000;
        let offlineAcked = false;
        if (this.connected) {
            const since = new Date().toISOString();
            client.publish(this.topics.availability, JSON.stringify({ state: 'offline', version: this.opts.version, since }), { qos: 1, retain: true }, (err) => {
                offlineAcked = !err;
            });
            await waitUntil(() => !this.connected || (offlineAcked && this.inFlight === 0), timeoutMs);
        }
        // A graceful DISCONNECT makes the broker discard the last will; when PUBACKs are missing, the socket is
        // simply closed and the rows they belong to stay unacknowledged in the outbox.
        const graceful = this.connected && offlineAcked && Object.keys(client.outgoing).length === 0;
        const wasConnected = this.connected;
        // Marked down first so the close that endAsync causes is not reported as a lost connection.
        this.connected = false;
        this.generation++;
        await client.endAsync(!graceful);
        this.flushAcks();
        if (wasConnected)
            this.emitSafe('disconnected');
        this.log.info({ graceful, ...this.opts.outbox.stats() }, 'uplink stopped');
    }
    onConnect(client, connack) {
        clearTimeout(this.reconnectTimer);
        this.reconnectTimer = undefined;
        this.generation++;
        this.connected = true;
        this.reconnectAttempts = 0;
        this.resetDrain();
        // One slot stays free for the availability message; exceeding the broker's Receive Maximum is a
        // protocol error that costs the connection.
        const receiveMaximum = connack.properties?.receiveMaximum ?? 65_535;
        this.window = Math.max(1, Math.min(this.maxWindow, receiveMaximum - 1));
        this.maxPacketSize = connack.properties?.maximumPacketSize ?? null;
        const since = new Date().toISOString();
        client.publish(this.topics.availability, JSON.stringify({ state: 'online', version: this.opts.version, since }), { qos: 1, retain: true }, (err) => {
            if (err)
                this.log.warn({ err: message(err) }, 'availability online not acknowledged');
        });
        if (this.opts.outbox.delivery === 'service' && !connack.sessionPresent) {
            client.subscribe(this.topics.ack, { qos: 1 }, (err) => {
                if (err)
                    this.log.error({ err: message(err), topic: this.topics.ack }, `cannot subscribe to ${this.topics.ack}; service acks will not arrive (check the broker ACL)`);
            });
        }
        this.log.info({ broker: safeUrl(this.opts.url), window: this.window, maxPacketSize: this.maxPacketSize,
            sessionPresent: connack.sessionPresent, ...this.opts.outbox.stats() }, 'mqtt connected; draining outbox');
        this.emitSafe('connected');
        this.pump();
    }
    onClose(client) {
        if (this.stopping)
            return;
        if (this.connected) {
            this.connected = false;
            this.generation++;
            // mqtt.js would re-send these from memory on reconnect, ahead of and besides the outbox's own ordered
            // replay; removing them (their callbacks get an error, ignored as an old generation) keeps one queue.
            for (const id of Object.keys(client.outgoing))
                client.removeOutgoingMessage(Number(id));
            this.resetDrain();
            this.log.warn({ ...this.opts.outbox.stats() }, 'mqtt connection lost; events stay in the outbox');
            this.emitSafe('disconnected');
        }
        // 'close' also ends every failed attempt: each schedules the next, further apart each time.
        if (this.reconnectTimer)
            return;
        const delay = backoffDelay(this.reconnectAttempts++, this.reconnect);
        this.log.debug({ delayMs: delay, attempt: this.reconnectAttempts }, 'mqtt reconnect scheduled');
        this.reconnectTimer = setTimeout(() => {
            this.reconnectTimer = undefined;
            if (!this.stopping)
                client.reconnect();
        }, delay);
    }
    resetDrain() {
        this.cursor = 0;
        this.inFlight = 0;
        this.inFlightBytes = 0;
        this.queue = [];
        this.rows.clear();
        this.rewindTo = Infinity;
    }
    onMessage(topic, payload) {
        if (topic !== this.topics.ack)
            return;
        let ids;
        try {
            ids = ackPayloadSchema.parse(JSON.parse(payload.toString('utf8'))).ids;
        }
        catch (err) {
            this.log.warn({ topic, err: message(err).slice(0, 300) }, `ignored a malformed ack on ${topic}; expected {"ids":["<event id>",…]}`);
            return;
        }
        let changed;
        try {
            changed = this.opts.outbox.markConfirmed(ids);
        }
        catch (err) {
            // The message is PUBACKed by mqtt.js anyway; the rows will be re-sent after the confirm timeout and acked again.
            this.log.error({ err: message(err), file: this.opts.outbox.file }, 'cannot record service acks in the outbox');
            return;
        }
        this.emitSafe('confirmed', ids, changed);
    }
    maintain() {
        // PUBACKs not yet written would look unacknowledged to the re-scan below and be sent again.
        this.flushAcks();
        try {
            const { requeued } = this.opts.outbox.maintain();
            // Rows set back to pending behind the cursor (a service-ack timeout, `edgepatrol outbox replay`) are
            // found by starting over when the drain is idle.
            if (requeued > 0 || (this.inFlight === 0 && this.queue.length === 0 && !this.retryTimer))
                this.cursor = 0;
        }
        catch (err) {
            this.log.error({ err: message(err), file: this.opts.outbox.file }, 'outbox upkeep failed; retrying');
        }
        this.pump();
    }
    /**
     * pump() once the PUBACKs that arrived together have all been handled. mqtt.js handles one incoming packet
     * per process.nextTick and each publish corks the socket only until the next tick, so a publish made inside
     * a PUBACK callback costs its own write system call; refilling the window after the burst sends the freed
     * slots' messages in one write (measured in docs/decisions.md: the drain spent more in writev than in SQLite).
     */
    pumpSoon() {
        this.pumpImmediate ??= setImmediate(() => {
            this.pumpImmediate = undefined;
            this.pump();
        });
    }
    /** Fills the in-flight window with the next messages, in seq order. */
    pump() {
        const client = this.client;
        if (!client || !this.connected || this.stopping)
            return;
        try {
            while (this.inFlight < this.window) {
                if (this.queue.length === 0 && !this.readRows())
                    return;
                const next = this.queue[0];
                // One message may exceed the byte budget on its own; it then goes out alone.
                if (this.inFlight > 0 && this.inFlightBytes + next.bytes > this.maxInFlightBytes)
                    return;
                this.queue.shift();
                this.publish(client, next);
            }
        }
        catch (err) {
            this.log.error({ err: message(err), file: this.opts.outbox.file }, 'cannot read the outbox; retrying');
            this.queue = [];
            this.scheduleRetry(this.cursor + 1);
        }
    }
    /** Reads the next unacknowledged rows into the queue; false when there are none. */
    readRows() {
        if (this.inFlightBytes >= this.maxInFlightBytes)
            return false;
        // A full window of rows at a time: fewer, larger reads; the queue holds at most one window of rows.
        const rows = this.opts.outbox.outgoing(this.window, this.cursor);
        if (rows.length === 0)
            return false;
        for (const row of rows) {
            this.sentBatch.push(row.seq);
            this.cursor = row.seq;
            const messages = this.messagesFor(row);
            this.rows.set(row.seq, { left: messages.length, refused: false });
            this.queue.push(...messages);
        }
        this.scheduleFlush();
        return true;
    }
    /** The event JSON, then its evidence image in parts that fit the broker's maximum packet size. */
    messagesFor(row) {
        // The row id is the event message's messageId; its evidence goes to {prefix}/{gw}/evidence/{messageId}.
        const out = [{
                seq: row.seq, topic: row.topic, payload: row.payload, bytes: row.bytes,
                properties: { contentType: 'application/json', payloadFormatIndicator: true },
            }];
        if (row.evidenceState !== 'kept' || !row.evidencePath)
            return out;
        let image;
        try {
            image = readFileSync(this.opts.outbox.evidenceFile(row.evidencePath));
        }
        catch {
            this.opts.outbox.markEvidenceMissing(row.seq);
            return out;
        }
        const topic = this.topics.evidence(row.id);
        const room = this.maxPacketSize === null ? image.length : this.maxPacketSize - PACKET_OVERHEAD - Buffer.byteLength(topic);
        if (room <= 0) {
            this.log.error({ maxPacketSize: this.maxPacketSize, event: row.id }, `the broker's maximum packet size (${this.maxPacketSize}) leaves no room for evidence; raise max_packet_size on the broker`);
            return out;
        }
        const parts = Math.max(1, Math.ceil(image.length / room));
        for (let i = 0; i < parts; i++) {
            const chunk = image.subarray(i * room, Math.min(image.length, (i + 1) * room));
            out.push({
                seq: row.seq, topic, payload: chunk, bytes: chunk.length,
                properties: {
                    contentType: 'image/jpeg',
                    userProperties: {
                        messageId: row.id, seq: String(row.seq), sha256: row.evidenceSha256 ?? '', bytes: String(image.length),
                        part: String(i + 1), parts: String(parts),
                    },
                },
            });
        }
        return out;
    }
    publish(client, m) {
        const generation = this.generation;
        this.inFlight++;
        this.inFlightBytes += m.bytes;
        client.publish(m.topic, m.payload, { qos: 1, properties: m.properties }, (err) => {
            // A callback from a closed connection: its row is sent again from the outbox on the new one.
            if (generation !== this.generation)
                return;
            this.inFlight--;
            this.inFlightBytes -= m.bytes;
            const row = this.rows.get(m.seq);
            if (!row)
                return;
            if (err) {
                row.refused = true;
                this.log.warn({ seq: m.seq, topic: m.topic, err: message(err) }, 'broker refused a message; its event stays unacknowledged');
                this.scheduleRetry(m.seq);
            }
            if (--row.left === 0) {
                this.rows.delete(m.seq);
                if (!row.refused)
                    this.queueAck(m.seq);
            }
            // The slot is free now; the ack is written with the next batch, it need not hold the next publish back.
            this.pumpSoon();
        });
    }
    queueAck(seq) {
        this.ackBatch.push(seq);
        this.scheduleFlush();
    }
    scheduleFlush() {
        // Batched by time: one transaction per ACK_FLUSH_MS however fast PUBACKs come (publishing does not wait for it).
        this.ackFlush ??= setTimeout(() => {
            this.ackFlush = undefined;
            this.flushAcks();
            this.pump();
        }, ACK_FLUSH_MS);
    }
    flushAcks() {
        clearTimeout(this.ackFlush);
        this.ackFlush = undefined;
        if (this.ackBatch.length === 0 && this.sentBatch.length === 0)
            return;
        const seqs = this.ackBatch;
        const sent = this.sentBatch;
        this.ackBatch = [];
        this.sentBatch = [];
        try {
            this.opts.outbox.recordDelivery(sent, seqs);
        }
        catch (err) {
            // The broker has these events; if the ack cannot be stored they are sent again later (duplicates).
            this.log.error({ err: message(err), file: this.opts.outbox.file, seqs: seqs.length }, 'cannot record acks in the outbox');
            return;
        }
        for (const seq of seqs)
            this.emitSafe('acked', seq);
    }
    /** Re-sends from `seq` on after retryMs; rows already in flight after it may then arrive twice. */
    scheduleRetry(seq) {
        if (this.stopping)
            return;
        this.rewindTo = Math.min(this.rewindTo, seq - 1);
        this.retryTimer ??= setTimeout(() => {
            this.retryTimer = undefined;
            this.cursor = Math.min(this.cursor, this.rewindTo);
            this.rewindTo = Infinity;
            // Messages already queued belong to rows after the rewind point; they are read again from the outbox.
            this.queue = [];
            this.pump();
        }, this.opts.retryMs ?? 5_000);
    }
    /** Listeners belong to other parts of the agent; one that throws must not break the drain. */
    emitSafe(event, ...args) {
        try {
            this.emit(event, ...args);
        }
        catch (err) {
            this.log.error({ err: message(err), event }, 'uplink listener threw');
        }
    }
}
async function waitUntil(done, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    while (!done() && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 10));
}
