/**
 * Human-labelled boxes (YOLO txt or COCO JSON) and a detector's scores against them: per class precision, recall
 * and AP@0.5, and mAP@0.5. Pure: the caller reads the files and runs the detector (src/cli/model.ts). Matching and
 * AP are compare.ts's, with the labels as the reference.
 */
import { compareDetections, type Box, type DetectionScores, type FrameDetections } from './compare.js';

/** A label file, or a line or entry in it, that cannot be read; the message names the file and the line. */
export class LabelError extends Error {}

/**
 * One YOLO label file: a line `class cx cy w h` per box, the class an index into `classes` (the label set's
 * classes.txt, or the model's class list), the box centre and size normalised to the image. Blank lines and
 * lines starting with # are skipped. Returns boxes in pixels of a `width`×`height` image.
 */
export function parseYoloLabels(
  text: string,
  file: string,
  size: { width: number; height: number },
  classes: readonly string[],
  classId: (name: string) => number,
): Box[] {
  const boxes: Box[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const where = `${file}:${i + 1}`;
    const fields = line.split(/\s+/);
    if (fields.length !== 5) throw new LabelError(`${where}: expected 5 fields 'class cx cy w h', got ${fields.length}: '${line}'`);
    const nums = fields.map(Number);
    const bad = fields.findIndex((f, k) => !Number.isFinite(nums[k]) || f === '');
    if (bad >= 0) throw new LabelError(`${where}: field ${bad + 1} '${fields[bad]}' is not a number`);
    const [c, cx, cy, w, h] = nums as [number, number, number, number, number];
    if (!Number.isInteger(c) || c < 0 || c >= classes.length) {
      throw new LabelError(`${where}: class ${fields[0]} is not an index of the ${classes.length} classes (0..${classes.length - 1})`);
    }
    if (!(w > 0 && h > 0 && w <= 1 && h <= 1))
      throw new LabelError(`${where}: width and height must be in (0, 1] (normalised to the image), got ${w} ${h}`);
    const slack = 1e-3; // rounding of normalised coordinates written with few digits
    if (cx - w / 2 < -slack || cy - h / 2 < -slack || cx + w / 2 > 1 + slack || cy + h / 2 > 1 + slack) {
      throw new LabelError(`${where}: box ${cx} ${cy} ${w} ${h} reaches outside the image (coordinates are normalised to 0..1)`);
    }
    boxes.push({
      classId: classId(classes[c]!),
      score: 1,
      box: [(cx - w / 2) * size.width, (cy - h / 2) * size.height, (cx + w / 2) * size.width, (cy + h / 2) * size.height],
    });
  });
  return boxes;
}

/** A YOLO classes.txt: one class name a line, line i naming class i. */
export function parseClassNames(text: string, file: string, known: (name: string) => boolean): string[] {
  const lines = text.split('\n').map((l) => l.trim());
  while (lines.length && lines[lines.length - 1] === '') lines.pop();
  lines.forEach((name, i) => {
    if (!name) throw new LabelError(`${file}:${i + 1}: empty class name (line i names class i)`);
    if (!known(name)) throw new LabelError(`${file}:${i + 1}: the model has no class '${name}'`);
  });
  return lines;
}

/**
 * A COCO detection JSON (`images`, `annotations` with `bbox` [x, y, w, h] in pixels, `categories` with names
 * the model knows). Returns boxes per image file name; every listed image is present, even with no boxes.
 */
export function parseCocoLabels(text: string, file: string, classId: (name: string) => number | undefined): Map<string, Box[]> {
  let doc: { images?: unknown; annotations?: unknown; categories?: unknown };
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new LabelError(`${file}: not JSON: ${(err as Error).message}`);
  }
  const list = (key: 'images' | 'annotations' | 'categories'): Record<string, unknown>[] => {
    const v = doc[key];
    if (!Array.isArray(v)) throw new LabelError(`${file}: '${key}' must be an array (COCO detection format)`);
    return v as Record<string, unknown>[];
  };
  const categories = new Map<unknown, number>();
  list('categories').forEach((c, i) => {
    const id = classId(String(c.name));
    if (id === undefined) throw new LabelError(`${file}: categories[${i}]: the model has no class '${String(c.name)}'`);
    categories.set(c.id, id);
  });
  const names = new Map<unknown, string>();
  const out = new Map<string, Box[]>();
  list('images').forEach((img, i) => {
    if (typeof img.file_name !== 'string') throw new LabelError(`${file}: images[${i}] has no file_name`);
    names.set(img.id, img.file_name);
    out.set(img.file_name, []);
  });
  list('annotations').forEach((a, i) => {
    const where = `${file}: annotations[${i}]${a.id !== undefined ? ` (id ${String(a.id)})` : ''}`;
    const name = names.get(a.image_id);
    if (name === undefined) throw new LabelError(`${where}: image_id ${String(a.image_id)} is not in 'images'`);
    const cls = categories.get(a.category_id);
    if (cls === undefined) throw new LabelError(`${where}: category_id ${String(a.category_id)} is not in 'categories'`);
    const b = a.bbox;
    if (!Array.isArray(b) || b.length !== 4 || b.some((v) => typeof v !== 'number' || !Number.isFinite(v)) || !(b[2] > 0 && b[3] > 0)) {
      throw new LabelError(`${where}: bbox must be [x, y, width, height] in pixels with width and height > 0`);
    }
    out.get(name)!.push({ classId: cls, score: 1, box: [b[0], b[1], b[0] + b[2], b[1] + b[3]] });
  });
  return out;
}

export interface ImageResult {
  image: string;
  labels: readonly Box[];
  /** Detections at the operating threshold. */
  detections: readonly Box[];
  /** Detections at a low threshold, for the ranking behind AP. */
  ranked: readonly Box[];
}

export interface ClassScore {
  labels: number;
  detections: number;
  truePositives: number;
  precision: number;
  recall: number;
  ap50: number;
}

/** `map50` is the mean AP@0.5 over the classes in scope that have at least one label. */
export interface Evaluation extends DetectionScores {
  images: number;
  labels: number;
  /** Per class id, every class in scope that has labels or detections. */
  perClass: Record<number, ClassScore>;
}

/**
 * Scores detections against labels. Only classes in `scope` count (the classes the labeller labelled); by
 * default the classes that have at least one label, since a detection of a class nobody labelled is no error.
 */
export function evaluateDetections(results: readonly ImageResult[], opts: { iou?: number; scope?: readonly number[] } = {}): Evaluation {
  const scope = new Set(opts.scope ?? results.flatMap((r) => r.labels.map((b) => b.classId)));
  const keep = (boxes: readonly Box[]): Box[] => boxes.filter((b) => scope.has(b.classId));
  const frames: FrameDetections[] = results.map((r) => ({ a: keep(r.detections), aAll: keep(r.ranked), b: keep(r.labels) }));
  const all = compareDetections(frames, opts.iou ?? 0.5);
  const perClass: Record<number, ClassScore> = {};
  for (const classId of scope) {
    const one = frames.map((f) => ({ a: f.a.filter((b) => b.classId === classId), aAll: [], b: f.b.filter((b) => b.classId === classId) }));
    const c = compareDetections(one, opts.iou ?? 0.5);
    if (c.reference === 0 && c.detections === 0) continue;
    perClass[classId] = {
      labels: c.reference,
      detections: c.detections,
      truePositives: c.truePositives,
      precision: c.detections ? c.precision : 0,
      recall: c.reference ? c.recall : 0,
      ap50: all.perClass[classId]?.ap ?? 0,
    };
  }
  return {
    images: results.length,
    labels: all.reference,
    detections: all.detections,
    truePositives: all.truePositives,
    precision: all.precision,
    recall: all.recall,
    f1: all.f1,
    map50: all.map50,
    perClass,
  };
}
