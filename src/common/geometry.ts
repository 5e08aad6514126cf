/**
 * Zone geometry in normalized frame coordinates: x to the right, y down, both 0..1.
 * Pure functions, shared by the rules and by config validation.
 */

export type Point = readonly [number, number];
/** x1, y1, x2, y2. */
export type Box = readonly [number, number, number, number];

const EPS = 1e-12;

/**
 * The point where an object stands: the middle of its box's bottom edge. A person or vehicle is "in" a zone
 * when this point is, so a box that only overlaps the zone from behind or above (a passer-by on the far
 * pavement whose head covers a fire lane) does not count.
 */
export function groundPoint(box: Box): Point {
  return [(box[0] + box[2]) / 2, box[3]];
}

/** Even-odd ray casting; a point exactly on an edge may fall either way. */
export function pointInPolygon(p: Point, polygon: readonly Point[]): boolean {
  const [x, y] = p;
  let inside = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [xi, yi] = polygon[i]!;
    const [xj, yj] = polygon[j]!;
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/**
 * Which side of the directed line a→b the point p is on, as a signed distance: positive on the side that a→b
 * turned 90° clockwise on screen points to (y grows downwards), negative on the other side.
 */
export function sideOf(p: Point, a: Point, b: Point): number {
  const len = distance(a, b);
  return len === 0 ? 0 : cross(a, b, p) / len;
}

/** Where segment pq meets the line through a and b (p and q on different sides of it). */
export function crossingPoint(p: Point, q: Point, a: Point, b: Point): Point {
  const sp = cross(a, b, p);
  const sq = cross(a, b, q);
  const t = sp / (sp - sq);
  return [p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t];
}

/** Shortest distance from p to the box [x1, y1, x2, y2] (0 inside it). */
export function distanceToBox(p: Point, box: Box): number {
  const dx = Math.max(box[0] - p[0], 0, p[0] - box[2]);
  const dy = Math.max(box[1] - p[1], 0, p[1] - box[3]);
  return Math.hypot(dx, dy);
}

export function distance(a: Point, b: Point): number {
  return Math.hypot(a[0] - b[0], a[1] - b[1]);
}

export function boxArea(box: Box): number {
  return Math.max(0, box[2] - box[0]) * Math.max(0, box[3] - box[1]);
}

function cross(o: Point, a: Point, b: Point): number {
  return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
}

function onSegment(p: Point, a: Point, b: Point): boolean {
  return (
    Math.min(a[0], b[0]) - EPS <= p[0] &&
    p[0] <= Math.max(a[0], b[0]) + EPS &&
    Math.min(a[1], b[1]) - EPS <= p[1] &&
    p[1] <= Math.max(a[1], b[1]) + EPS
  );
}

/** True when the closed segments ab and cd share at least one point. */
export function segmentsIntersect(a: Point, b: Point, c: Point, d: Point): boolean {
  const d1 = cross(c, d, a);
  const d2 = cross(c, d, b);
  const d3 = cross(a, b, c);
  const d4 = cross(a, b, d);
  if (((d1 > EPS && d2 < -EPS) || (d1 < -EPS && d2 > EPS)) && ((d3 > EPS && d4 < -EPS) || (d3 < -EPS && d4 > EPS))) return true;
  return (
    (Math.abs(d1) <= EPS && onSegment(a, c, d)) ||
    (Math.abs(d2) <= EPS && onSegment(b, c, d)) ||
    (Math.abs(d3) <= EPS && onSegment(c, a, b)) ||
    (Math.abs(d4) <= EPS && onSegment(d, a, b))
  );
}

/**
 * Why a polygon cannot be a zone outline, in words for the person who drew it, or null when it can.
 * Points are numbered from 0, as in the config file's lists.
 */
export function polygonProblem(polygon: readonly Point[]): string | null {
  const n = polygon.length;
  if (n < 3) return `a polygon needs at least 3 points, got ${n}`;
  for (let i = 0; i < n; i++) {
    const j = (i + 1) % n;
    if (distance(polygon[i]!, polygon[j]!) <= EPS) return `points ${i} and ${j} are the same; remove one`;
  }
  const [p0, p1] = [polygon[0]!, polygon[1]!];
  if (polygon.every((p) => Math.abs(cross(p0, p1, p)) <= EPS)) return 'all points lie on one line; the polygon has no area';
  const edge = (i: number): [Point, Point] => [polygon[i]!, polygon[(i + 1) % n]!];
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const [a, b] = edge(i);
      const [c, d] = edge(j);
      const adjacent = j === i + 1 || (i === 0 && j === n - 1);
      // Neighbouring edges share a corner by design; they are wrong only when the second folds back onto the first.
      const crosses = adjacent ? foldsBack(i, j, a, b, c, d) : segmentsIntersect(a, b, c, d);
      if (crosses) {
        return (
          `it crosses itself: the edge from point ${i} to point ${(i + 1) % n} meets the edge from point ${j} to point ${(j + 1) % n}; ` +
          'list the points in order around the outline (clockwise or anticlockwise)'
        );
      }
    }
  }
  return null;
}

function foldsBack(i: number, j: number, a: Point, b: Point, c: Point, d: Point): boolean {
  // The shared corner is b == c when j follows i, or a == d when i is edge 0 and j the closing edge.
  const [corner, p, q] = j === i + 1 ? [b, a, d] : [a, b, c];
  if (Math.abs(cross(corner, p, q)) > EPS) return false;
  return (p[0] - corner[0]) * (q[0] - corner[0]) + (p[1] - corner[1]) * (q[1] - corner[1]) > 0;
}
