// diffConfig: which cameras a reload restarts, adds, removes, and which sections need a restart.
import t from 'tap';
import { diffConfig, reloadSummary } from '../src/agent/reload.js';
import { parseConfig } from '../src/config/index.js';

const base = (cameras: string, extra = ''): string => `
gateway: { id: gw-1, dataDir: /tmp/x }
mqtt: { url: mqtt://127.0.0.1, prefix: ept }
${extra}
cameras:
${cameras}`;
const cam = (id: string, fps = 2, polygon = '[[0, 0], [1, 0], [1, 1]]') => `  - id: ${id}
    source: { file: a.avi }
    detect: { fps: ${fps} }
    zones:
      - id: z
        polygon: ${polygon}
        rules: [{ kind: presence, type: t, classes: [person] }]
`;

t.test('cameras by id: unchanged, changed (any setting), added, removed; other sections', async (t) => {
  const running = parseConfig(base(cam('a') + cam('b') + cam('c')), '/tmp/gw.yaml');
  const next = parseConfig(base(cam('a') + cam('b', 5) + cam('d'), 'health: { intervalSeconds: 10 }'), '/tmp/gw.yaml');
  const d = diffConfig(running, next);
  t.same(d.unchanged, ['a']);
  t.same(
    d.changed.map((c) => c.id),
    ['b'],
  );
  t.same(
    d.added.map((c) => c.id),
    ['d'],
  );
  t.same(d.removed, ['c']);
  t.same(d.needsRestart, ['health']);

  const zoneOnly = parseConfig(base(cam('a') + cam('b') + cam('c', 2, '[[0, 0], [0.5, 0], [1, 1]]')), '/tmp/gw.yaml');
  const z = diffConfig(running, zoneOnly);
  t.same(
    z.changed.map((c) => c.id),
    ['c'],
    'a zone polygon counts as a change',
  );
  t.same(z.needsRestart, []);
  t.same(
    diffConfig(running, parseConfig(base(cam('a') + cam('b') + cam('c')), '/tmp/gw.yaml')).unchanged,
    ['a', 'b', 'c'],
    'the same file: nothing',
  );
});

t.test('reloadSummary says what happened, and why a refusal', async (t) => {
  const common = { at: '2026-01-01T00:00:00.000Z', added: [], removed: [], unchanged: ['a'], durationMs: 1 };
  t.equal(
    reloadSummary({ ...common, result: 'applied', restarted: ['b'], needsRestart: ['mqtt'] }),
    'config reloaded: restarted b, 1 unchanged; mqtt changed too, which apply only at start: restart the agent for them',
  );
  t.equal(
    reloadSummary({ ...common, result: 'refused', error: 'gw.yaml: bad', restarted: [], needsRestart: [] }),
    'config reload refused, the running config stays: gw.yaml: bad',
  );
});
