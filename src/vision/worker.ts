/** Entry of the detector's worker thread (started by `openDetector`). */
import { parentPort, workerData } from 'node:worker_threads';
import { serveDetector, type WorkerInit } from './worker-protocol.js';

if (!parentPort) throw new Error('src/vision/worker.ts runs as a worker thread started by openDetector');
await serveDetector(parentPort, workerData as WorkerInit);
