import { basename } from 'node:path';
import type { Logger } from 'pino';
import { v7 as uuidv7 } from 'uuid';
import type { CameraConfig, Config, RuleConfig, ZoneConfig } from '../config/index.js';
import type { CameraRules, RuleHit } from '../rules/index.js';
import type { RgbFrame } from '../vision/types.js';
import { annotateEvidence, drawAnnotations, sideBySide } from '../evidence/annotate.js';
import type { Canvas } from '../evidence/draw.js';
import { decodeImage, encodeJpeg } from '../evidence/jpeg.js';
import { pruneEvidence, storeEvidence, type StoredEvidence } from '../evidence/store.js';
import type { Outbox } from '../outbox/index.js';
import type { Uplink } from '../uplink/index.js';
import { version } from '../version.js';
import { EVENT_SCHEMA_ID, type EventPayload, type EvidenceImage } from './event.js';

export interface RecorderOptions {
  config: Config;
  dataDir: string;
  outbox: Outbox;
  uplink: Pick<Uplink, 'notify'>;
  log: Logger;
  /** Clock for retention (default Date.now). */
  now?: () => number;
}

/** Retention runs at most this often: listing the evidence folder costs more than one event. */
const PRUNE_INTERVAL_MS = 60_000;

/**
 * Turns each message of a violation (RuleHit) on a frame into a durable event message: evidence files first
 * (annotated, clean, and for scene_change the reference), then the outbox row, then a nudge to the uplink.
 * Every message is its own outbox row (`messageId`); the violation's `id` is shared by all its messages.
 */
export class EventRecorder {
  private lastPrune = Number.NEGATIVE_INFINITY;
  /** Decoded scene_change references by file, resized to the frame they are shown beside. */
  private readonly references = new Map<string, Promise<Canvas>>();

  constructor(private readonly opts: RecorderOptions) {}

  /** Returns true when the message was committed; a failure is logged with the camera and never thrown into the frame path. */
  /** `model` is the session that made the detections (cameras may use different models). */
  async record(cam: CameraConfig, frame: RgbFrame, hit: RuleHit, model: { name: string; sha256: string }): Promise<boolean> {
    const { config, log, outbox, uplink } = this.opts;
    const messageId = uuidv7();
    try {
      const zone = cam.zones.find((z) => z.id === hit.zoneId);
      const rule = zone?.rules.find((r) => r.id === hit.ruleId);
      const evidence = await this.evidence(cam, zone, rule, frame, hit, messageId);
      const payloadFor = (seq: number): EventPayload => ({
        schema: EVENT_SCHEMA_ID,
        id: hit.eventId,
        messageId,
        state: hit.state,
        seq,
        gatewayId: config.gateway.id,
        type: hit.eventType,
        ...(hit.preset !== undefined && { preset: hit.preset }),
        camera: { id: cam.id, name: cam.name },
        zone: hit.zoneId,
        rule: { id: hit.ruleId, kind: hit.rule },
        startedAt: new Date(hit.startedAt).toISOString(),
        detectedAt: new Date(hit.ts).toISOString(),
        ...(hit.endedAt !== undefined && { endedAt: new Date(hit.endedAt).toISOString() }),
        ...(hit.endReason !== undefined && { endReason: hit.endReason }),
        dwellSeconds: Math.round(hit.dwellSeconds * 10) / 10,
        objects: hit.objects.map((o) => ({ class: o.class, score: round3(o.score), box: o.box.map(round4) as [number, number, number, number], trackId: o.trackId })),
        ...(hit.counts && { counts: hit.counts }),
        ...(hit.change && { change: hit.change }),
        location: { ...cam.location },
        model: { name: model.name, sha256: model.sha256 },
        evidence,
        agentVersion: version,
      });
      const { seq } = outbox.add({
        id: messageId,
        cameraId: cam.id,
        type: hit.eventType,
        topic: `${config.mqtt.prefix}/${config.gateway.id}/event/${hit.eventType}`,
        evidencePath: evidence.annotated.file,
        evidenceSha256: evidence.annotated.sha256,
        evidenceBytes: evidence.annotated.bytes,
        ...(rule && { priority: rule.priority }),
      }, payloadFor);
      log.info({ camera: cam.id, event: hit.eventId, state: hit.state, seq, type: hit.eventType, zone: hit.zoneId },
        `event ${hit.eventType} ${hit.state} on ${cam.id}/${hit.zoneId} stored (seq ${seq})`);
      uplink.notify();
      this.pruneIfDue();
      return true;
    } catch (err) {
      log.error({ camera: cam.id, event: hit.eventId, err }, `camera ${cam.id}: could not store ${hit.eventType} ${hit.state} event`);
      return false;
    }
  }

  /**
   * On a clean stop, after the camera's frames and event writes have finished: ends its open violations
   * (`ended`, endReason `agent_stopped`) with evidence drawn on `frame`, the last frame its detector saw, so the
   * platform is not left with events that never end. Returns how many were committed.
   */
  async recordStop(cam: CameraConfig, rules: CameraRules, frame: RgbFrame | undefined, model: { name: string; sha256: string }): Promise<number> {
    const hits = rules.close((this.opts.now ?? Date.now)());
    if (hits.length === 0) return 0;
    if (!frame) {
      this.opts.log.warn({ camera: cam.id, events: hits.map((h) => h.eventId) }, `camera ${cam.id}: ${hits.length} open events not ended at stop: no frame for their evidence`);
      return 0;
    }
    let committed = 0;
    for (const hit of hits) if (await this.record(cam, frame, hit, model)) committed++;
    return committed;
  }

  /** Encodes and stores the evidence images of one message; JPEG encoding runs on libuv's pool, off the event loop. */
  private async evidence(cam: CameraConfig, zone: ZoneConfig | undefined, rule: RuleConfig | undefined, frame: RgbFrame, hit: RuleHit, messageId: string):
    Promise<EventPayload['evidence']> {
    const { config, dataDir } = this.opts;
    const quality = config.evidence.jpegQuality;
    const title = `${cam.name} | ${hit.eventType} | ${formatLocal(frame.ts, cam.timezone ?? config.gateway.timezone)}`;
    const drawing = {
      title,
      zone: zone?.polygon,
      masks: zone?.masks,
      line: rule?.kind === 'line_cross' ? rule.line : undefined,
      objects: hit.objects,
    };
    const image = (stored: StoredEvidence, img: { width: number; height: number }): EvidenceImage =>
      ({ ...stored, width: img.width, height: img.height, contentType: 'image/jpeg' });
    const store = (role: string, jpeg: Buffer): StoredEvidence => storeEvidence(dataDir, `${messageId}-${role}`, frame.ts, jpeg);

    if (rule?.kind === 'scene_change') {
      const reference = await this.reference(rule.reference, frame);
      const now: Canvas = { width: frame.width, height: frame.height, data: Buffer.from(frame.data) };
      drawAnnotations(now, { ...drawing, title: `${title} | changed ${Math.round((hit.change?.fraction ?? 0) * 100)}%` });
      const refShown: Canvas = { width: reference.width, height: reference.height, data: Buffer.from(reference.data) };
      drawAnnotations(refShown, { title: 'reference', zone: zone?.polygon, masks: zone?.masks, objects: [] });
      const pair = sideBySide(refShown, now, ['', '']);
      const [annotated, clean, ref] = await Promise.all([encodeJpeg(pair, quality), encodeJpeg(frame, quality), encodeJpeg(reference, quality)]);
      return {
        annotated: image(store('annotated', annotated), pair),
        clean: image(store('clean', clean), frame),
        reference: image(store('reference', ref), reference),
      };
    }
    const [annotated, clean] = await Promise.all([annotateEvidence(frame, { ...drawing, quality }), encodeJpeg(frame, quality)]);
    return { annotated: image(store('annotated', annotated), frame), clean: image(store('clean', clean), frame) };
  }

  private reference(file: string, frame: RgbFrame): Promise<Canvas> {
    const key = `${file}@${frame.width}x${frame.height}`;
    let ref = this.references.get(key);
    if (!ref) {
      ref = decodeImage(file, { width: frame.width, height: frame.height });
      this.references.set(key, ref);
      ref.catch(() => this.references.delete(key));
    }
    return ref;
  }

  /** Deletes evidence beyond the configured age and bytes, keeping that of messages the uplink has not delivered. */
  private pruneIfDue(): void {
    const now = (this.opts.now ?? Date.now)();
    if (now - this.lastPrune < PRUNE_INTERVAL_MS) return;
    this.lastPrune = now;
    const { outbox, config, dataDir, log } = this.opts;
    try {
      const undelivered = new Set([...outbox.list({ state: 'pending', limit: 1_000_000 }), ...outbox.list({ state: 'sent', limit: 1_000_000 })].map((r) => r.id));
      const keep = (file: string): boolean => undelivered.has(basename(file).replace(/-(annotated|clean|reference)\.jpg$/, ''));
      const removed = pruneEvidence(dataDir, { maxBytes: config.evidence.maxBytes, maxAgeDays: config.evidence.maxAgeDays, now, keep });
      if (removed.files) log.info({ files: removed.files, bytes: removed.bytes, keptBytes: removed.keptBytes }, `evidence retention deleted ${removed.files} files`);
    } catch (err) {
      log.warn({ err }, `evidence retention in ${dataDir}/evidence failed; old images stay until the next try`);
    }
  }
}

function round3(x: number): number { return Math.round(x * 1000) / 1000; }
function round4(x: number): number { return Math.min(1, Math.max(0, Math.round(x * 10000) / 10000)); }

/** Local wall-clock time for the evidence caption, in the camera's time zone. */
export function formatLocal(ts: number, timeZone: string | undefined): string {
  const f = new Intl.DateTimeFormat('sv-SE', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short' });
  return f.format(new Date(ts));
}
