import { drawBoxes, drawLabel, drawLine, drawPolygon, fillRect, styleFor, textSize, type Canvas, type Color } from './draw.js';
import { encodeJpeg } from '../common/jpeg.js';

type Pt = readonly [number, number];

/** An object of the event that is not in the frame, and when it was (ms). */
export interface UnseenLabel {
  class: string;
  trackId: number;
  lastSeenAt: number;
}

export interface AnnotateOptions {
  /** Caption across the top: camera, event type, local time. */
  title: string;
  /** The zone outline, normalized [x, y] points. */
  zone?: readonly Pt[];
  /** Masked-out parts of the zone, normalized outlines. */
  masks?: readonly (readonly Pt[])[];
  /** A line_cross line, normalized, drawn with an arrow towards its forward side. */
  line?: readonly [Pt, Pt];
  /** The objects that made the rule fire, as detected in this frame, boxes normalized: each is boxed. */
  objects: readonly { class: string; score: number; box: readonly [number, number, number, number]; trackId: number }[];
  /**
   * Objects of the event the detector did not find in this frame (hidden, missed, gone): not boxed, since the box
   * would frame empty ground, but named in a caption along the bottom with how long ago they were last seen.
   */
  unseen?: { objects: readonly UnseenLabel[] /** Time of the frame (ms), for "last seen … ago". */; ts: number };
  quality: number;
}

export const ZONE_COLOR: Color = [255, 214, 0];
export const MASK_COLOR: Color = [160, 160, 160];
export const LINE_COLOR: Color = [0, 200, 255];
const TITLE_STYLE = { color: [255, 255, 255] as const, background: [0, 0, 0] as const };

/** A stable colour index per class name, so a class looks the same in every evidence image. */
function classIndex(name: string): number {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  return h;
}

const px = (img: Canvas, pts: readonly Pt[]): Pt[] => pts.map(([x, y]) => [x * img.width, y * img.height] as const);

/** A directed line with an arrow at its middle pointing to the forward side (first→second point turned clockwise). */
export function drawDirectedLine(img: Canvas, line: readonly [Pt, Pt], color: Color, thickness: number): void {
  const [a, b] = px(img, line) as [Pt, Pt];
  drawLine(img, a[0], a[1], b[0], b[1], color, thickness);
  const len = Math.hypot(b[0] - a[0], b[1] - a[1]) || 1;
  const [nx, ny] = [-(b[1] - a[1]) / len, (b[0] - a[0]) / len];
  const [mx, my] = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
  const size = Math.max(12, Math.min(img.width, img.height) / 20);
  const [tx, ty] = [mx + nx * size, my + ny * size];
  drawLine(img, mx, my, tx, ty, color, thickness);
  const [ux, uy] = [(b[0] - a[0]) / len, (b[1] - a[1]) / len];
  drawLine(img, tx, ty, tx - nx * size * 0.4 + ux * size * 0.3, ty - ny * size * 0.4 + uy * size * 0.3, color, thickness);
  drawLine(img, tx, ty, tx - nx * size * 0.4 - ux * size * 0.3, ty - ny * size * 0.4 - uy * size * 0.3, color, thickness);
}

/** Draws zone, masks, line, boxes, title and the caption of unseen objects on `img` in place. */
export function drawAnnotations(img: Canvas, opts: Omit<AnnotateOptions, 'quality'>): void {
  const { scale, thickness } = styleFor(img);
  if (opts.zone) drawPolygon(img, px(img, opts.zone), ZONE_COLOR, thickness);
  for (const mask of opts.masks ?? []) drawPolygon(img, px(img, mask), MASK_COLOR, thickness);
  if (opts.line) drawDirectedLine(img, opts.line, LINE_COLOR, thickness);
  drawBoxes(
    img,
    opts.objects.map((o) => ({
      box: [o.box[0] * img.width, o.box[1] * img.height, o.box[2] * img.width, o.box[3] * img.height] as const,
      label: `${o.class} ${o.score.toFixed(2)} #${o.trackId}`,
      classId: classIndex(o.class),
    })),
  );
  drawLabel(img, 0, 0, opts.title, { ...TITLE_STYLE, scale });
  if (opts.unseen?.objects.length) {
    // Last line first, on the bottom edge, then upwards: the caption reads top-down and stays clear of the title.
    const fits = (line: string): boolean => textSize(line, scale).width + 4 * scale <= img.width;
    let bottom = img.height;
    for (const line of unseenCaption(opts.unseen.objects, opts.unseen.ts, fits).reverse()) {
      bottom = drawLabel(img, 0, bottom, line, { ...TITLE_STYLE, scale })[1];
    }
  }
}

/**
 * The caption naming the unseen objects, "not detected in this frame: person #3 (last seen 2.1 s ago), …", in
 * lines that each `fit`.
 */
export function unseenCaption(unseen: readonly UnseenLabel[], ts: number, fits: (line: string) => boolean = () => true): string[] {
  const items = unseen.map((o) => `${o.class} #${o.trackId} (last seen ${(Math.max(0, ts - o.lastSeenAt) / 1000).toFixed(1)} s ago)`);
  const lines = ['not detected in this frame:'];
  for (const item of items) {
    const last = lines.length - 1;
    const joined = `${lines[last]}${lines[last]!.endsWith(':') ? ' ' : ', '}${item}`;
    if (fits(joined)) lines[last] = joined;
    else lines.push(item);
  }
  return lines;
}

/**
 * The evidence image of an event: the frame with the zone outline, each object's box and label, and a caption.
 * Draws on a copy: the frame itself is also stored clean.
 */
export async function annotateEvidence(frame: Canvas, opts: AnnotateOptions): Promise<Buffer> {
  const img: Canvas = { width: frame.width, height: frame.height, data: Buffer.from(frame.data) };
  drawAnnotations(img, opts);
  return encodeJpeg(img, opts.quality);
}

/**
 * Two images of the same size side by side with a gap and a label above each (reference | now), for scene_change
 * evidence: the person checking the event sees what the zone should look like beside what it looks like.
 */
export function sideBySide(left: Canvas, right: Canvas, labels: readonly [string, string]): Canvas {
  const gap = 8;
  const width = left.width + gap + right.width;
  const height = Math.max(left.height, right.height);
  const out: Canvas = { width, height, data: Buffer.alloc(width * height * 3) };
  fillRect(out, 0, 0, width, height, [40, 40, 40]);
  const blit = (src: Canvas, x0: number): void => {
    for (let y = 0; y < src.height; y++) {
      const from = y * src.width * 3;
      (out.data as Buffer).set(src.data.subarray(from, from + src.width * 3), (y * width + x0) * 3);
    }
  };
  blit(left, 0);
  blit(right, left.width + gap);
  const { scale } = styleFor(left);
  drawLabel(out, 0, left.height, labels[0], { ...TITLE_STYLE, scale });
  drawLabel(out, left.width + gap, right.height, labels[1], { ...TITLE_STYLE, scale });
  return out;
}
