/** bench/raw.ts's worker thread: `rawInferences` here, telling the parent when the timed loop starts. */
import { parentPort, workerData } from 'node:worker_threads';
import { rawInferences, type RawOptions } from './raw.js';

const opts = workerData as Omit<RawOptions, 'onTiming'>;
const { rate, n } = await rawInferences({ ...opts, onTiming: () => parentPort!.postMessage('timing') });
parentPort!.postMessage({ rate, n });
