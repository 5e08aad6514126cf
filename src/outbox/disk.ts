/**
 * A full disk (ENOSPC from SQLite or from writing an evidence file): evidence images are deleted to get space
 * back, those of delivered rows first, then undelivered ones from low priority, oldest first, each counted as a
 * disk_full drop. Events themselves are kept: they are small, and they are what the outbox is for.
 */
import { sqliteCode } from './errors.js';
import type { Victim } from './statements.js';
import type { RowStore } from './store.js';

/** Deletes evidence files to free at least `bytes` on the disk; see Outbox.freeDiskSpace. */
export function freeDiskSpace(store: RowStore, bytes: number): { files: number; bytes: number } {
  const { st } = store;
  let files = 0;
  let freed = 0;
  // Files go first: with the disk full, SQLite may not be able to write until some space is back.
  for (const v of st.spaceVictims.all() as (Victim & { delivered: number })[]) {
    if (freed >= bytes) break;
    if (v.evidencePath) store.unlink(v.evidencePath);
    freed += v.evidenceBytes;
    files++;
    try {
      store.transaction(() => {
        st.dropEvidence.run(v.seq);
        if (!v.delivered) st.countDrop.run('evidence', 'disk_full', v.priority, 1, v.evidenceBytes);
      });
    } catch (err) {
      // Still no room to record it: the uplink will find the file gone and count it as missing.
      if (sqliteCode(err) !== 'SQLITE_FULL') throw err;
    }
  }
  return { files, bytes: freed };
}
