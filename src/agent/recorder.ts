import type { Logger } from 'pino';
import { v7 as uuidv7 } from 'uuid';
import type { CameraConfig, Config } from '../config/index.js';
import type { RuleHit } from '../rules/index.js';
import type { RgbFrame } from '../vision/types.js';
import { annotateEvidence } from '../evidence/annotate.js';
import { storeEvidence } from '../evidence/store.js';
import type { Outbox } from '../outbox/index.js';
import type { Uplink } from '../uplink/index.js';
import { version } from '../version.js';
import { EVENT_SCHEMA_ID, type EventPayload } from './event.js';

export interface RecorderOptions {
  config: Config;
  dataDir: string;
  outbox: Outbox;
  uplink: Uplink;
  model: { name: string; sha256: string };
  log: Logger;
}

/** Turns a rule hit on a frame into a durable event: evidence first, then the outbox row, then a nudge to the uplink. */
export class EventRecorder {
  constructor(private readonly opts: RecorderOptions) {}

  /** Returns true when the event was committed; a failure is logged with the camera and never thrown into the frame path. */
  async record(cam: CameraConfig, frame: RgbFrame, hit: RuleHit): Promise<boolean> {
    const { config, log, dataDir, outbox, uplink, model } = this.opts;
    const id = uuidv7();
    try {
      const zone = cam.zones.find((z) => z.id === hit.zoneId);
      const jpeg = await annotateEvidence(frame, {
        title: `${cam.name ?? cam.id} | ${hit.eventType} | ${formatLocal(frame.ts, config.gateway.timezone)}`,
        zone: zone?.polygon,
        objects: hit.objects,
        quality: config.evidence.jpegQuality,
      });
      const ev = storeEvidence(dataDir, id, frame.ts, jpeg);
      const payloadFor = (seq: number): EventPayload => ({
        schema: EVENT_SCHEMA_ID,
        id,
        seq,
        gatewayId: config.gateway.id,
        type: hit.eventType,
        camera: cam.name ? { id: cam.id, name: cam.name } : { id: cam.id },
        zone: hit.zoneId,
        rule: { id: hit.ruleId, kind: hit.rule },
        startedAt: new Date(hit.startedAt).toISOString(),
        detectedAt: new Date(hit.ts).toISOString(),
        dwellSeconds: Math.round(hit.dwellSeconds * 10) / 10,
        objects: hit.objects.map((o) => ({ class: o.class, score: round3(o.score), box: o.box.map(round4) as [number, number, number, number], trackId: o.trackId })),
        location: { ...cam.location },
        model: { ...model },
        evidence: { annotated: { file: ev.file, sha256: ev.sha256, bytes: ev.bytes, width: frame.width, height: frame.height, contentType: 'image/jpeg' } },
        agentVersion: version,
      });
      const { seq } = outbox.add({
        id,
        cameraId: cam.id,
        type: hit.eventType,
        topic: `${config.mqtt.prefix}/${config.gateway.id}/event/${hit.eventType}`,
        evidencePath: ev.file,
        evidenceSha256: ev.sha256,
      }, payloadFor);
      log.info({ camera: cam.id, event: id, seq, type: hit.eventType, zone: hit.zoneId }, `event ${hit.eventType} on ${cam.id}/${hit.zoneId} stored (seq ${seq})`);
      uplink.notify();
      return true;
    } catch (err) {
      log.error({ camera: cam.id, err }, `camera ${cam.id}: could not store ${hit.eventType} event`);
      return false;
    }
  }
}

function round3(x: number): number { return Math.round(x * 1000) / 1000; }
function round4(x: number): number { return Math.min(1, Math.max(0, Math.round(x * 10000) / 10000)); }

/** Local wall-clock time for the evidence caption, in the gateway's configured time zone. */
function formatLocal(ts: number, timeZone: string | undefined): string {
  const f = new Intl.DateTimeFormat('sv-SE', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short' });
  return f.format(new Date(ts));
}
