/**
 * The layers of src/ and the check that imports only run downwards: a module may import from its own folder or
 * from a folder of a lower layer, never from a higher or equal one, and no set of files imports itself round
 * (README "Layout", docs/decisions/0036). `node dist/scripts/layers.js` (after `npm run build`) prints the problems;
 * test/layers.test.ts fails on any.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Layer of each folder of src/, lowest first. Files directly in src/ (log, native, version) are leaves of layer 0.
 * A new capability goes in a folder of its own above the agent core, as a component (src/components/).
 */
export const LAYERS: Record<string, number> = {
  common: 0,
  config: 1,
  onvif: 2,
  ingest: 2,
  outbox: 2,
  evidence: 2,
  vision: 3,
  uplink: 3,
  tasks: 1,
  rules: 4,
  model: 4,
  health: 5,
  agent: 6,
  ptz: 7,
  components: 8,
  cli: 9,
};

export interface ImportEdge {
  from: string;
  to: string;
}

export interface LayerProblem {
  kind: 'unknown-folder' | 'back-edge' | 'cycle';
  message: string;
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\b[^'"`;]*?from\s*'(\.[^']+)'|import\(\s*'(\.[^']+)'\s*\)|(?:^|\n)\s*import\s*'(\.[^']+)'/g;

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return walk(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

/** Every relative import between the .ts files under `srcDir`, as paths relative to it with a .ts ending. */
export function importEdges(srcDir: string): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const file of walk(srcDir)) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2] ?? m[3]!;
      const target = resolve(dirname(file), spec).replace(/\.js$/, '.ts');
      edges.push({ from: relative(srcDir, file).split(sep).join('/'), to: relative(srcDir, target).split(sep).join('/') });
    }
  }
  return edges;
}

/** The layer of a file path relative to src/ (undefined: a folder the table does not name). */
export function layerOf(path: string): number | undefined {
  const parts = path.split('/');
  return parts.length === 1 ? 0 : LAYERS[parts[0]!];
}

/** Imports from a folder to a folder of the same or a higher layer, folders the table lacks, and import cycles. */
export function layerProblems(edges: ImportEdge[]): LayerProblem[] {
  const problems: LayerProblem[] = [];
  const folder = (p: string): string => (p.includes('/') ? p.split('/')[0]! : '.');
  for (const e of edges) {
    const a = layerOf(e.from);
    const b = layerOf(e.to);
    if (a === undefined || b === undefined) {
      const f = a === undefined ? e.from : e.to;
      problems.push({ kind: 'unknown-folder', message: `${f}: folder src/${folder(f)} has no layer in scripts/layers.ts LAYERS` });
      continue;
    }
    if (folder(e.from) !== folder(e.to) && b >= a && !(b === 0 && a === 0)) {
      problems.push({
        kind: 'back-edge',
        message: `${e.from} (layer ${a}) imports ${e.to} (layer ${b}): move the shared part down or the importer up`,
      });
    }
  }
  for (const cycle of cycles(edges)) problems.push({ kind: 'cycle', message: `import cycle: ${[...cycle, cycle[0]].join(' -> ')}` });
  return problems;
}

/** The strongly connected sets of more than one file (Tarjan), each as a list of files. */
function cycles(edges: ImportEdge[]): string[][] {
  const next = new Map<string, string[]>();
  for (const e of edges) {
    if (!next.has(e.from)) next.set(e.from, []);
    if (!next.has(e.to)) next.set(e.to, []);
    next.get(e.from)!.push(e.to);
  }
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const out: string[][] = [];
  let i = 0;
  const visit = (v: string): void => {
    index.set(v, i);
    low.set(v, i);
    i++;
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v)!) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const set: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        set.push(w);
      } while (w !== v);
      if (set.length > 1 || next.get(v)!.includes(v)) out.push(set.sort());
    }
  };
  for (const v of [...next.keys()].sort()) if (!index.has(v)) visit(v);
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const src = join(dirname(fileURLToPath(import.meta.url)), '..', 'src');
  const problems = layerProblems(importEdges(src));
  for (const p of problems) console.log(`${p.kind}: ${p.message}`);
  console.log(problems.length === 0 ? 'layers: no back-edge, no cycle' : `layers: ${problems.length} problem(s)`);
  process.exitCode = problems.length === 0 ? 0 : 1;
}
