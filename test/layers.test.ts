import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { importEdges, layerProblems } from '../scripts/layers.js';

const src = join(dirname(fileURLToPath(import.meta.url)), '..', 'src');

t.test('src/ imports only run downwards and never round', async (t) => {
  const edges = importEdges(src);
  t.ok(edges.length > 200, `the import graph was read (${edges.length} imports)`);
  const problems = layerProblems(edges);
  t.same(
    problems.map((p) => p.message),
    [],
    'no back-edge, no cycle, no folder without a layer',
  );
});

t.test('the check finds back-edges, cycles and unknown folders', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'layers-'));
  const put = (path: string, text: string): void => {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  };
  put('common/a.ts', "import { b } from '../vision/b.js';\nexport const a = 1;\n");
  put('vision/b.ts', "export { c } from './c.js';\nexport const b = 2;\n");
  put('vision/c.ts', "import type { b } from './b.js';\nexport const c = 3;\n");
  put('rules/d.ts', "import { a } from '../common/a.js';\nconst e = await import('../thing/e.js');\n");
  put('thing/e.ts', 'export const e = 5;\n');
  const messages = layerProblems(importEdges(dir)).map((p) => `${p.kind}: ${p.message}`);
  t.match(messages, [/back-edge: common\/a\.ts \(layer 0\) imports vision\/b\.ts \(layer 3\)/], 'a lower layer importing a higher one');
  t.ok(
    messages.some((m) => /cycle: vision\/b\.ts -> vision\/c\.ts -> vision\/b\.ts/.test(m)),
    'a cycle inside one folder',
  );
  t.ok(
    messages.some((m) => /unknown-folder: thing\/e\.ts: folder src\/thing has no layer/.test(m)),
    'a folder without a layer (dynamic import)',
  );
  t.notOk(
    messages.some((m) => m.includes('rules/d.ts (layer 4) imports common')),
    'a higher layer importing a lower one is fine',
  );
});
