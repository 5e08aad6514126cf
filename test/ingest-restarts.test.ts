// 100 forced restarts of a supervised ffmpeg (crash-like SIGKILLs and stop/start cycles) leave no ffmpeg behind;
// grabFrame takes one main-stream frame for evidence and fails with a reason naming the camera.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import t from 'tap';
import { FrameSource, grabFrame } from '../src/ingest/index.js';
import { createLogger } from '../src/log.js';
import { defaultClip, startRtspServer } from './helpers/rtsp.js';

const log = createLogger({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Gone from /proc, or a zombie nobody waits for: either way not a running ffmpeg. */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
}

async function until(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  for (const end = Date.now() + timeoutMs; !cond(); await sleep(20))
    if (Date.now() > end) throw new Error(`${what} not within ${timeoutMs} ms`);
}

t.test('100 forced restarts leave no ffmpeg process behind', async (t) => {
  const src = new FrameSource({
    cameraId: 'restarts',
    url: defaultClip,
    loop: true,
    fps: 5,
    width: 160,
    height: 120,
    log,
    backoff: { initialMs: 20, maxMs: 40 },
  });
  t.teardown(() => src.stop());
  const pids = new Set<number>();
  src.start();
  for (let i = 0; i < 100; i++) {
    await until(`run ${i} streams`, () => src.currentState === 'streaming' && src.pid !== undefined, 20_000);
    const pid = src.pid!;
    pids.add(pid);
    if (i % 2 === 0) {
      process.kill(pid, 'SIGKILL'); // a crash: the supervisor restarts it
      await until(`ffmpeg ${pid} replaced`, () => src.pid !== pid, 10_000);
    } else {
      await src.stop(); // an operator's restart
      src.start();
    }
  }
  await src.stop();
  t.equal(pids.size, 100, '100 distinct ffmpeg processes were started');
  t.same([...pids].filter(running), [], 'none of them is still running');
  t.equal(src.stats().spawns, 100, 'one spawn per run');
});

t.test("grabFrame: one frame at the stream's own size; a refused or wrong stream names the camera and the cause", async (t) => {
  const server = await startRtspServer({ mounts: ['main'] });
  t.teardown(() => server.stop());
  const frame = await grabFrame({ cameraId: 'cam-9', url: server.url('main') });
  t.same([frame.width, frame.height, frame.data.length], [768, 576, 768 * 576 * 3], 'native size of the clip');
  t.ok(
    frame.data.some((v) => v > 0),
    'an image, not zeros',
  );
  await t.rejects(grabFrame({ cameraId: 'cam-9', url: server.url('nope') }), /camera cam-9: .*404 Not Found/);
  const port = await new Promise<number>((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
  const refused = await grabFrame({ cameraId: 'cam-9', url: `rtsp://u:secret@127.0.0.1:${port}/x` }).then(
    () => null,
    (err: Error) => err.message,
  );
  t.match(refused, /camera cam-9: .*Connection refused/);
  t.notMatch(refused, /secret/, 'no credentials in the message');
});
