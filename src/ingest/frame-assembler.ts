/**
 * Raw frames out of ffmpeg's stdout: bytes are read into reusable frame buffers (straight from the pipe where
 * Node allows it, copied from 'data' chunks where not), and each completed frame waits in a small slot list
 * until the event loop is free to deliver it, a newer one replacing the oldest when the consumer falls behind.
 * No process handling here: FrameSource owns ffmpeg and decides which run's bytes count.
 */
import { Socket, type SocketConstructorOpts } from 'node:net';
import type { Readable } from 'node:stream';
import type { Frame } from '../common/frame.js';

/**
 * Frame buffers kept for reuse per camera. Allocating one per frame (1.3 MB at 768×576) made V8 run a full
 * mark-compact several times a second for the external memory alone
 * (docs/decisions/0023-reused-frame-buffers-shared-inputs.md). The list only ever holds buffers that were in use
 * at once a moment before (a frame being read, two waiting, the queue's and the detector's), so it costs memory
 * only where a camera's frames pile up: at 79 fps offered to one camera, with the shared input slots, 2 idle
 * buffers still left 30 full collections, 3 left 36, 4 left 16 and 6 left 6; at 2 fps it never holds more than 2–3.
 */
const FRAME_POOL = 6;

/**
 * Frames that completed within one turn of the event loop and are all delivered. Two, not one: ffmpeg sometimes
 * writes two frames back to back (catching up after network jitter), and with one slot the first was dropped
 * even at 2 fps (0–2 per camera a minute with 16 cameras, docs/decisions/0014-one-shared-inference-queue.md).
 * More than two only happens when the loop itself is behind, and then the newest are the ones worth detecting.
 */
const PENDING_FRAMES = 2;

export interface FrameLayout {
  width: number;
  height: number;
  pixelFormat: 'rgb24' | 'yuv420p';
  /** Bytes of one frame in this layout. */
  frameBytes: number;
}

export class FrameAssembler {
  private assembling: Buffer;
  /** Frame buffers given back by consumers (`recycle`), reused before allocating: see FRAME_POOL. */
  private readonly free: Buffer[] = [];
  private filled = 0;
  /** Completed frames not yet delivered, oldest first (at most PENDING_FRAMES). */
  private pending: Frame[] = [];
  private deliverScheduled: NodeJS.Immediate | undefined;
  private droppedFrames = 0;

  /** `deliver` gets the frames completed since the last turn of the event loop, oldest first. */
  constructor(
    private readonly layout: FrameLayout,
    private readonly deliver: (frames: Frame[]) => void,
  ) {
    this.assembling = Buffer.allocUnsafe(layout.frameBytes);
  }

  /** Frames replaced by a newer one before they were delivered. */
  get dropped(): number {
    return this.droppedFrames;
  }

  /** Where the next pipe read goes: the rest of the frame being assembled. */
  target(): Buffer {
    return this.assembling.subarray(this.filled);
  }

  /** `n` more bytes were read into `target()`; returns whether that completed the frame. */
  filledBy(n: number): boolean {
    this.filled += n;
    if (this.filled < this.layout.frameBytes) return false;
    this.offer(this.assembling);
    this.assembling = this.free.pop() ?? Buffer.allocUnsafe(this.layout.frameBytes);
    this.filled = 0;
    return true;
  }

  /** Copies stdout bytes into whole frames (when ffmpeg's pipe could not be read in place); returns whether at least one frame completed. */
  assemble(chunk: Buffer): boolean {
    let completed = false;
    let offset = 0;
    while (offset < chunk.length) {
      const n = Math.min(chunk.length - offset, this.layout.frameBytes - this.filled);
      chunk.copy(this.assembling, this.filled, offset, offset + n);
      offset += n;
      if (this.filledBy(n)) completed = true;
    }
    return completed;
  }

  /** A new ffmpeg run starts with a new frame: the bytes of a partial one from the last run are dropped. */
  restart(): void {
    this.filled = 0;
  }

  /** Forgets frames not yet delivered. */
  clear(): void {
    clearImmediate(this.deliverScheduled);
    this.deliverScheduled = undefined;
    this.pending = [];
  }

  /** See FrameSource.recycle. */
  recycle(data: Uint8Array): void {
    if (!(data instanceof Buffer) || data.length !== this.layout.frameBytes || this.free.length >= FRAME_POOL) return;
    // Given back twice would hand one buffer to two frames.
    if (data === this.assembling || this.free.includes(data)) return;
    this.free.push(data);
  }

  private offer(data: Buffer): void {
    if (this.pending.length >= PENDING_FRAMES) {
      this.droppedFrames++;
      this.recycle(this.pending.shift()!.data);
    }
    const ts = Date.now();
    const { width, height } = this.layout;
    this.pending.push(this.layout.pixelFormat === 'yuv420p' ? { width, height, data, ts, format: 'yuv420p' } : { width, height, data, ts });
    // Delivered after the current burst of pipe reads: when the loop is behind, only the newest frames go out.
    this.deliverScheduled ??= setImmediate(() => {
      this.deliverScheduled = undefined;
      const frames = this.pending;
      this.pending = [];
      this.deliver(frames);
    });
  }
}

/** What net.Socket's `onread` takes: the buffer the next read fills, and how many bytes it put there. */
export interface InPlaceRead {
  buffer: () => Uint8Array;
  callback: (bytes: number) => void;
}

/**
 * ffmpeg's stdout re-wrapped as a socket whose reads land straight in the frame being assembled (net.Socket's
 * `onread`), or undefined when this Node's child stdout has no pipe handle to re-wrap (the caller then copies
 * 'data' chunks). The stream path allocated a 64 KiB buffer per read and copied it into the frame: at 80 frames/s
 * of 768×576 that was 100 MB/s of short-lived buffers, and V8's helper threads spent about 22 % of a core on them
 * against about 14 % with this (docs/decisions/0022-ffmpeg-output-read-in-place.md). child_process creates the pipe
 * before we can pass `onread`, hence the hand-over of its handle, which Node keeps as `_handle`.
 */
export function readStraightIntoFrames(stdout: Readable, onread: InPlaceRead): Socket | undefined {
  const owner = stdout as unknown as { _handle?: { useUserBuffer?: unknown } | null };
  const handle = owner._handle;
  if (!handle || typeof handle.useUserBuffer !== 'function') return undefined;
  owner._handle = null;
  stdout.destroy();
  return new Socket({ handle, readable: true, writable: false, onread } as SocketConstructorOpts);
}
