import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { backoffDelay } from '../src/common/backoff.js';
import { ffmpegArgs, parseInput, rateFilter, StderrTail } from '../src/ingest/ffmpeg.js';
import { FrameSource, type FrameSourceOptions, type SourceState, type StreamState } from '../src/ingest/index.js';
import { createLogger } from '../src/log.js';
import type { Frame } from '../src/vision/types.js';
import { toRgb } from '../src/vision/yuv.js';
import { defaultClip, startRtspServer } from './helpers/rtsp.js';

const here = dirname(fileURLToPath(import.meta.url));
const log = createLogger({ level: 'silent' });
const W = 160;
const H = 120;
/** A W×H frame in YUV 4:2:0, the frame sources' default layout: Y, then U and V at half size each way. */
const YUV_BYTES = W * H + 2 * (W / 2) * (H / 2);

const work = mkdtempSync(join(tmpdir(), 'edgepatrol-ingest-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

/** 2 s of the real clip, so that a loop is reached within a test. */
const shortClip = join(work, 'short.avi');
const cut = spawnSync(
  'ffmpeg',
  ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y', '-i', defaultClip, '-t', '2', '-c', 'copy', shortClip],
  { encoding: 'utf8' },
);
if (cut.status !== 0) throw new Error(`cutting the test clip failed: ${cut.stderr}`);

/** A FrameSource that records its states and frames and is stopped when the test ends. */
function source(tt: Test, opts: Partial<FrameSourceOptions> & { url: string }) {
  const src = new FrameSource({ cameraId: 'cam-test', fps: 5, width: W, height: H, log, ...opts });
  const states: SourceState[] = [];
  const frames: Frame[] = [];
  src.on('state', (s) => states.push(s));
  src.on('frame', (f) => frames.push(f));
  tt.teardown(() => src.stop());
  return { src, states, frames };
}

/** Resolves with the next state change to one of `wanted`. */
function nextState(src: FrameSource, wanted: StreamState[], timeoutMs: number): Promise<SourceState> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      src.off('state', onState);
      reject(new Error(`no ${wanted.join('|')} state within ${timeoutMs} ms (now ${src.currentState})`));
    }, timeoutMs);
    const onState = (s: SourceState): void => {
      if (!wanted.includes(s.state)) return;
      clearTimeout(timer);
      src.off('state', onState);
      resolve(s);
    };
    src.on('state', onState);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether a pid has exited: gone from /proc, or a zombie (an orphan waiting for its new parent to reap it). */
function exited(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

async function waitExited(pid: number, timeoutMs: number): Promise<boolean> {
  for (const end = Date.now() + timeoutMs; Date.now() < end; await sleep(50)) {
    if (exited(pid)) return true;
  }
  return exited(pid);
}

async function freePort(): Promise<number> {
  const srv = createServer().listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const addr = srv.address();
  srv.close();
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return addr.port;
}

t.test('pure parts: input kinds, arguments, reasons, backoff', async (tt) => {
  const rtsp = parseInput('c', 'rtsp://admin:pa:ss@10.0.0.5:554/Streaming/101');
  tt.same(parseInput('c', 'clips/a b.avi'), { kind: 'file', path: join(process.cwd(), 'clips/a b.avi') });
  tt.throws(() => parseInput('gate-3', 'http://x/y.mjpg'), /gate-3.*http:\/\//);
  const args = ffmpegArgs(rtsp, { fps: 5, width: 640, height: 480 }, true);
  tt.same(
    args.slice(args.indexOf('-vf')),
    [
      '-vf',
      `${rateFilter(5)},zscale=w=640:h=480:range=limited`,
      '-fps_mode',
      'passthrough',
      '-pix_fmt',
      'yuv420p',
      '-f',
      'rawvideo',
      'pipe:1',
    ],
    'YUV 4:2:0 in limited range by default',
  );
  const rgb = ffmpegArgs(rtsp, { fps: 5, width: 640, height: 480, pixelFormat: 'rgb24' }, true);
  tt.same(rgb.slice(rgb.indexOf('-vf')), [
    '-vf',
    `${rateFilter(5)},scale=640:480`,
    '-fps_mode',
    'passthrough',
    '-pix_fmt',
    'rgb24',
    '-f',
    'rawvideo',
    'pipe:1',
  ]);
  tt.notOk(args.includes('-stream_loop'), 'loop applies to files only');
  tt.same(args.slice(args.indexOf('-threads'), args.indexOf('-threads') + 2), ['-threads', '1'], 'one decoding thread per camera');
  tt.ok(args.indexOf('-threads') < args.indexOf('-i'), 'given as an input (decoder) option');
  tt.throws(
    () => new FrameSource({ cameraId: 'gate-3', url: 'rtsp://h/s', fps: 5, width: 641, height: 480, log }),
    /camera gate-3: detect size 641x480 must be even both ways/,
  );
  tt.same(ffmpegArgs({ kind: 'file', path: '/v/a:b.avi' }, { fps: 5, width: 640, height: 480 }, true).slice(7, 12), [
    '-re',
    '-stream_loop',
    '-1',
    '-i',
    'file:/v/a:b.avi',
  ]);

  const tail = new StderrTail(200);
  tail.push(Buffer.from(`${'x'.repeat(500)}\n[rtsp @ 0x55ecca7bc980] method DESCRIBE failed: 401 Unauthorized\n`));
  tail.push(Buffer.from('rtsp://admin:pa:ss@10.0.0.5:554/Streaming/101: Server returned 401 Unauthorized (authorization failed)\n'));
  tt.equal(tail.reason(rtsp), 'Server returned 401 Unauthorized (authorization failed)');
  const other = new StderrTail();
  other.push(Buffer.from('[tcp @ 0x1] Connection to tcp://u:secret@10.0.0.9:554?timeout=5000000 failed: Connection refused\n'));
  tt.equal(other.reason(rtsp), 'Connection to tcp://***@10.0.0.9:554?timeout=5000000 failed: Connection refused');
  tt.equal(new StderrTail().reason(rtsp), undefined);

  const b = { initialMs: 1000, maxMs: 30_000 };
  tt.same(
    [0, 1, 2, 5, 40].map((n) => backoffDelay(n, b, () => 0)),
    [500, 1000, 2000, 15_000, 15_000],
  );
  tt.same(
    [0, 1, 2, 5, 40].map((n) => backoffDelay(n, b, () => 1)),
    [1000, 2000, 4000, 30_000, 30_000],
  );
});

t.test('file source: exact frames at about the configured rate, looping past the end of the clip', async (tt) => {
  const { src, frames } = source(tt, { url: shortClip, loop: true });
  src.start();
  await nextState(src, ['streaming'], 20_000);
  await sleep(5000);
  const got = frames.slice();
  tt.ok(got.length > 0);
  tt.ok(
    got.every((f) => f.width === W && f.height === H && f.format === 'yuv420p' && f.data.length === YUV_BYTES),
    'every frame is W×H in YUV 4:2:0',
  );
  const span = (got[got.length - 1]!.ts - got[0]!.ts) / 1000;
  tt.ok(span > 4, `frames keep coming past the 2 s clip (span ${span} s)`);
  const rate = (got.length - 1) / span;
  tt.ok(rate > 3.5 && rate < 6.5, `about 5 fps (got ${rate.toFixed(2)})`);
  tt.equal(src.stats().spawns, 1, "the loop is ffmpeg's, not a restart");
  const pid = src.pid!;
  await src.stop();
  tt.ok(exited(pid), 'stop() leaves no ffmpeg');
  tt.equal(src.pid, undefined);
});

/** Frames of a file camera until it ends. */
async function allFrames(tt: Test, opts: Partial<FrameSourceOptions> & { url: string }): Promise<Frame[]> {
  const { src, frames } = source(tt, opts);
  src.start();
  const s = await nextState(src, ['ended', 'failed', 'backoff'], 20_000);
  tt.equal(s.state, 'ended', `${opts.url} played to its end`);
  return frames;
}

t.test('frame layouts: YUV 4:2:0 in limited range from any camera, RGB24 when asked', async (tt) => {
  // One still picture for 2 s, so each frame of a source is the frame ffmpeg converts alone below. MJPEG is
  // full range (yuvj420p), as many IP cameras send it: the source hands it over in limited range.
  const still = join(work, 'still-full-range.mkv');
  const enc = spawnSync(
    'ffmpeg',
    [
      '-hide_banner',
      '-loglevel',
      'error',
      '-nostdin',
      '-y',
      '-ss',
      '5',
      '-i',
      defaultClip,
      '-vf',
      'trim=end_frame=1,loop=loop=19:size=1:start=0,setpts=N/10/TB',
      '-c:v',
      'mjpeg',
      '-pix_fmt',
      'yuvj420p',
      '-q:v',
      '2',
      still,
    ],
    { encoding: 'utf8' },
  );
  tt.equal(enc.status, 0, enc.stderr);
  const rgb = spawnSync('ffmpeg', [
    '-hide_banner',
    '-loglevel',
    'error',
    '-nostdin',
    '-i',
    still,
    '-frames:v',
    '1',
    '-vf',
    `scale=${W}:${H}`,
    '-pix_fmt',
    'rgb24',
    '-f',
    'rawvideo',
    'pipe:1',
  ]).stdout;
  tt.equal(rgb.length, W * H * 3);
  const yuvFrames = await allFrames(tt, { url: still, fps: 10 });
  tt.ok(yuvFrames.length >= 15, `frames of the still clip (${yuvFrames.length})`);
  const frame = yuvFrames[0]!;
  tt.equal(frame.format, 'yuv420p');
  tt.equal(frame.data.length, YUV_BYTES);
  let dark = 255;
  for (let i = 0; i < W * H; i++) dark = Math.min(dark, frame.data[i]!);
  tt.ok(dark >= 16, `luma stays in the limited range (darkest ${dark})`);
  let sum = 0;
  const back = toRgb(frame).data;
  for (let i = 0; i < back.length; i++) sum += Math.abs(back[i]! - rgb[i]!);
  tt.ok(
    sum / back.length < 3,
    `converted back to RGB it is ffmpeg's RGB of the same picture (mean difference ${(sum / back.length).toFixed(2)} levels)`,
  );
  const rgbFrames = await allFrames(tt, { url: still, fps: 10, pixelFormat: 'rgb24' });
  tt.ok(
    rgbFrames.length >= 15 && rgbFrames.every((f) => f.format === undefined && f.data.length === W * H * 3),
    'an rgb24 source gives W×H×3 RGB frames',
  );
  tt.ok(rgbFrames[0]!.data.equals(rgb), "the same bytes as ffmpeg's own RGB conversion");
});

t.test('a camera slower than the detect rate, or with jittering timestamps, gives each of its frames once', async (tt) => {
  const count = (file: string): number => {
    const r = spawnSync(
      'ffprobe',
      ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=nb_read_frames', '-of', 'csv=p=0', file],
      { encoding: 'utf8' },
    );
    return Number(r.stdout.trim());
  };
  const inClip = count(shortClip);
  tt.equal(inClip, 20, 'the 2 s clip has 20 frames at 10 fps');
  // ffmpeg's fps filter would repeat each frame to make 25 fps: 50 frames, 30 of them copies.
  const slow = await allFrames(tt, { url: shortClip, fps: 25 });
  tt.equal(slow.length, inClip, 'every frame once at fps 25');
  const repeats = slow.slice(1).filter((f, i) => f.data.equals(slow[i]!.data)).length;
  tt.equal(repeats, 0, 'no frame is a copy of the one before');

  // The same 10 fps with each timestamp moved by up to ±4 ms (a camera stamping frames by its clock), in a
  // container with millisecond timestamps: flooring to 100 ms slots would put some frames in their
  // predecessor's slot and drop them.
  const jittered = join(work, 'jittered.mkv');
  const enc = spawnSync(
    'ffmpeg',
    [
      '-hide_banner',
      '-loglevel',
      'error',
      '-nostdin',
      '-y',
      '-i',
      shortClip,
      '-vf',
      "settb=1/1000,setpts='(N/10+if(mod(N,2),-1,1)*0.004)/TB'",
      '-fps_mode',
      'passthrough',
      '-enc_time_base',
      '1:1000',
      '-c:v',
      'libx264',
      '-preset',
      'ultrafast',
      jittered,
    ],
    { encoding: 'utf8' },
  );
  tt.equal(enc.status, 0, enc.stderr);
  tt.equal(count(jittered), inClip);
  const pts = spawnSync('ffprobe', ['-v', 'error', '-show_entries', 'packet=pts_time', '-of', 'csv=p=0', jittered], {
    encoding: 'utf8',
  }).stdout;
  tt.same(pts.split('\n').slice(0, 3).map(Number), [0.004, 0.096, 0.204], 'the clip carries the jitter');
  const exact = await allFrames(tt, { url: jittered, fps: 10 });
  tt.equal(exact.length, inClip, 'every frame kept at fps 10');

  // Faster than the detect rate, frames are dropped to it: 2 s of 10 fps at 5 is 10 frames, or 11 when both
  // the first and the last frame start a slot.
  const halved = await allFrames(tt, { url: shortClip, fps: 5 });
  tt.ok(halved.length >= 10 && halved.length <= 11, `every other frame at fps 5 (${halved.length})`);
});

t.test('recycled frame buffers carry later frames; a buffer given back twice or of another size is refused', async (tt) => {
  const { src, frames } = source(tt, { url: shortClip, fps: 10 });
  src.start();
  const until = async (n: number) => {
    for (const end = Date.now() + 20_000; frames.length < n && Date.now() < end; ) await sleep(20);
  };
  await until(1);
  const first = frames[0]!.data as Buffer;
  const alien = Buffer.alloc(YUV_BYTES + 1);
  src.recycle(first);
  src.recycle(first);
  src.recycle(alien);
  await until(6);
  tt.ok(frames.length >= 6, `six frames arrived (${frames.length})`);
  const later = frames.slice(1).map((f) => f.data);
  const reused = later.filter((d) => d === first).length;
  tt.equal(reused, 1, 'the buffer given back (twice) came back in exactly one later frame');
  tt.notOk(later.includes(alien), 'a buffer of the wrong size is not used');
  tt.equal(new Set(later).size, later.length, 'no two frames share a buffer');
});

t.test('file source without loop ends', async (tt) => {
  const { src } = source(tt, { url: shortClip, fps: 10 });
  src.start();
  const s = await nextState(src, ['ended', 'failed', 'backoff'], 20_000);
  tt.equal(s.state, 'ended');
  tt.equal(src.stats().spawns, 1);
});

t.test('missing file: failed at once, naming camera and file; start() tries again', async (tt) => {
  const missing = join(work, 'no-such-clip.avi');
  const { src, states } = source(tt, { url: missing, cameraId: 'gate-3' });
  src.start();
  const s = await nextState(src, ['failed', 'connecting'], 5000);
  tt.equal(s.state, 'failed');
  tt.match(s.reason, /gate-3/);
  tt.match(s.reason, missing);
  await sleep(1500);
  tt.equal(states.length, 1, 'no restarts of its own');
  tt.equal(src.stats().spawns, 0, 'ffmpeg never started');
  src.start();
  tt.equal((await nextState(src, ['failed'], 5000)).state, 'failed');
});

t.test('a file ffmpeg cannot decode fails without restarting', async (tt) => {
  const { src } = source(tt, { url: join(here, 'ingest.test.ts') });
  src.start();
  const s = await nextState(src, ['failed', 'backoff'], 20_000);
  tt.equal(s.state, 'failed');
  tt.match(s.reason, /Invalid data/);
});

t.test('refused RTSP: backoff with the reason, retrying with growing delays', async (tt) => {
  const port = await freePort();
  const { src, states } = source(tt, { url: `rtsp://user:secret@127.0.0.1:${port}/cam1`, backoff: { initialMs: 200, maxMs: 1000 } });
  src.start();
  for (let i = 0; i < 3; i++) await nextState(src, ['backoff'], 20_000);
  const backoffs = states.filter((s) => s.state === 'backoff');
  tt.ok(
    backoffs.every((s) => /Connection refused/.test(s.reason ?? '')),
    "reason from ffmpeg's stderr",
  );
  // A status taken while a retry connects still says why the camera is not streaming.
  const retries = states.filter((s) => s.state === 'connecting').slice(1);
  tt.ok(retries.length >= 2, `${retries.length} retries seen connecting`);
  tt.ok(
    retries.every((s, i) => s.reason?.startsWith(`retry ${i + 1} after: `) && /Connection refused/.test(s.reason)),
    `each retry names the last failure: ${retries.map((s) => s.reason).join(' | ')}`,
  );
  tt.equal(states[0]?.state === 'connecting' ? states[0].reason : 'not first', undefined, 'the first connect has no failure to name');
  tt.ok(
    states.every((s) => !JSON.stringify(s).includes('secret')),
    'no credentials in states',
  );
  tt.ok(src.stats().spawns >= 3, 'retries');
  const delays = backoffs.map((s) => s.retryInMs!);
  tt.ok(delays[0]! >= 100 && delays[0]! <= 200 && delays[2]! >= 400 && delays[2]! <= 800, `delays double with jitter: ${delays}`);
});

t.test('RTSP from the GStreamer server: frames, server loss, stall, recovery', async (tt) => {
  const server = await startRtspServer({ mounts: ['cam1', 'cam2'] });
  tt.teardown(() => server.stop());
  const { src, frames, states } = source(tt, {
    url: server.url('cam1'),
    stallSeconds: 4,
    backoff: { initialMs: 300, maxMs: 1000 },
  });
  const other = source(tt, { url: server.url('cam2'), cameraId: 'cam-2' });
  src.start();
  other.src.start();
  await nextState(src, ['streaming'], 20_000);
  await nextState(other.src, ['streaming'], 20_000).catch(() => undefined);
  tt.equal(other.src.currentState, 'streaming', 'a second mount streams too');
  await sleep(2000);
  tt.ok(frames.length >= 5, `frames arrive (${frames.length})`);
  tt.ok(
    frames.every((f) => f.data.length === YUV_BYTES),
    'exact frame size',
  );

  await tt.test('server killed → leaves streaming, streams again after restart', async (st) => {
    await server.stop();
    const lost = await nextState(src, ['backoff', 'stalled'], 20_000);
    st.pass(`left streaming: ${lost.state} (${lost.reason})`);
    await sleep(1500);
    await server.restart();
    await nextState(src, ['streaming'], 30_000);
    const before = frames.length;
    await sleep(1500);
    st.ok(frames.length > before, 'frames again');
  });

  await tt.test('server frozen → stalled, ffmpeg killed, recovers when it thaws', async (st) => {
    const pid = src.pid!;
    process.kill(server.pid, 'SIGSTOP');
    try {
      const s = await nextState(src, ['stalled', 'backoff'], 20_000);
      st.equal(s.state, 'stalled');
      st.match(s.reason, /no frame for \d+ s/);
      st.ok(await waitExited(pid, 5000), 'the stalled ffmpeg is gone');
    } finally {
      process.kill(server.pid, 'SIGCONT');
    }
    await nextState(src, ['streaming'], 30_000);
    st.ok(
      states.some((s) => s.state === 'backoff' && s.reason?.startsWith('no frame')),
      'backoff keeps the stall reason',
    );
  });

  await tt.test('stop() leaves no ffmpeg process', async (st) => {
    const pid = src.pid!;
    await src.stop();
    st.ok(exited(pid));
  });
});

/** Starts the owner fixture, waits for its ffmpeg, SIGKILLs the owner; reports whether ffmpeg exited within 3 s. */
async function killOwner(tt: Test, url: string, freeze?: () => void): Promise<{ pid: number; gone: boolean }> {
  const owner = spawn(process.execPath, ['--import', '@tapjs/typescript/import', join(here, 'fixtures', 'frame-source-owner.ts'), url], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' },
  });
  tt.teardown(() => {
    owner.kill('SIGKILL');
  });
  let out = '';
  const pid = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('owner never streamed')), 30_000);
    owner.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /FFMPEG (\d+)/.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
  });
  tt.teardown(() => {
    if (!exited(pid)) process.kill(pid, 'SIGKILL');
  });
  freeze?.();
  owner.kill('SIGKILL');
  return { pid, gone: await waitExited(pid, 3000) };
}

t.test('ffmpeg dies when its owner is SIGKILLed', async (tt) => {
  const streaming = await killOwner(tt, shortClip);
  tt.ok(streaming.gone, `streaming ffmpeg ${streaming.pid} exits`);

  // A frozen server: ffmpeg writes nothing, so EPIPE cannot stop it; only the parent-death signal does.
  const server = await startRtspServer({ mounts: ['cam1'] });
  tt.teardown(() => server.stop());
  const frozen = await killOwner(tt, server.url('cam1'), () => process.kill(server.pid, 'SIGSTOP'));
  tt.ok(frozen.gone, `ffmpeg ${frozen.pid} blocked on a frozen server exits`);
});
