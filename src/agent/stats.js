import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
export const STATUS_FILE = 'status.json';
/** How often the agent rewrites {dataDir}/status.json (read by `edgepatrol status`); rates cover this interval. */
export const STATUS_INTERVAL_MS = 5000;
export function emptyCounters() {
    return { framesIn: 0, motionFrames: 0, queued: 0, detected: 0, skipped: 0, inferenceMs: 0, events: 0 };
}
const round = (x, digits) => Math.round(x * 10 ** digits) / 10 ** digits;
/** Rates of one camera between the last two samples of its counters. */
export class StatsWindow {
    prev = emptyCounters();
    prevAt;
    rates = { decodeFps: 0, detectFps: 0, skippedFps: 0, motionRatio: 0, inferenceMs: 0 };
    constructor(now) {
        this.prevAt = now;
    }
    /** Takes a sample; the rates then cover the time since the previous one. */
    sample(c, now) {
        const dt = (now - this.prevAt) / 1000;
        if (dt <= 0)
            return;
        const d = (k) => c[k] - this.prev[k];
        this.rates = {
            decodeFps: round(d('framesIn') / dt, 2),
            detectFps: round(d('detected') / dt, 2),
            skippedFps: round(d('skipped') / dt, 2),
            motionRatio: d('framesIn') > 0 ? round(d('motionFrames') / d('framesIn'), 3) : 0,
            inferenceMs: d('detected') > 0 ? round(d('inferenceMs') / d('detected'), 1) : 0,
        };
        this.prev = { ...c };
        this.prevAt = now;
    }
    get current() {
        return { ...this.rates };
    }
}
/** Writes the status file atomically (temporary file, then rename), so a reader never sees half of it. */
export function writeStatus(dataDir, status) {
    const file = join(dataDir, STATUS_FILE);
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(status, null, 2) + '\n', { mode: 0o640 });
    renameSync(tmp, file);
}
export function readStatus(dataDir) {
    return JSON.parse(readFileSync(join(dataDir, STATUS_FILE), 'utf8'));
}
