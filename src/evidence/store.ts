import { createHash } from 'node:crypto';
import {
  mkdirSync,
  openSync,
  writeSync,
  fsyncSync,
  closeSync,
  renameSync,
  readdirSync,
  statSync,
  unlinkSync,
  rmdirSync,
  rmSync,
} from 'node:fs';
import { dirname, join } from 'node:path';

export interface StoredEvidence {
  /** Path relative to the data folder, as published in the event. */
  file: string;
  sha256: string;
  bytes: number;
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The evidence folder's day folders are named by UTC date, so name order is age order. */
const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** Where the evidence image `name` of a frame taken at `ts` lives, relative to the data folder (by UTC day). */
export function evidencePath(name: string, ts: number): string {
  return join('evidence', new Date(ts).toISOString().slice(0, 10), `${name}.jpg`);
}

/**
 * Writes an evidence JPEG as `{dataDir}/evidence/{YYYY-MM-DD}/{name}.jpg` and makes it durable (file and folder
 * fsynced, written via a temp name and renamed) before the event that points to it is committed.
 */
export function storeEvidence(dataDir: string, name: string, ts: number, jpeg: Buffer): StoredEvidence {
  const rel = evidencePath(name, ts);
  const final = join(dataDir, rel);
  const dir = dirname(final);
  mkdirSync(dir, { recursive: true });
  const tmp = `${final}.part`;
  const fd = openSync(tmp, 'w', 0o640);
  try {
    try {
      let off = 0;
      while (off < jpeg.length) off += writeSync(fd, jpeg, off, jpeg.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    // A write cut short (ENOSPC) must not leave a partial file taking the space that is short.
    rmSync(tmp, { force: true });
    throw err;
  }
  renameSync(tmp, final);
  fsyncDir(dir);
  return { file: rel, sha256: createHash('sha256').update(jpeg).digest('hex'), bytes: jpeg.length };
}

export interface RetentionOptions {
  maxBytes: number;
  maxAgeDays: number;
  now: number;
  /** Files (relative to the data folder) that must stay: the evidence of events not yet delivered. */
  keep?: (file: string) => boolean;
}

/**
 * Deletes evidence older than `maxAgeDays`, then the oldest files until the rest fit in `maxBytes`; never a file
 * `keep` claims. Returns what it deleted. Leftover `.part` files (a crash mid-write) go with their day.
 */
export function pruneEvidence(dataDir: string, opts: RetentionOptions): { files: number; bytes: number; keptBytes: number } {
  const root = join(dataDir, 'evidence');
  let days: string[];
  try {
    days = readdirSync(root)
      .filter((d) => DAY.test(d))
      .sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { files: 0, bytes: 0, keptBytes: 0 };
    throw err;
  }
  const files: { rel: string; bytes: number; mtime: number }[] = [];
  for (const day of days) {
    const names = readdirSync(join(root, day)).sort();
    for (const name of names) {
      const rel = join('evidence', day, name);
      const st = statSync(join(dataDir, rel));
      files.push({ rel, bytes: st.size, mtime: st.mtimeMs });
    }
  }
  files.sort((a, b) => a.mtime - b.mtime);
  let total = files.reduce((s, f) => s + f.bytes, 0);
  const cutoff = opts.now - opts.maxAgeDays * 86_400_000;
  const removed = { files: 0, bytes: 0 };
  for (const f of files) {
    if (f.mtime >= cutoff && total <= opts.maxBytes) break;
    if (opts.keep?.(f.rel) && !f.rel.endsWith('.part')) continue;
    unlinkSync(join(dataDir, f.rel));
    total -= f.bytes;
    removed.files++;
    removed.bytes += f.bytes;
  }
  for (const day of days) {
    try {
      rmdirSync(join(root, day));
    } catch {
      /* not empty: still holds evidence */
    }
  }
  return { ...removed, keptBytes: total };
}
