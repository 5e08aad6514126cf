import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rulesCommand } from '../src/cli/rules.js';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));

interface HandCount {
  line: [[number, number], [number, number]];
  crossings: { time: number; direction: 'forward' | 'backward'; who: string }[];
}

/** How far apart in time a detected crossing and a hand-counted one may be and still be the same person's. */
const MATCH_SECONDS = 1;

t.test('vtest.avi: crossings of a line across the walkway, per direction, equal the hand count', async (t) => {
  // The hand count and how it was made: test/fixtures/vtest-linecross.json and test/README.md.
  const hand = JSON.parse(readFileSync(join(root, 'test/fixtures/vtest-linecross.json'), 'utf8')) as HandCount;
  const dir = t.testdir({});
  const file = join(dir, 'gateway.yaml');
  // 5 fps: a walker's feet move about 1 % of the frame between samples, so no crossing falls between two of them,
  // and the replay stays near 20 s on 2 cores.
  writeFileSync(
    file,
    `
gateway: { id: gw }
mqtt: { url: mqtt://127.0.0.1 }
cameras:
  - id: walkway
    source: { file: ${join(root, 'assets/vtest.avi')} }
    detect: { fps: 5 }
    zones:
      - id: whole-view
        polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]
        rules:
          - { id: walkers, kind: line_cross, type: walkway_crossing, classes: [person], direction: both, line: ${JSON.stringify(hand.line)} }
`,
  );
  const out: string[] = [];
  const err: string[] = [];
  const code = await rulesCommand(['test', 'walkway', '--config', file, '--video', join(root, 'assets/vtest.avi'), '--json'], {
    stdout: { write: (s: string) => out.push(s) },
    stderr: { write: (s: string) => err.push(s) },
  });
  t.equal(code, 0, err.join(''));
  const events = out
    .join('')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { time: number; state: string; counts: { forward: number; backward: number } });
  t.ok(
    events.every((e) => e.state === 'instant'),
    'every crossing is one instant message',
  );

  const expected = {
    forward: hand.crossings.filter((c) => c.direction === 'forward').length,
    backward: hand.crossings.filter((c) => c.direction === 'backward').length,
  };
  t.same(
    events.at(-1)?.counts,
    expected,
    `counts at the end of the clip equal the hand count (${expected.forward} forward, ${expected.backward} backward)`,
  );

  // Each message's counts grew by one in one direction: that is the direction of its crossing.
  const detected = events.map((e, i) => {
    const before = events[i - 1]?.counts ?? { forward: 0, backward: 0 };
    return { time: e.time, direction: e.counts.forward > before.forward ? 'forward' : 'backward' };
  });
  const unmatched = [...detected];
  for (const c of hand.crossings) {
    const i = unmatched.findIndex((d) => d.direction === c.direction && Math.abs(d.time - c.time) <= MATCH_SECONDS);
    t.ok(i >= 0, `${c.time} s ${c.direction}: ${c.who}`);
    if (i >= 0) unmatched.splice(i, 1);
  }
  t.same(unmatched, [], 'no crossing that the hand count does not have');
});
