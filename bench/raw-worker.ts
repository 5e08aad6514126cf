/** bench/raw.ts's worker thread: open the model, warm up for a second, then session.run back to back. */
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { openModelSession, Preprocessor } from '../src/vision/index.js';
import { readVideoFrames, type VideoFrame } from '../src/vision/video.js';
import { defaultClip } from '../test/helpers/rtsp.js';
import type { RawOptions } from './raw.js';

const { seconds, threads, fps, maxFrames } = workerData as Omit<RawOptions, 'onTiming'>;
const frames: VideoFrame[] = [];
for await (const f of readVideoFrames(defaultClip, { fps, maxFrames })) frames.push(f);
const { model, session, inputWidth, inputHeight } = await openModelSession({ threads });
const pre = new Preprocessor(inputWidth, inputHeight, model.spec.preprocess);
const feeds = frames.map((f) => ({ [model.spec.input.name]: new ort.Tensor('float32', pre.run(f).slice(), [...model.spec.input.shape]) }));
// The first inferences of a new session ran 10–25 % slower, which flattered the ratios.
for (const end = performance.now() + 1000; performance.now() < end;) await session.run(feeds[0]!);
parentPort!.postMessage('timing');
let n = 0;
const t0 = performance.now();
while (performance.now() - t0 < seconds * 1000) await session.run(feeds[n++ % feeds.length]!);
const rate = n / ((performance.now() - t0) / 1000);
await session.release();
parentPort!.postMessage({ rate, n });
