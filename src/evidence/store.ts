import { createHash } from 'node:crypto';
import { mkdirSync, openSync, writeSync, fsyncSync, closeSync, renameSync } from 'node:fs';
import { join } from 'node:path';

export interface StoredEvidence {
  /** Path relative to the data folder, as published in the event. */
  file: string;
  sha256: string;
  bytes: number;
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try { fsyncSync(fd); } finally { closeSync(fd); }
}

/**
 * Writes an evidence JPEG under `{dataDir}/evidence/{YYYY-MM-DD}/{eventId}.jpg` and makes it durable
 * (file and folder fsynced, written via a temp name and renamed) before the event that points to it is committed.
 */
export function storeEvidence(dataDir: string, eventId: string, ts: number, jpeg: Buffer): StoredEvidence {
  const day = new Date(ts).toISOString().slice(0, 10);
  const rel = join('evidence', day, `${eventId}.jpg`);
  const dir = join(dataDir, 'evidence', day);
  mkdirSync(dir, { recursive: true });
  const final = join(dataDir, rel);
  const tmp = `${final}.part`;
  const fd = openSync(tmp, 'w', 0o640);
  try {
    let off = 0;
    while (off < jpeg.length) off += writeSync(fd, jpeg, off, jpeg.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, final);
  fsyncDir(dir);
  return { file: rel, sha256: createHash('sha256').update(jpeg).digest('hex'), bytes: jpeg.length };
}
