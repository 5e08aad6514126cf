import t from 'tap';
import { InferenceScheduler } from '../src/vision/scheduler.js';

/** A run function that records the order of items and finishes each only when the test says so. */
function gated() {
  const order: string[] = [];
  const waiting: (() => void)[] = [];
  const run = (lane: string, item: number) =>
    new Promise<void>((resolve) => {
      order.push(`${lane}${item}`);
      waiting.push(resolve);
    });
  /** Lets the running item finish and the worker start the next one. */
  const step = async () => {
    waiting.shift()?.();
    await new Promise((r) => setImmediate(r));
  };
  return { order, run, step };
}

t.test('bounded: a lane keeps only its newest `depth` items, counts the rest as dropped', async (t) => {
  const g = gated();
  const q = new InferenceScheduler<number>({ depth: 3, run: g.run });
  for (let i = 0; i < 1000; i++) q.push('a', i);
  t.match(q.stats('a'), { queued: 3, pushed: 1000, dropped: 996, done: 0 }, 'item 0 runs, 996 pushed out, 3 wait');
  while (q.stats('a').queued > 0 || g.order.length < 4) await g.step();
  await g.step();
  await q.idle();
  t.same(g.order, ['a0', 'a997', 'a998', 'a999'], 'the oldest were dropped; the rest ran in arrival order');
  t.match(q.stats('a'), { queued: 0, done: 4, dropped: 996 });
});

t.test('onDrop is told each pushed-out item, oldest first, and never an item that runs', async (t) => {
  const g = gated();
  const dropped: string[] = [];
  const q = new InferenceScheduler<number>({ depth: 2, run: g.run, onDrop: (lane, item) => dropped.push(`${lane}${item}`) });
  for (let i = 0; i < 6; i++) q.push('a', i);
  q.push('b', 0);
  t.same(dropped, ['a1', 'a2', 'a3'], 'a0 runs, a4 and a5 wait, a1–a3 were pushed out in that order');
  while (g.order.length < 4) await g.step();
  await g.step();
  await q.idle();
  t.same(g.order, ['a0', 'a4', 'b0', 'a5'], 'the others ran');
  t.equal(q.stats('a').dropped, dropped.length, 'every drop counted is a drop told');
});

t.test('fair: lanes take turns whatever their push rate', async (t) => {
  const g = gated();
  const q = new InferenceScheduler<number>({ depth: 4, run: g.run });
  for (const lane of ['a', 'b', 'c']) q.addLane(lane);
  q.push('a', 0); // runs at once
  for (let i = 1; i <= 4; i++) q.push('a', i); // a floods
  q.push('b', 0);
  q.push('c', 0);
  q.push('c', 1);
  for (let i = 0; i < 8; i++) await g.step();
  await q.idle();
  t.same(g.order, ['a0', 'b0', 'c0', 'a1', 'c1', 'a2', 'a3', 'a4']);
});

t.test('a failing item is counted and reported; the worker carries on', async (t) => {
  const errors: string[] = [];
  const q = new InferenceScheduler<number>({
    depth: 2,
    run: async (_lane, item) => {
      if (item === 1) throw new Error('boom');
    },
    onError: (lane, err) => errors.push(`${lane}: ${(err as Error).message}`),
  });
  q.push('cam', 1);
  q.push('cam', 2);
  await q.idle();
  t.same(errors, ['cam: boom']);
  t.match(q.stats('cam'), { done: 2, failed: 1 });
});

t.test('wait and run times are measured; close() discards the queue and waits for the running item', async (t) => {
  let clock = 0;
  const g = gated();
  const q = new InferenceScheduler<number>({ depth: 2, run: g.run, now: () => clock });
  q.push('a', 1);
  q.push('a', 2);
  clock = 30;
  await g.step(); // a1 ran 30 ms; a2 waited 30 ms
  clock = 50;
  const closed = q.close();
  q.push('a', 3);
  await g.step();
  await closed;
  t.same(g.order, ['a1', 'a2']);
  t.match(q.stats('a'), { done: 2, waitMs: 30, runMs: 50, queued: 0 });
  t.throws(() => new InferenceScheduler({ depth: 0, run: g.run }), /depth/);
});

t.test('concurrency 2: two items in flight at most, still round-robin, idle() waits for both', async (t) => {
  const g = gated();
  let inFlight = 0;
  let most = 0;
  const q = new InferenceScheduler<number>({
    depth: 3,
    concurrency: 2,
    run: async (lane, item) => {
      most = Math.max(most, ++inFlight);
      await g.run(lane, item);
      inFlight--;
    },
  });
  for (const lane of ['a', 'b', 'c']) q.addLane(lane);
  for (let i = 0; i < 3; i++) for (const lane of ['a', 'b', 'c']) q.push(lane, i);
  t.same(g.order, ['a0', 'b0'], 'two start at once');
  let idle = false;
  const waiting = q.idle().then(() => {
    idle = true;
  });
  while (g.order.length < 9) await g.step();
  t.notOk(idle, 'not idle while items run');
  await g.step();
  await g.step();
  await waiting;
  t.equal(most, 2, 'never more than two in flight');
  t.same(g.order, ['a0', 'b0', 'c0', 'a1', 'b1', 'c1', 'a2', 'b2', 'c2']);
  t.match(q.stats('a'), { done: 3, dropped: 0, queued: 0 });
  t.throws(() => new InferenceScheduler({ depth: 1, concurrency: 0, run: g.run }), /concurrency/);
});

t.test('removeLane: its queued items go to onDrop, it settles once its running item has, other lanes go on', async (t) => {
  const g = gated();
  const dropped: string[] = [];
  const q = new InferenceScheduler<number>({ depth: 3, run: g.run, onDrop: (lane, item) => dropped.push(`${lane}${item}`) });
  for (let i = 0; i < 3; i++) {
    q.push('a', i);
    q.push('b', i);
  }
  t.same(g.order, ['a0'], 'a0 runs (concurrency 1)');
  let removed = false;
  const removal = q.removeLane('a').then(() => {
    removed = true;
  });
  await new Promise((r) => setImmediate(r));
  t.same(dropped, ['a1', 'a2'], "a's waiting items were handed to onDrop");
  t.notOk(removed, 'not settled while a0 still runs');
  await g.step();
  await removal;
  t.ok(removed, 'settled once a0 finished');
  t.same(q.stats('a'), { queued: 0, pushed: 0, dropped: 0, done: 0, failed: 0, waitMs: 0, runMs: 0 }, 'the lane and its stats are gone');
  while (g.order.length < 4) await g.step();
  t.same(g.order, ['a0', 'b0', 'b1', 'b2'], 'lane b ran all of its items');
  q.push('a', 9);
  await g.step();
  await g.step();
  t.same(g.order.at(-1), 'a9', 'a push to the removed id starts a new lane');
  await q.close();
});
