/**
 * Drawing on packed RGB24 buffers, in place: rectangles, polygon outlines and text in a built-in 5×8
 * bitmap font (a fresh gateway has no system fonts, and evidence must render the same everywhere).
 * Everything clips to the image; coordinates are pixels, fractions are rounded.
 */

/** An RGB24 image: width*height*3 bytes, rows top to bottom. */
export interface Canvas {
  width: number;
  height: number;
  data: Uint8Array;
}

export type Color = readonly [number, number, number];

/**
 * Printable ASCII (0x20–0x7e), 8 bytes a glyph = 8 rows top to bottom, bit 4 = leftmost of 5 columns.
 * Hand-drawn in the style of the classic HD44780 5×7 character ROM, with a descender row for g, j, p, q, y.
 */
const FONT_HEX = [
  '000000000000000004040404040004000a0a0a00000000000a0a1f0a1f0a0a00040f140e051e040018190204081303000c12140815120d000404080000000000', //  !"#$%&'
  '020408080804020008040202020408000004150e150400000004041f04040000000000000c0408000000001f0000000000000000000c0c000001020408100000', // ()*+,-./
  '0e11131519110e00040c040404040e000e11010204081f001f02040201110e0002060a121f0202001f101e0101110e000608101e11110e001f01020408080800', // 01234567
  '0e11110e11110e000e11110f01020c00000c0c000c0c0000000c0c000c040800020408100804020000001f001f00000008040201020408000e11010204000400', // 89:;<=>?
  '0e11010d15150e000e1111111f1111001e11111e11111e000e11101010110e001c12111111121c001f10101e10101f001f10101e101010000e11101711110f00', // @ABCDEFG
  '1111111f111111000e04040404040e000702020202120c0011121418141211001010101010101f00111b15151111110011111915131111000e11111111110e00', // HIJKLMNO
  '1e11111e101010000e11111115120d001e11111e141211000f10100e01011e001f040404040404001111111111110e0011111111110a04001111111515150a00', // PQRSTUVW
  '11110a040a1111001111110a040404001f01020408101f000e08080808080e0000100804020100000e02020202020e00040a1100000000000000000000001f00', // XYZ[\\]^_
  '080402000000000000000e010f110f001010161911111e0000000e1010110e0001010d1311110f0000000e111f100e000609081c0808080000000f11110f010e', // `abcdefg
  '101016191111110004000c0404040e00020006020202120c10101214181412000c04040404040e0000001a1515111100000016191111110000000e1111110e00', // hijklmno
  '00001e11111e101000000f11110f0101000016191010100000000e100e011e0008081c08080906000000111111130d0000001111110a04000000111115150a00', // pqrstuvw
  '0000110a040a110000001111110f010e00001f0204081f000204040804040200040404040404040008040402040408000000081502000000', // xyz{|}~
].join('');

const GLYPHS = Uint8Array.from(FONT_HEX.match(/../g) ?? [], (h) => parseInt(h, 16));
const FIRST = 0x20;
const LAST = 0x7e;
export const GLYPH_WIDTH = 5;
export const GLYPH_HEIGHT = 8;
/** Horizontal distance between glyph origins at scale 1 (one blank column between letters). */
const ADVANCE = GLYPH_WIDTH + 1;

function put(img: Canvas, x: number, y: number, color: Color): void {
  if (x < 0 || y < 0 || x >= img.width || y >= img.height) return;
  const o = (y * img.width + x) * 3;
  img.data[o] = color[0];
  img.data[o + 1] = color[1];
  img.data[o + 2] = color[2];
}

/** Fills pixels x1 ≤ x < x2, y1 ≤ y < y2 (rounded, clipped). */
export function fillRect(img: Canvas, x1: number, y1: number, x2: number, y2: number, color: Color): void {
  const xa = Math.max(0, Math.round(x1));
  const ya = Math.max(0, Math.round(y1));
  const xb = Math.min(img.width, Math.round(x2));
  const yb = Math.min(img.height, Math.round(y2));
  if (xa >= xb || ya >= yb) return;
  const [r, g, b] = color;
  const data = img.data;
  for (let y = ya; y < yb; y++) {
    let o = (y * img.width + xa) * 3;
    for (let x = xa; x < xb; x++, o += 3) {
      data[o] = r;
      data[o + 1] = g;
      data[o + 2] = b;
    }
  }
}

/**
 * Outlines box [x1, y1, x2, y2] (clipped to the image first) with lines `thickness` pixels wide drawn
 * inside it, so a box that touches or crosses the image border stays fully visible.
 */
export function drawRect(img: Canvas, box: readonly [number, number, number, number], color: Color, thickness = 2): void {
  const x1 = Math.max(0, Math.round(box[0]));
  const y1 = Math.max(0, Math.round(box[1]));
  const x2 = Math.min(img.width, Math.round(box[2]));
  const y2 = Math.min(img.height, Math.round(box[3]));
  const t = Math.max(1, Math.round(thickness));
  fillRect(img, x1, y1, x2, Math.min(y1 + t, y2), color);
  fillRect(img, x1, Math.max(y2 - t, y1), x2, y2, color);
  fillRect(img, x1, y1, Math.min(x1 + t, x2), y2, color);
  fillRect(img, Math.max(x2 - t, x1), y1, x2, y2, color);
}

/** A straight line (Bresenham) stamped with a thickness × thickness square. */
export function drawLine(img: Canvas, xa: number, ya: number, xb: number, yb: number, color: Color, thickness = 1): void {
  let x = Math.round(xa);
  let y = Math.round(ya);
  const x2 = Math.round(xb);
  const y2 = Math.round(yb);
  const t = Math.max(1, Math.round(thickness));
  const half = Math.floor((t - 1) / 2);
  const dx = Math.abs(x2 - x);
  const dy = -Math.abs(y2 - y);
  const sx = x < x2 ? 1 : -1;
  const sy = y < y2 ? 1 : -1;
  let err = dx + dy;
  for (;;) {
    if (t === 1) put(img, x, y, color);
    else fillRect(img, x - half, y - half, x - half + t, y - half + t, color);
    if (x === x2 && y === y2) break;
    const e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y += sy;
    }
  }
}

/** Closed polygon outline through `points` (pixels). */
export function drawPolygon(img: Canvas, points: readonly (readonly [number, number])[], color: Color, thickness = 2): void {
  for (let i = 0; i < points.length; i++) {
    const a = points[i]!;
    const b = points[(i + 1) % points.length]!;
    drawLine(img, a[0], a[1], b[0], b[1], color, thickness);
  }
}

/** Size in pixels of `text` drawn at `scale` (characters outside printable ASCII render as '?'). */
export function textSize(text: string, scale = 1): { width: number; height: number } {
  const s = Math.max(1, Math.round(scale));
  return { width: text.length ? (text.length * ADVANCE - 1) * s : 0, height: GLYPH_HEIGHT * s };
}

/** Draws `text` with its top-left corner at (x, y); each font pixel becomes a scale × scale block. */
export function drawText(img: Canvas, x: number, y: number, text: string, color: Color, scale = 1): void {
  const s = Math.max(1, Math.round(scale));
  const left = Math.round(x);
  const top = Math.round(y);
  for (let i = 0; i < text.length; i++) {
    let code = text.charCodeAt(i);
    if (code < FIRST || code > LAST) code = 0x3f;
    const glyph = (code - FIRST) * GLYPH_HEIGHT;
    const gx = left + i * ADVANCE * s;
    for (let row = 0; row < GLYPH_HEIGHT; row++) {
      const bits = GLYPHS[glyph + row]!;
      if (bits === 0) continue;
      for (let col = 0; col < GLYPH_WIDTH; col++) {
        if (bits & (0x10 >> col)) fillRect(img, gx + col * s, top + row * s, gx + (col + 1) * s, top + (row + 1) * s, color);
      }
    }
  }
}

export interface LabelStyle {
  color: Color;
  background: Color;
  /** Font scale; default 1. */
  scale?: number;
  /** Background margin around the text in pixels; default 2 × scale. */
  padding?: number;
}

/**
 * A text label on a filled background, placed with its bottom-left corner at (x, y) (above a box's
 * top-left corner), moved below that point when it would leave the top, and left when it would leave the
 * right edge. Returns the background box.
 */
export function drawLabel(img: Canvas, x: number, y: number, text: string, style: LabelStyle): [number, number, number, number] {
  const scale = Math.max(1, Math.round(style.scale ?? 1));
  const pad = Math.round(style.padding ?? 2 * scale);
  const size = textSize(text, scale);
  const w = size.width + 2 * pad;
  const h = size.height + 2 * pad;
  let bx = Math.round(x);
  let by = Math.round(y) - h;
  if (by < 0) by = Math.round(y);
  if (bx + w > img.width) bx = img.width - w;
  if (bx < 0) bx = 0;
  if (by + h > img.height) by = img.height - h;
  if (by < 0) by = 0;
  fillRect(img, bx, by, bx + w, by + h, style.background);
  drawText(img, bx + pad, by + pad, text, style.color, scale);
  return [bx, by, bx + w, by + h];
}

const PALETTE: readonly Color[] = [
  [255, 56, 56],
  [255, 157, 151],
  [255, 112, 31],
  [255, 178, 29],
  [207, 210, 49],
  [72, 249, 10],
  [146, 204, 23],
  [61, 219, 134],
  [26, 147, 52],
  [0, 212, 187],
  [44, 153, 168],
  [0, 194, 255],
  [52, 69, 147],
  [100, 115, 255],
  [0, 24, 236],
  [132, 56, 255],
  [82, 0, 133],
  [203, 56, 255],
  [255, 149, 200],
  [255, 55, 199],
];

/** A stable, distinct colour per class id, so the same class looks the same in every evidence image. */
export function classColor(classId: number): Color {
  return PALETTE[((classId % PALETTE.length) + PALETTE.length) % PALETTE.length]!;
}

/** Black or white, whichever reads better on `background`. */
export function textColorOn(background: Color): Color {
  const luma = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2];
  return luma > 150 ? [0, 0, 0] : [255, 255, 255];
}

/** Font scale and line thickness that stay legible as the image grows (1 and 2 up to ~500 px). */
export function styleFor(img: Canvas): { scale: number; thickness: number } {
  const scale = Math.max(1, Math.round(Math.min(img.width, img.height) / 400));
  return { scale, thickness: scale + 1 };
}

/** A box to annotate: its outline and label take the class colour. */
export interface BoxLabel {
  box: readonly [number, number, number, number];
  label: string;
  classId: number;
}

/** Outlines each box and labels it above its top-left corner. */
export function drawBoxes(img: Canvas, boxes: readonly BoxLabel[]): void {
  const { scale, thickness } = styleFor(img);
  for (const b of boxes) {
    const color = classColor(b.classId);
    drawRect(img, b.box, color, thickness);
    drawLabel(img, b.box[0], b.box[1], b.label, { color: textColorOn(color), background: color, scale });
  }
}
