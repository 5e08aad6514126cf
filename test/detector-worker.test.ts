// The detector's worker thread with the real model on real frames: same detections as the same-thread path,
// results in call order, the main event loop free during inference; a worker that crashes, exits or hangs
// rejects its frames with a reason, is reported and replaced; close() ends the thread and onnxruntime's threads.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { openDetector } from '../src/vision/detector.js';
import { openInlineDetector, type DetectTiming } from '../src/vision/inference.js';
import { defaultModelsDir } from '../src/vision/index.js';
import { readVideoFrames, type VideoFrame } from '../src/vision/video.js';
import { join } from 'node:path';

const clip = join(defaultModelsDir(), '..', 'assets', 'vtest.avi');
const frames: VideoFrame[] = [];
for await (const f of readVideoFrames(clip, { fps: 0.25, maxFrames: 6 })) frames.push(f);
const misbehaving = new URL('./fixtures/misbehaving-detector-worker.ts', import.meta.url);
const threadCount = (): number => Number(/Threads:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);

t.test('same detections as on the main thread, in call order, with the event loop turning meanwhile', async (t) => {
  const inline = await openInlineDetector({ threads: 1 });
  const expected = [];
  for (const f of frames) expected.push(await inline.detect(f));
  await inline.close();
  t.ok(expected.flat().filter((d) => d.class === 'person').length >= 6, 'the frames have people in them');

  const d = await openDetector({ threads: 1 });
  t.equal(d.model.name, 'nanodet-m-int8', 'the default model, named by the worker');
  const timings = frames.map((): DetectTiming => ({ preprocessMs: 0, inferenceMs: 0, postMs: 0 }));
  // All frames sent at once: the worker takes them one by one; meanwhile this thread counts its own turns.
  let settled = false;
  const all = Promise.all(frames.map((f, i) => d.detect(f, timings[i]))).finally(() => {
    settled = true;
  });
  let turns = 0;
  while (!settled) {
    await new Promise((r) => setImmediate(r));
    turns++;
  }
  const got = await all;
  t.same(got, expected, "identical detections, each frame's result in its place");
  t.ok(
    timings.every((x) => x.inferenceMs > 0 && x.preprocessMs > 0),
    'each frame timed where it ran',
  );
  // On the same thread, an inference blocks the loop: at most one turn per frame. Here each ≥ 10 ms inference
  // leaves time for many.
  t.ok(turns > frames.length * 10, `the event loop turned ${turns} times during ${frames.length} detections`);
  await d.close();
  await t.rejects(d.detect(frames[0]!), /closed/, 'a closed detector refuses frames');
});

t.test('a frame the worker cannot use is refused with the reason; the worker carries on', async (t) => {
  const d = await openDetector({ threads: 1 });
  t.teardown(() => d.close());
  const f = frames[0]!;
  await t.rejects(d.detect({ ...f, data: f.data.subarray(0, 100) }), { name: 'RangeError', message: /needs \d+ bytes of RGB24, got 100/ });
  t.ok((await d.detect(f)).length > 0, 'the next frame is detected');
});

t.test('model errors come back from the worker as ModelError naming the manifest', async (t) => {
  await t.rejects(openDetector({ model: 'no-such-model' }), {
    name: 'ModelError',
    message: /unknown model 'no-such-model' in .*manifest\.json/,
  });
});

for (const mode of ['crash', 'exit', 'hang'] as const) {
  t.test(`a worker that goes wrong (${mode}) fails its frame, is reported and replaced`, async (t) => {
    process.env.EDGEPATROL_TEST_WORKER = mode;
    t.teardown(() => {
      delete process.env.EDGEPATROL_TEST_WORKER;
    });
    const exits: Error[] = [];
    const d = await openDetector({ threads: 1, workerUrl: misbehaving, timeoutMs: 3000, onWorkerExit: (err) => exits.push(err) });
    const f = frames[1]!;
    const first = await d.detect(f);
    t.ok(first.length > 0, 'the first frame is detected');
    const reason = { crash: /crashed: simulated crash/, exit: /exited with code 3/, hang: /answered no frame for 3 s/ }[mode];
    await t.rejects(d.detect(f), { message: reason }, 'the second frame fails with the reason');
    t.equal(exits.length, 1, 'reported once');
    t.match(exits[0]?.message ?? '', reason);
    t.same(await d.detect(f), first, 'the next frame starts a new worker and is detected');
    await d.close();
  });
}

t.test('close() ends the worker thread and its onnxruntime threads', async (t) => {
  // A first cycle brings up the process-wide pools (libuv, V8 platform) that stay afterwards.
  await (await openDetector({ threads: 2 })).close();
  const before = threadCount();
  for (let i = 0; i < 3; i++) {
    const d = await openDetector({ threads: 2 });
    await d.detect(frames[0]!);
    t.ok(threadCount() > before, 'the worker and its onnxruntime threads are running');
    await d.close();
  }
  t.equal(threadCount(), before, `back to ${before} threads after three open/close cycles`);
});
