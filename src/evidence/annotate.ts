import { drawBoxes, drawLabel, drawPolygon, styleFor, type Canvas } from './draw.js';
import { encodeJpeg } from './jpeg.js';

export interface AnnotateOptions {
  /** Caption across the top: camera, event type, local time. */
  title: string;
  /** The zone outline, normalized [x, y] points. */
  zone?: readonly (readonly [number, number])[];
  /** The objects that made the rule fire, boxes normalized. */
  objects: readonly { class: string; score: number; box: readonly [number, number, number, number]; trackId: number }[];
  quality: number;
}

const ZONE_COLOR = [255, 214, 0] as const;
const TITLE_STYLE = { color: [255, 255, 255] as const, background: [0, 0, 0] as const };

/** A stable colour index per class name, so a class looks the same in every evidence image. */
function classIndex(name: string): number {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  return h;
}

/**
 * The evidence image of an event: the frame with the zone outline, each object's box and label, and a caption.
 * Draws on a copy: the frame itself may still be needed for another event.
 */
export async function annotateEvidence(frame: Canvas, opts: AnnotateOptions): Promise<Buffer> {
  const img: Canvas = { width: frame.width, height: frame.height, data: Buffer.from(frame.data) };
  const { scale, thickness } = styleFor(img);
  if (opts.zone) drawPolygon(img, opts.zone.map(([x, y]) => [x * img.width, y * img.height] as const), ZONE_COLOR, thickness);
  drawBoxes(img, opts.objects.map((o) => ({
    box: [o.box[0] * img.width, o.box[1] * img.height, o.box[2] * img.width, o.box[3] * img.height] as const,
    label: `${o.class} ${o.score.toFixed(2)} #${o.trackId}`,
    classId: classIndex(o.class),
  })));
  drawLabel(img, 0, 0, opts.title, { ...TITLE_STYLE, scale });
  return encodeJpeg(img, opts.quality);
}
