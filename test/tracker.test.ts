import t from 'tap';
import { Tracker, type TrackInput } from '../src/vision/tracker.js';

const det = (cls: string, x: number, y: number, w = 0.1, h = 0.1, score = 0.9): TrackInput =>
  ({ class: cls, score, box: [x, y, x + w, y + h] });

t.test('a moving object keeps its id; first and current box and times are kept', async (t) => {
  const tracker = new Tracker();
  const ids = new Set<number>();
  for (let i = 0; i < 10; i++) {
    const [track] = tracker.update(1000 + i * 500, [det('car', 0.1 + i * 0.01, 0.5)]);
    ids.add(track!.id);
    if (i === 9) {
      t.same(track!.firstBox, [0.1, 0.5, 0.2, 0.6]);
      t.same(track!.box.map((v) => +v.toFixed(3)), [0.19, 0.5, 0.29, 0.6]);
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
  t.same(first.map((x) => [x.id, x.class]), [[1, 'car'], [2, 'person'], [3, 'car']]);
  const second = tracker.update(500, [det('person', 0.11, 0.1), det('car', 0.61, 0.6), det('car', 0.1, 0.11)]);
  t.same(second.filter((x) => x.missed === 0).map((x) => x.id).sort(), [1, 2, 3], 'matched by class and overlap, not by order');
  const third = tracker.update(1000, [det('truck', 0.1, 0.11)]);
  t.same(third.find((x) => x.class === 'truck')?.id, 4, 'a class change starts a new track');
});

t.test('greedy matching gives each detection to the best-overlapping track', async (t) => {
  const tracker = new Tracker();
  tracker.update(0, [det('person', 0.1, 0.1), det('person', 0.16, 0.1)]);
  const next = tracker.update(500, [det('person', 0.17, 0.1), det('person', 0.11, 0.1)]);
  t.same(next.map((x) => [x.id, x.box[0]]), [[1, 0.11], [2, 0.17]]);
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
  t.same(tracks.map((x) => [x.id, x.missed]), [[1, 1], [2, 0]], 'IoU 1/3 is below 0.5');
  tracks[1]!.box[0] = 0.9;
  t.equal(tracker.update(1000, [det('car', 0.15, 0.1)]).find((x) => x.id === 2)?.missed, 0);
});
