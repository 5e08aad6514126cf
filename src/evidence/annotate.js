import { drawBoxes, drawLabel, drawLine, drawPolygon, fillRect, styleFor } from './draw.js';
import { encodeJpeg } from './jpeg.js';
export const ZONE_COLOR = [255, 214, 0];
export const MASK_COLOR = [160, 160, 160];
export const LINE_COLOR = [0, 200, 255];
const TITLE_STYLE = { color: [255, 255, 255], background: [0, 0, 0] };
/** A stable colour index per class name, so a class looks the same in every evidence image. */
function classIndex(name) {
    let h = 0;
    for (let i = 0; i < name.length; i++)
        h = (h * 31 + name.charCodeAt(i)) >>> 0;
    return h;
}
const px = (img, pts) => pts.map(([x, y]) => [x * img.width, y * img.height]);
/** A directed line with an arrow at its middle pointing to the forward side (first→second point turned clockwise). */
export function drawDirectedLine(img, line, color, thickness) {
    const [a, b] = px(img, line);
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
/** Draws zone, masks, line, boxes and caption on `img` in place. */
export function drawAnnotations(img, opts) {
    const { scale, thickness } = styleFor(img);
    if (opts.zone)
        drawPolygon(img, px(img, opts.zone), ZONE_COLOR, thickness);
    for (const mask of opts.masks ?? [])
        drawPolygon(img, px(img, mask), MASK_COLOR, thickness);
    if (opts.line)
        drawDirectedLine(img, opts.line, LINE_COLOR, thickness);
    drawBoxes(img, opts.objects.map((o) => ({
        box: [o.box[0] * img.width, o.box[1] * img.height, o.box[2] * img.width, o.box[3] * img.height],
        label: `${o.class} ${o.score.toFixed(2)} #${o.trackId}`,
        classId: classIndex(o.class),
    })));
    drawLabel(img, 0, 0, opts.title, { ...TITLE_STYLE, scale });
}
/**
 * The evidence image of an event: the frame with the zone outline, each object's box and label, and a caption.
 * Draws on a copy: the frame itself is also stored clean.
 */
export async function annotateEvidence(frame, opts) {
    const img = { width: frame.width, height: frame.height, data: Buffer.from(frame.data) };
    drawAnnotations(img, opts);
    return encodeJpeg(img, opts.quality);
}
/**
 * Two images of the same size side by side with a gap and a label above each (reference | now), for scene_change
 * evidence: the person checking the event sees what the zone should look like beside what it looks like.
 */
export function sideBySide(left, right, labels) {
    const gap = 8;
    const width = left.width + gap + right.width;
    const height = Math.max(left.height, right.height);
    const out = { width, height, data: Buffer.alloc(width * height * 3) };
    fillRect(out, 0, 0, width, height, [40, 40, 40]);
    const blit = (src, x0) => {
        for (let y = 0; y < src.height; y++) {
            const from = y * src.width * 3;
            out.data.set(src.data.subarray(from, from + src.width * 3), (y * width + x0) * 3);
        }
    };
    blit(left, 0);
    blit(right, left.width + gap);
    const { scale } = styleFor(left);
    drawLabel(out, 0, left.height, labels[0], { ...TITLE_STYLE, scale });
    drawLabel(out, left.width + gap, right.height, labels[1], { ...TITLE_STYLE, scale });
    return out;
}
