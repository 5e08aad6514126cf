import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where a camera's frames come from: a network stream, or a local file (demos, tests, replays). */
export type Input = { kind: 'rtsp'; url: string } | { kind: 'file'; path: string };

/** Classifies a configured camera URL; throws for a scheme ffmpeg is not run with here. */
export function parseInput(cameraId: string, url: string): Input {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) return { kind: 'file', path: resolve(url) };
  if (scheme === 'rtsp' || scheme === 'rtsps') return { kind: 'rtsp', url };
  if (scheme === 'file') return { kind: 'file', path: fileURLToPath(url) };
  throw new Error(`camera ${cameraId}: unsupported stream URL scheme '${scheme}://' (use rtsp://, rtsps:// or a local file path)`);
}

export interface OutputFormat {
  fps: number;
  width: number;
  height: number;
  /**
   * yuv420p (default): the decoder's own layout, limited range, half the bytes of rgb24, no per-frame colour
   * conversion in ffmpeg; frames are converted only where RGB is needed (src/vision/yuv.ts).
   */
  pixelFormat?: 'rgb24' | 'yuv420p';
}

/**
 * Socket I/O timeout for RTSP, µs. Without one, ffmpeg hangs forever on a frozen server and ignores SIGTERM;
 * 5 s leaves room for slow cellular backhaul. The supervisor's own last-frame watchdog remains the
 * authority on stalls (ffmpeg takes ≈4× this to give up on a frozen stream).
 */
const rtspTimeoutUs = 5_000_000;

/**
 * The filter that passes at most `fps` frames a second and never repeats one: a frame is kept when its time,
 * counted in slots of 1/fps s and rounded to the nearest, lands in a later slot than the last kept frame's.
 * ffmpeg's `fps` filter picks the same frames when the camera is faster than `fps`, but fills the slots of a
 * slower camera with copies of the previous frame, and the detector then ran again on the same picture (a 10 fps
 * camera detected at 30 fps: two calls in three wasted, docs/decisions/0025-select-filter-instead-of-fps.md).
 * Rounding rather than flooring keeps every frame of a camera at exactly `fps` whose timestamps jitter around the
 * slot edges. A frame without a timestamp passes. It runs before `scale`, so frames it drops are never scaled or
 * converted.
 */
export function rateFilter(fps: number): string {
  return `select='isnan(t)+isnan(prev_selected_t)+gt(round(t*${fps}),round(prev_selected_t*${fps}))'`;
}

/**
 * The resize to the detect size. For YUV, zimg's (zscale): it also brings a full-range camera (yuvj420p, most
 * MJPEG and some H.264 cameras) to limited range, which ffmpeg 5.1's swscale leaves as it is between YUV formats
 * (measured: Y 0–252 stayed 0–252 with out_range=tv), and it took 0.38 CPU s where swscale took 0.66 to scale
 * 200 frames of 1280×720 to 640×360 (docs/decisions/0029-frames-stay-yuv.md). It needs even sizes (the config
 * checks). For RGB, swscale converts by the frame's own range.
 */
export function scaleFilter(out: Pick<OutputFormat, 'width' | 'height' | 'pixelFormat'>): string {
  return (out.pixelFormat ?? 'yuv420p') === 'yuv420p'
    ? `zscale=w=${out.width}:h=${out.height}:range=limited`
    : `scale=${out.width}:${out.height}`;
}

/**
 * The ffmpeg argument vector (never passed through a shell) that writes raw frames to stdout: YUV 4:2:0 in
 * limited range (a full-range camera, yuvj420p, is converted to it) or RGB24.
 */
export function ffmpegArgs(input: Input, out: OutputFormat, loop: boolean): string[] {
  const inputArgs =
    input.kind === 'rtsp'
      ? // Low probe settings: first frame in 0.5–1.5 s instead of 3.6–5.4 s (measured, shared/notes/infra-facts.md).
        ['-rtsp_transport', 'tcp', '-timeout', String(rtspTimeoutUs), '-analyzeduration', '500000', '-probesize', '100000', '-i', input.url]
      : // -re paces a file like a camera; the file: prefix keeps a path with a colon from being read as a protocol.
        ['-re', ...(loop ? ['-stream_loop', '-1'] : []), '-i', `file:${input.path}`];
  return [
    '-hide_banner',
    '-nostats',
    '-loglevel',
    'error',
    // ffmpeg would otherwise read keyboard commands from stdin; the supervisor controls it with signals only.
    '-nostdin',
    // One decoding thread: the cameras' ffmpegs already run side by side on the cores, and frame threads cost
    // 28 % more CPU (0.77 s against 0.60 s) and 5 MB more RSS per camera on a 640×360 stream
    // (docs/decisions/0025-select-filter-instead-of-fps.md).
    '-threads',
    '1',
    ...inputArgs,
    '-an',
    '-sn',
    '-dn',
    '-vf',
    `${rateFilter(out.fps)},${scaleFilter(out)}`,
    // Frames pass as the filter leaves them: for rawvideo ffmpeg would otherwise default to a constant rate and
    // copy frames into the gaps the filter leaves.
    '-fps_mode',
    'passthrough',
    '-pix_fmt',
    out.pixelFormat ?? 'yuv420p',
    '-f',
    'rawvideo',
    'pipe:1',
  ];
}

/** Replaces user:password@ in every URL of a text: ffmpeg repeats the input URL verbatim in its errors. */
export function scrubCredentials(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/gi, '$1***@');
}

/** Keeps the last few KiB of ffmpeg's stderr: enough for the final error lines, bounded whatever ffmpeg prints. */
export class StderrTail {
  private text = '';

  constructor(private readonly maxChars = 4096) {}

  push(chunk: Buffer): void {
    this.text = (this.text + chunk.toString('utf8')).slice(-this.maxChars);
  }

  /**
   * The last error line, fit for a state reason: credentials scrubbed, "[rtsp @ 0x…]" prefixes and the
   * leading "<input>: " removed, e.g. "Connection refused", "Server returned 404 Not Found".
   */
  reason(input: Input): string | undefined {
    const lines = this.text
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l !== '');
    const last = lines[lines.length - 1];
    if (last === undefined) return undefined;
    const inputName = input.kind === 'rtsp' ? input.url : `file:${input.path}`;
    let line = last.replace(/^(\[[^\]]* @ 0x[0-9a-f]+\]\s*)+/i, '');
    if (line.startsWith(`${inputName}: `)) line = line.slice(inputName.length + 2);
    return scrubCredentials(line);
  }
}
