import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project root: the nearest folder above this module holding edgepatrol's package.json (works from src/ and dist/src/). */
function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate) && (JSON.parse(readFileSync(candidate, 'utf8')) as { name?: string }).name === 'edgepatrol') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`edgepatrol: cannot find the project root (package.json) above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

export const projectRoot: string = findRoot();
export const version: string = (JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { version: string }).version;
