import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Component, ComponentContext } from '../agent/index.js';
import type { StreamState } from '../ingest/index.js';

/** Every stream state, so the state gauge shows each camera's current one as 1 and the others as 0. */
const STREAM_STATES = Object.keys({
  connecting: true,
  streaming: true,
  stalled: true,
  backoff: true,
  failed: true,
  ended: true,
} satisfies Record<StreamState, true>) as StreamState[];

/** Detector times on a gateway CPU run from ~20 ms (small INT8 model) to seconds (a busy, throttled core). */
const INFERENCE_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * Prometheus metrics on GET /metrics at metrics.listen (off when it is absent). Values come from the core at
 * scrape time (cameras.status(), outbox.stats(), uplink.status()), so nothing runs between scrapes; only the
 * per-frame detector time, the stored events and the reconnects are counted as they happen, from the bus and
 * the uplink. The registry is this component's own, so two agents in one process never share a series.
 */
export class MetricsServer implements Component {
  readonly name = 'metrics';
  private server: Server | undefined;
  private offUplink: (() => void) | undefined;

  async start(ctx: ComponentContext): Promise<void> {
    const listen = ctx.config.metrics.listen;
    if (listen === undefined) return;
    const registry = new Registry();
    register(ctx, registry);
    const server = createServer((req, res) => {
      serve(req, res, registry).catch((err: unknown) => {
        ctx.log.warn({ err }, `metrics: scrape failed: ${(err as Error).message}`);
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('scrape failed; see the agent log\n');
      });
    });
    await listenOn(server, listen);
    this.server = server;
    this.offUplink = countReconnects(ctx, registry);
    ctx.log.info({ listen }, `metrics: serving http://${listen}/metrics`);
  }

  async stop(): Promise<void> {
    this.offUplink?.();
    this.offUplink = undefined;
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    // A scraper's keep-alive connection would hold close() open until it times out.
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

async function serve(req: IncomingMessage, res: ServerResponse, registry: Registry): Promise<void> {
  const path = (req.url ?? '').split('?')[0];
  if (req.method !== 'GET' || path !== '/metrics') {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found; metrics are at GET /metrics\n');
    return;
  }
  const text = await registry.metrics();
  res.writeHead(200, { 'content-type': registry.contentType });
  res.end(text);
}

/** Listens on "host:port" (the schema checked its form); a failure names metrics.listen and what to do. */
function listenOn(server: Server, listen: string): Promise<void> {
  const colon = listen.lastIndexOf(':');
  const host = listen.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  const port = Number(listen.slice(colon + 1));
  return new Promise((resolve, reject) => {
    const failed = (err: NodeJS.ErrnoException): void => {
      server.off('listening', listening);
      const why =
        err.code === 'EADDRINUSE'
          ? 'the address is already in use; choose another port or stop what listens there'
          : err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND'
            ? `no interface of this gateway has that address (${err.code}); use one it has, e.g. 127.0.0.1`
            : err.message;
      reject(new Error(`metrics.listen ${listen}: cannot listen: ${why}`));
    };
    const listening = (): void => {
      server.off('error', failed);
      resolve();
    };
    server.once('error', failed);
    server.once('listening', listening);
    server.listen(port, host);
  });
}

function register(ctx: ComponentContext, registry: Registry): void {
  const { cameras, outbox, uplink, bus } = ctx;
  const registers = [registry];

  // Camera totals live in the core's counters: each scrape copies them (reset, then the current total).
  const totals = [
    ['edgepatrol_camera_frames_decoded_total', 'Frames decoded and delivered by ffmpeg.', 'framesIn'],
    ['edgepatrol_camera_frames_detected_total', 'Frames the detector ran on.', 'detected'],
    ['edgepatrol_camera_frames_skipped_total', 'Frames lost before detection (replaced in ingest, or pushed out of the queue).', 'skipped'],
    ['edgepatrol_camera_frames_motion_total', 'Decoded frames the motion gate found motion on.', 'motionFrames'],
  ] as const;
  for (const [name, help, key] of totals) {
    new Counter({
      name,
      help,
      labelNames: ['camera'],
      registers,
      collect() {
        this.reset();
        for (const cam of cameras.status()) this.inc({ camera: cam.id }, cam.totals[key]);
      },
    });
  }
  new Gauge({
    name: 'edgepatrol_camera_state',
    help: "The camera's stream state: 1 for the current one (connecting, streaming, stalled, backoff, failed, ended), 0 for the others.",
    labelNames: ['camera', 'state'],
    registers,
    collect() {
      this.reset();
      for (const cam of cameras.status()) {
        for (const state of STREAM_STATES) this.set({ camera: cam.id, state }, cam.state === state ? 1 : 0);
      }
    },
  });

  const inference = new Histogram({
    name: 'edgepatrol_inference_seconds',
    help: "The detector worker's time per frame (preprocess, inference, postprocess), from when the metrics server started.",
    labelNames: ['camera'],
    buckets: INFERENCE_BUCKETS,
    registers,
  });
  bus.on('frame.detected', ({ cameraId, ms }) => {
    inference.observe({ camera: cameraId }, ms / 1000);
  });
  const events = new Counter({
    name: 'edgepatrol_events_total',
    help: 'Event messages stored in the outbox since the agent started, by camera, type and state (started, updated, ended, instant).',
    labelNames: ['camera', 'type', 'state'],
    registers,
  });
  bus.on('event.stored', ({ cameraId, type, state }) => {
    events.inc({ camera: cameraId, type, state });
  });
  const reloads = new Counter({
    name: 'edgepatrol_config_reloads_total',
    help: 'Config reloads (SIGHUP) since the agent started, by result: applied, refused (the running config stayed).',
    labelNames: ['result'],
    registers,
  });
  // Both series from the start, so a rate or an alert on refusals has a zero to compare with.
  reloads.inc({ result: 'applied' }, 0);
  reloads.inc({ result: 'refused' }, 0);
  bus.on('config.reloaded', ({ result }) => {
    reloads.inc({ result });
  });

  const requests = new Counter({
    name: 'edgepatrol_requests_total',
    help: 'Requests on {prefix}/{gw}/request/{verb} answered since the agent started, by verb (other: unknown ones) and status (ok or the error code).',
    labelNames: ['verb', 'status'],
    registers,
  });
  bus.on('request.answered', ({ verb, status }) => {
    requests.inc({ verb, status });
  });

  new Gauge({
    name: 'edgepatrol_outbox_pending',
    help: 'Outbox rows not yet handed to MQTT.',
    registers,
    collect() {
      this.set(outbox.stats().pending);
    },
  });
  new Gauge({
    name: 'edgepatrol_outbox_sent',
    help: 'Outbox rows handed to MQTT whose PUBACK is outstanding.',
    registers,
    collect() {
      this.set(outbox.stats().sent);
    },
  });
  new Gauge({
    name: 'edgepatrol_outbox_bytes',
    help: 'Bytes the outbox holds: payloads plus kept evidence files.',
    registers,
    collect() {
      this.set(outbox.stats().bytes);
    },
  });
  new Gauge({
    name: 'edgepatrol_outbox_oldest_pending_age_seconds',
    help: 'Age of the oldest row not yet delivered; 0 when everything is delivered.',
    registers,
    collect() {
      const oldest = outbox.stats().oldestPendingTs;
      this.set(oldest === null ? 0 : Math.max(0, (Date.now() - oldest) / 1000));
    },
  });
  new Counter({
    name: 'edgepatrol_outbox_dropped_total',
    help: 'Outbox drops over its whole life (they survive restarts): event rows, or evidence images.',
    labelNames: ['what'],
    registers,
    collect() {
      const { dropped } = outbox.stats();
      this.reset();
      this.inc({ what: 'event' }, dropped.events);
      this.inc({ what: 'evidence' }, dropped.evidence);
    },
  });

  new Gauge({
    name: 'edgepatrol_uplink_connected',
    help: '1 while the MQTT connection is up.',
    registers,
    collect() {
      this.set(uplink.status().connected ? 1 : 0);
    },
  });
  new Gauge({
    name: 'edgepatrol_uplink_in_flight',
    help: 'Messages published on this connection and not yet acknowledged.',
    registers,
    collect() {
      this.set(uplink.status().inFlight);
    },
  });
}

/** Counts connections after the first (the agent's own start is not a reconnect); returns the unsubscribe. */
function countReconnects({ uplink }: ComponentContext, registry: Registry): () => void {
  const reconnects = new Counter({
    name: 'edgepatrol_uplink_reconnects_total',
    help: 'MQTT connections made again after a loss, since the agent started.',
    registers: [registry],
  });
  let connectedBefore = uplink.status().connected;
  const connected = (): void => {
    if (connectedBefore) reconnects.inc();
    connectedBefore = true;
  };
  uplink.on('connected', connected);
  return () => uplink.off('connected', connected);
}
