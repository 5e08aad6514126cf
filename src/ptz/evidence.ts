import type { Logger } from 'pino';
import { encodeJpeg } from '../common/jpeg.js';
import { storeEvidence } from '../evidence/store.js';
import type { Frame, RgbFrame } from '../vision/types.js';
import { toRgb } from '../vision/yuv.js';

/** Where patrol stops and verifications keep their JPEGs, and how. */
export interface EvidenceOptions {
  dataDir: string;
  jpegQuality: number;
  log: Logger;
}

/** A frame from a frame tap as RGB that outlives the tap's call (a tapped buffer goes back to the source after it). */
export function keepRgb(frame: Frame): RgbFrame {
  const rgb = toRgb(frame);
  return { ...rgb, data: rgb.data === frame.data ? Buffer.from(rgb.data) : rgb.data };
}

/** Stores `frame` as evidence `{name}.jpg`; a failure is logged (naming the camera) and gives undefined. */
export async function keepJpeg(
  o: EvidenceOptions,
  cameraId: string,
  name: string,
  frame: RgbFrame,
): Promise<{ file: string; sha256: string; bytes: number } | undefined> {
  try {
    const saved = storeEvidence(o.dataDir, name, Date.now(), await encodeJpeg(frame, o.jpegQuality));
    return { file: saved.file, sha256: saved.sha256, bytes: saved.bytes };
  } catch (err) {
    o.log.warn({ camera: cameraId, evidence: name, err: (err as Error).message }, `camera ${cameraId}: evidence ${name} not kept`);
    return undefined;
  }
}
