import t from 'tap';
import { Tracker, type TrackInput } from '../src/vision/tracker.js';

const det = (cls: string, x: number, y: number, w = 0.1, h = 0.1, score = 0.9): TrackInput => ({
  class: cls,
  score,
  box: [x, y, x + w, y + h],
});

t.test('a moving object keeps its id; first and current box and times are kept', async (t) => {
  const tracker = new Tracker();
  const ids = new Set<number>();
  for (let i = 0; i < 10; i++) {
    const [track] = tracker.update(1000 + i * 500, [det('car', 0.1 + i * 0.01, 0.5)]);
    ids.add(track!.id);
    if (i === 9) {
      t.same(track!.firstBox, [0.1, 0.5, 0.2, 0.6]);
      t.same(
        track!.box.map((v) => +v.toFixed(3)),
        [0.19, 0.5, 0.29, 0.6],
      );
      t.equal(track!.firstSeen, 1000);
      t.equal(track!.lastSeen, 5500);
      t.equal(track!.missed, 0);
    }
  }
  t.same([...ids], [1]);
});

t.test('tracks are per class and ids are never reused', async (t) => {
  const tracker = new Tracker();
  const first = tracker.update(0, [det('car', 0.1, 0.1), det('person', 0.1, 0.1), det('car', 0.6, 0.6)]);
  t.same(
    first.map((x) => [x.id, x.class]),
    [
      [1, 'car'],
      [2, 'person'],
      [3, 'car'],
    ],
  );
  const second = tracker.update(500, [det('person', 0.11, 0.1), det('car', 0.61, 0.6), det('car', 0.1, 0.11)]);
  t.same(
    second
      .filter((x) => x.missed === 0)
      .map((x) => x.id)
      .sort(),
    [1, 2, 3],
    'matched by class and overlap, not by order',
  );
  const third = tracker.update(1000, [det('truck', 0.1, 0.11)]);
  t.same(third.find((x) => x.class === 'truck')?.id, 4, 'a class change starts a new track');
});

t.test('greedy matching gives each detection to the best-overlapping track', async (t) => {
  const tracker = new Tracker();
  tracker.update(0, [det('person', 0.1, 0.1), det('person', 0.16, 0.1)]);
  const next = tracker.update(500, [det('person', 0.17, 0.1), det('person', 0.11, 0.1)]);
  t.same(
    next.map((x) => [x.id, x.box[0]]),
    [
      [1, 0.11],
      [2, 0.17],
    ],
  );
});

t.test('a track coasts through maxMissed frames, then ends', async (t) => {
  const tracker = new Tracker({ maxMissed: 3 });
  tracker.update(0, [det('car', 0.5, 0.5)]);
  for (let i = 1; i <= 3; i++) {
    const tracks = tracker.update(i * 500, []);
    t.equal(tracks.length, 1);
    t.equal(tracks[0]!.missed, i);
    t.equal(tracks[0]!.lastSeen, 0);
  }
  t.equal(tracker.update(2000, [det('car', 0.5, 0.5)])[0]!.id, 1, 'found again within the tolerance: same id');
  for (let i = 1; i <= 4; i++) tracker.update(2000 + i * 500, []);
  t.same(tracker.update(5000, []), [], 'gone after maxMissed + 1 frames');
  t.equal(tracker.update(5500, [det('car', 0.5, 0.5)])[0]!.id, 2);
});

t.test('low overlap starts a new track; returned tracks are copies', async (t) => {
  const tracker = new Tracker({ iouThreshold: 0.5 });
  tracker.update(0, [det('car', 0.1, 0.1)]);
  const tracks = tracker.update(500, [det('car', 0.15, 0.1)]);
  t.same(
    tracks.map((x) => [x.id, x.missed]),
    [
      [1, 1],
      [2, 0],
    ],
    'IoU 1/3 is below 0.5',
  );
  tracks[1]!.box[0] = 0.9;
  t.equal(tracker.update(1000, [det('car', 0.15, 0.1)]).find((x) => x.id === 2)?.missed, 0);
});

/** Shuffles the detections of a frame deterministically, so no test depends on the detector's output order. */
function shuffled<T>(xs: T[], seed: number): T[] {
  const out = xs.slice();
  let s = (seed * 2654435761) >>> 0;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) >>> 0;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

t.test('crossing: two people walking through each other keep their ids, also when one is hidden at the crossing', async (t) => {
  for (const hideAtCrossing of [false, true]) {
    const tracker = new Tracker({ maxMissed: 10 });
    const idAt = new Map<string, Set<number>>([
      ['east', new Set()],
      ['west', new Set()],
    ]);
    for (let i = 0; i < 30; i++) {
      const east = det('person', 0.1 + i * 0.02, 0.4, 0.1, 0.3); // walks right
      const west = det('person', 0.68 - i * 0.02, 0.41, 0.1, 0.3); // walks left; boxes coincide around frame 14-15
      const hidden = hideAtCrossing && i >= 13 && i <= 16; // the west walker is behind the east walker
      const tracks = tracker.update(i * 500, shuffled(hidden ? [east] : [east, west], i));
      for (const track of tracks.filter((x) => x.missed === 0)) {
        const x = track.box[0];
        const which = Math.abs(x - east.box[0]) < 1e-9 ? 'east' : Math.abs(x - west.box[0]) < 1e-9 ? 'west' : '?';
        idAt.get(which)?.add(track.id);
      }
    }
    t.same([...idAt.get('east')!], [1], `east walker keeps id 1 (hidden west: ${hideAtCrossing})`);
    t.same([...idAt.get('west')!], [2], `west walker keeps id 2 (hidden west: ${hideAtCrossing})`);
  }
});

t.test('occlusion gap: a moving car hidden for 2 s is found again where it should be, with its id', async (t) => {
  const tracker = new Tracker({ maxMissed: 10 });
  const ids = new Set<number>();
  for (let i = 0; i < 24; i++) {
    const hidden = i >= 10 && i < 14; // moves 0.12 while hidden: its last box no longer overlaps it at all
    const tracks = tracker.update(i * 500, hidden ? [] : [det('car', 0.05 + i * 0.03, 0.5, 0.1, 0.08)]);
    for (const track of tracks) ids.add(track.id);
  }
  t.same([...ids], [1]);
});

t.test('the assignment is optimal, not greedy: an ambiguous detection goes where it leaves no one unmatched', async (t) => {
  const tracker = new Tracker();
  tracker.update(0, [det('person', 0.1, 0.1, 0.2, 0.2), det('person', 0.26, 0.1, 0.2, 0.2)]);
  // d1 overlaps both tracks, best with track 1; d2 overlaps only track 1. Greedy would give d1 to track 1
  // and start a new track for d2 while track 2 coasts.
  const tracks = tracker.update(500, [det('person', 0.2, 0.1, 0.2, 0.2), det('person', 0.04, 0.1, 0.2, 0.2)]);
  t.same(
    tracks.map((x) => [x.id, x.missed, +x.box[0].toFixed(2)]),
    [
      [1, 0, 0.04],
      [2, 0, 0.2],
    ],
  );
});

t.test('weak detections continue tracks but never start one', async (t) => {
  const tracker = new Tracker();
  t.same(tracker.update(0, [det('person', 0.5, 0.5, 0.1, 0.2, 0.3)]), [], 'a weak detection alone is no track');
  tracker.update(500, [det('person', 0.2, 0.2, 0.1, 0.2, 0.8)]);
  const partly = tracker.update(1000, [det('person', 0.205, 0.2, 0.1, 0.2, 0.25), det('person', 0.7, 0.7, 0.1, 0.2, 0.3)]);
  t.same(
    partly.map((x) => [x.id, x.missed, x.score]),
    [[1, 0, 0.25]],
    'half hidden, scoring 0.25: same track, seen',
  );
  t.same(
    tracker.update(1500, [det('person', 0.21, 0.2, 0.1, 0.2, 0.05)]).map((x) => x.missed),
    [1],
    'below lowThreshold: ignored',
  );
});

t.test('stationary: a car that drives in and parks becomes stationary after stationaryMs despite detector jitter', async (t) => {
  const tracker = new Tracker({ stationaryMs: 3000 });
  const states: [number, boolean, number][] = [];
  for (let i = 0; i < 30; i++) {
    const x = 0.1 + Math.min(i, 10) * 0.03 + (i % 2 ? 0.004 : -0.004);
    const [track] = tracker.update(i * 500, [det('car', x, 0.5, 0.2, 0.15)]);
    states.push([i, track!.stationary, track!.stillSince]);
  }
  t.ok(
    states.slice(0, 10).every(([, s]) => !s),
    'moving: not stationary',
  );
  const firstStill = states.find(([, s]) => s)!;
  // Its last step (frame 9 → 10) is smaller than the tolerance, so "still" may begin at frame 9 or 10.
  t.ok(firstStill[2] === 9 * 500 || firstStill[2] === 10 * 500, `still since it stopped (${firstStill[2]} ms)`);
  t.equal(firstStill[0] * 500, firstStill[2] + 3000, 'stationary 3 s later');
  t.ok(
    states.slice(16).every(([, s]) => s),
    'jitter of 0.008 does not reset it',
  );
});

t.test('maxMissedMs: expiry by time for irregular detector runs; one missed run never ends a track', async (t) => {
  const fast = new Tracker({ maxMissedMs: 5000 });
  fast.update(0, [det('car', 0.5, 0.5)]);
  for (let i = 1; i <= 49; i++) fast.update(i * 100, []);
  t.equal(fast.update(4950, [])[0]?.missed, 50, '50 missed runs within 5 s: still coasting (maxMissed would have ended it after 5)');
  t.same(fast.update(5100, []), [], 'ended on the first run more than 5 s after it was last seen');

  const sparse = new Tracker({ maxMissedMs: 5000 });
  sparse.update(0, [det('car', 0.5, 0.5)]);
  t.equal(sparse.update(8000, [])[0]?.missed, 1, 'a single missed run 8 s later (a motion gate refreshing every 8 s) keeps the track');
  t.equal(sparse.update(16_000, [det('car', 0.5, 0.5)])[0]?.id, 1, 'found on the next run: the same track');
  sparse.update(24_000, []);
  t.same(sparse.update(32_000, []), [], 'two missed runs, 16 s unseen: ended');
});
