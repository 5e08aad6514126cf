import { createHash } from 'node:crypto';
import { readdirSync, statfsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { v7 as uuidv7 } from 'uuid';
import type { CameraConfig, Config, RuleConfig, ZoneConfig } from '../config/index.js';
import type { CameraRules, RuleHit } from '../rules/index.js';
import type { RgbFrame } from '../vision/types.js';
import { annotateEvidence, drawAnnotations, sideBySide } from '../evidence/annotate.js';
import type { Canvas } from '../evidence/draw.js';
import { decodeImage, encodeJpeg } from '../common/jpeg.js';
import { formatLocal } from '../common/time.js';
import { gatewayTopics } from '../common/topics.js';
import { evidencePath, pruneEvidence, storeEvidence, type StoredEvidence } from '../evidence/store.js';
import type { Outbox } from '../outbox/index.js';
import type { Uplink } from '../uplink/index.js';
import { version } from '../version.js';
import type { EventBus } from './bus.js';
import { EVENT_SCHEMA_ID, type EventPayload, type EvidenceImage } from './event.js';

export interface RecorderOptions {
  config: Config;
  dataDir: string;
  outbox: Outbox;
  uplink: Pick<Uplink, 'notify'>;
  log: Logger;
  /** Where `event.stored` goes once a message is committed (evidence retention follows it). */
  bus?: Pick<EventBus, 'emit' | 'listening'>;
  /** Clock for the stop of open events and for freeing disk space (default Date.now). */
  now?: () => number;
}

/** On a full disk, room freed beyond the image itself: the outbox row and its WAL pages must fit too. */
const DISK_MARGIN_BYTES = 512 * 1024;

/**
 * An evidence image as stored, or (dropped) described but not on disk: the disk was full, or its free space was
 * below evidence.minFreeBytes.
 */
type Stored = StoredEvidence & { dropped?: 'disk_full' | 'disk_floor' };

/** Free bytes on the file system of `dir` for an unprivileged writer; null when it cannot be read. */
function freeBytes(dir: string): number | null {
  try {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  } catch {
    return null;
  }
}

function noSpace(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/**
 * Turns each message of a violation (RuleHit) on a frame into a durable event message: evidence files first
 * (annotated, clean, and for scene_change the reference), then the outbox row, then a nudge to the uplink.
 * Every message is its own outbox row (`messageId`); the violation's `id` is shared by all its messages.
 */
/** What the payload says of an image that is not on disk: where it would be, its hash and size. */
function described(name: string, ts: number, jpeg: Buffer): StoredEvidence {
  return { file: evidencePath(name, ts), sha256: createHash('sha256').update(jpeg).digest('hex'), bytes: jpeg.length };
}

export class EventRecorder {
  /** Whether the last evidence write found the disk below evidence.minFreeBytes (logged when it changes). */
  private belowFloor = false;
  /** Decoded scene_change references by file, resized to the frame they are shown beside. */
  private readonly references = new Map<string, Promise<Canvas>>();

  constructor(private readonly opts: RecorderOptions) {}

  /**
   * Returns true when the message was committed; a failure is logged with the camera and never thrown into the
   * frame path. `model` is the session that made the detections (cameras may use different models).
   */
  async record(cam: CameraConfig, frame: RgbFrame, hit: RuleHit, model: { name: string; sha256: string }): Promise<boolean> {
    const { config, log, outbox, uplink } = this.opts;
    const messageId = uuidv7();
    try {
      const zone = cam.zones.find((z) => z.id === hit.zoneId);
      const rule = zone?.rules.find((r) => r.id === hit.ruleId);
      const { evidence, annotatedDropped } = await this.evidence(cam, zone, rule, frame, hit, messageId);
      const payloadFor = (seq: number): EventPayload => ({
        schema: EVENT_SCHEMA_ID,
        id: hit.eventId,
        messageId,
        state: hit.state,
        seq,
        gatewayId: config.gateway.id,
        type: hit.eventType,
        ...(hit.preset !== undefined && { preset: hit.preset }),
        ...(hit.view !== undefined && { view: hit.view }),
        camera: { id: cam.id, name: cam.name },
        zone: hit.zoneId,
        rule: { id: hit.ruleId, kind: hit.rule },
        startedAt: new Date(hit.startedAt).toISOString(),
        detectedAt: new Date(hit.ts).toISOString(),
        ...(hit.endedAt !== undefined && { endedAt: new Date(hit.endedAt).toISOString() }),
        ...(hit.endReason !== undefined && { endReason: hit.endReason }),
        dwellSeconds: Math.round(hit.dwellSeconds * 10) / 10,
        objects: hit.objects.map((o) => ({ class: o.class, score: round3(o.score), box: roundBox(o.box), trackId: o.trackId })),
        ...(hit.unseen.length > 0 && {
          unseen: hit.unseen.map((o) => ({
            class: o.class,
            trackId: o.trackId,
            lastSeenAt: new Date(o.lastSeenAt).toISOString(),
            lastScore: round3(o.lastScore),
            lastBox: roundBox(o.lastBox),
          })),
        }),
        ...(hit.counts && { counts: hit.counts }),
        ...(hit.change && { change: hit.change }),
        location: { ...cam.location },
        model: { name: model.name, sha256: model.sha256 },
        evidence,
        agentVersion: version,
      });
      const { seq } = outbox.add(
        {
          id: messageId,
          cameraId: cam.id,
          type: hit.eventType,
          topic: gatewayTopics(config.mqtt.prefix, config.gateway.id).event(hit.eventType),
          // A full disk (or one below its floor) leaves the event without its image: the row says so and the drop
          // is counted with it.
          ...(annotatedDropped
            ? { evidenceDropped: { reason: annotatedDropped, bytes: evidence.annotated.bytes } }
            : {
                evidencePath: evidence.annotated.file,
                evidenceSha256: evidence.annotated.sha256,
                evidenceBytes: evidence.annotated.bytes,
              }),
          ...(rule && { priority: rule.priority }),
        },
        payloadFor,
      );
      log.info(
        { camera: cam.id, event: hit.eventId, state: hit.state, seq, type: hit.eventType, zone: hit.zoneId },
        `event ${hit.eventType} ${hit.state} on ${cam.id}/${hit.zoneId} stored (seq ${seq})`,
      );
      uplink.notify();
      const bus = this.opts.bus;
      if (bus?.listening('event.stored')) {
        bus.emit('event.stored', { cameraId: cam.id, eventId: hit.eventId, messageId, type: hit.eventType, state: hit.state, seq });
      }
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
  async recordStop(
    cam: CameraConfig,
    rules: CameraRules,
    frame: RgbFrame | undefined,
    model: { name: string; sha256: string },
    reason: 'agent_stopped' | 'config_changed' = 'agent_stopped',
  ): Promise<number> {
    const hits = rules.close((this.opts.now ?? Date.now)(), reason);
    if (hits.length === 0) return 0;
    if (!frame) {
      this.opts.log.warn(
        { camera: cam.id, events: hits.map((h) => h.eventId) },
        `camera ${cam.id}: ${hits.length} open events not ended at stop: no frame for their evidence`,
      );
      return 0;
    }
    let committed = 0;
    for (const hit of hits) if (await this.record(cam, frame, hit, model)) committed++;
    return committed;
  }

  /** Encodes and stores the evidence images of one message; JPEG encoding runs on libuv's pool, off the event loop. */
  private async evidence(
    cam: CameraConfig,
    zone: ZoneConfig | undefined,
    rule: RuleConfig | undefined,
    frame: RgbFrame,
    hit: RuleHit,
    messageId: string,
  ): Promise<{ evidence: EventPayload['evidence']; annotatedDropped: Stored['dropped'] }> {
    const { config } = this.opts;
    const quality = config.evidence.jpegQuality;
    const title = `${cam.name} | ${hit.eventType} | ${formatLocal(frame.ts, cam.timezone ?? config.gateway.timezone)}`;
    const drawing = {
      title,
      zone: zone?.polygon,
      masks: zone?.masks,
      line: rule?.kind === 'line_cross' ? rule.line : undefined,
      objects: hit.objects,
      unseen: { objects: hit.unseen, ts: hit.ts },
    };
    const image = ({ file, sha256, bytes }: Stored, img: { width: number; height: number }): EvidenceImage => ({
      file,
      sha256,
      bytes,
      width: img.width,
      height: img.height,
      contentType: 'image/jpeg',
    });
    const store = (role: string, jpeg: Buffer): Stored => this.store(cam, `${messageId}-${role}`, frame.ts, jpeg);

    if (rule?.kind === 'scene_change') {
      const reference = await this.reference(rule.reference, frame);
      const now: Canvas = { width: frame.width, height: frame.height, data: Buffer.from(frame.data) };
      drawAnnotations(now, { ...drawing, title: `${title} | changed ${Math.round((hit.change?.fraction ?? 0) * 100)}%` });
      const refShown: Canvas = { width: reference.width, height: reference.height, data: Buffer.from(reference.data) };
      drawAnnotations(refShown, { title: 'reference', zone: zone?.polygon, masks: zone?.masks, objects: [] });
      const pair = sideBySide(refShown, now, ['', '']);
      const [annotated, clean, ref] = await Promise.all([
        encodeJpeg(pair, quality),
        encodeJpeg(frame, quality),
        encodeJpeg(reference, quality),
      ]);
      const stored = store('annotated', annotated);
      return {
        evidence: {
          annotated: image(stored, pair),
          clean: image(store('clean', clean), frame),
          reference: image(store('reference', ref), reference),
        },
        annotatedDropped: stored.dropped,
      };
    }
    const [annotated, clean] = await Promise.all([annotateEvidence(frame, { ...drawing, quality }), encodeJpeg(frame, quality)]);
    const stored = store('annotated', annotated);
    return {
      evidence: { annotated: image(stored, frame), clean: image(store('clean', clean), frame) },
      annotatedDropped: stored.dropped,
    };
  }

  /**
   * storeEvidence, and on a full disk (ENOSPC; storeEvidence has removed its partial file): let the outbox delete evidence files
   * (delivered first, then undelivered from low priority, counted) and try once more. When the disk is still
   * full the event is kept without this image: it is described in the payload (file, sha256, bytes) as an
   * evicted image is, but not on disk. Events before images, as the outbox does for SQLITE_FULL.
   */
  private store(cam: CameraConfig, name: string, ts: number, jpeg: Buffer): Stored {
    const { dataDir, outbox, log, config } = this.opts;
    const floor = config.evidence.minFreeBytes;
    if (floor > 0) {
      const free = freeBytes(dataDir);
      const below = free !== null && free - jpeg.length < floor;
      if (below !== this.belowFloor) {
        this.belowFloor = below;
        if (below)
          log.error(
            { camera: cam.id, dataDir, freeBytes: free, floorBytes: floor },
            `disk under ${dataDir} below its floor (${free} bytes free, evidence.minFreeBytes ${floor}): evidence images are not written, events are kept; free space on that disk`,
          );
        else
          log.warn(
            { dataDir, freeBytes: free, floorBytes: floor },
            `disk under ${dataDir} above its floor again: evidence images are written`,
          );
      }
      if (below) return { ...described(name, ts, jpeg), dropped: 'disk_floor' };
    }
    try {
      return storeEvidence(dataDir, name, ts, jpeg);
    } catch (err) {
      if (!noSpace(err)) throw err;
    }
    const need = jpeg.length + DISK_MARGIN_BYTES;
    const local = this.dropLocalImages(need);
    const freed = local.bytes >= need ? { files: 0, bytes: 0 } : outbox.freeDiskSpace(need - local.bytes);
    const files = local.files + freed.files;
    const bytes = local.bytes + freed.bytes;
    log.error(
      { camera: cam.id, dataDir, localFiles: local.files, localBytes: local.bytes, outboxFiles: freed.files, outboxBytes: freed.bytes },
      `disk full under ${dataDir}: dropped ${files} evidence image(s) (${bytes} bytes) to keep events; free space on that disk`,
    );
    try {
      return storeEvidence(dataDir, name, ts, jpeg);
    } catch (err) {
      if (!noSpace(err)) throw err;
    }
    log.error(
      { camera: cam.id, dataDir, image: name, bytes: jpeg.length },
      `disk full under ${dataDir}: camera ${cam.id}: evidence image ${name} not stored, the event is kept without it; free space on that disk`,
    );
    return { ...described(name, ts, jpeg), dropped: 'disk_full' };
  }

  /**
   * Deletes the oldest images that are never published (clean frames, scene_change references: everything but
   * `-annotated.jpg`, which the outbox owns and frees itself) until `bytes` are free; they go before any
   * published image. Not drops in the outbox's sense (nothing a subscriber would get is lost), so not counted there.
   */
  private dropLocalImages(bytes: number): { files: number; bytes: number } {
    const { dataDir, config, log } = this.opts;
    try {
      let total = 0;
      for (const entry of readdirSync(join(dataDir, 'evidence'), { recursive: true, withFileTypes: true })) {
        if (entry.isFile()) total += statSync(join(entry.parentPath, entry.name)).size;
      }
      const removed = pruneEvidence(dataDir, {
        maxBytes: Math.max(0, total - bytes),
        maxAgeDays: config.evidence.maxAgeDays,
        now: (this.opts.now ?? Date.now)(),
        keep: (file) => file.endsWith('-annotated.jpg'),
      });
      return { files: removed.files, bytes: removed.bytes };
    } catch (err) {
      log.warn(
        { err, dataDir },
        `disk full under ${dataDir}: cannot list ${join(dataDir, 'evidence')} to free space; only the outbox's images are dropped`,
      );
      return { files: 0, bytes: 0 };
    }
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
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
function round4(x: number): number {
  return Math.min(1, Math.max(0, Math.round(x * 10000) / 10000));
}
function roundBox(box: readonly number[]): [number, number, number, number] {
  return box.map(round4) as [number, number, number, number];
}
