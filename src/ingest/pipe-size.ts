import { readFileSync } from 'node:fs';
import { loadAddon } from '../native.js';

/** native/pipe_size.c */
interface PipeSizeAddon {
  /** fcntl(fd, F_SETPIPE_SZ, bytes): the size afterwards, or -errno. */
  setPipeSize(fd: number, bytes: number): number;
}

/** What sizing a frame pipe did: its size afterwards, or why it kept the kernel's 64 KiB. */
export type PipeSizing = { ok: true; bytes: number; capped: boolean } | { ok: false; reason: string };

const PAGE = 4096;
const DEFAULT_PIPE_BYTES = 65536;

/** The pipe size the kernel gives for a request: a power of two pages, at least 64 KiB. */
export function pipeSizeFor(frameBytes: number): number {
  let size = DEFAULT_PIPE_BYTES;
  while (size < frameBytes) size *= 2;
  return size;
}

/** /proc/sys/fs/pipe-max-size: what a process without CAP_SYS_RESOURCE may ask for; 1 MiB by default. */
function pipeMaxSize(): number {
  try {
    const n = Number(readFileSync('/proc/sys/fs/pipe-max-size', 'utf8').trim());
    return Number.isInteger(n) && n >= PAGE ? n : 1 << 20;
  } catch {
    return 1 << 20;
  }
}

/**
 * Makes the pipe on `fd` (the read end of ffmpeg's stdout) hold a whole frame, so ffmpeg writes a frame in one go
 * and the agent reads it with one wake-up instead of ~21 at 64 KiB (docs/decisions.md, "Frames through a pipe the
 * size of a frame"). Without CAP_SYS_RESOURCE the kernel allows at most pipe-max-size; the pipe then gets that
 * (`capped`). Without the addon (EDGEPATROL_PIPE_SIZE=off, or not built) the pipe keeps 64 KiB. Never throws.
 */
export function sizeFramePipe(fd: number, frameBytes: number): PipeSizing {
  const native = loadAddon<PipeSizeAddon>('pipe_size', 'EDGEPATROL_PIPE_SIZE');
  if (!native.ok) return { ok: false, reason: native.reason };
  const wanted = pipeSizeFor(frameBytes);
  let got = native.addon.setPipeSize(fd, wanted);
  let capped = false;
  if (got === -1 /* EPERM */) {
    const max = pipeMaxSize();
    if (max < wanted) {
      capped = true;
      got = native.addon.setPipeSize(fd, max);
    }
  }
  if (got < 0) return { ok: false, reason: `fcntl(F_SETPIPE_SZ, ${wanted}) failed with errno ${-got}` };
  return { ok: true, bytes: got, capped };
}
