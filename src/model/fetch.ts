import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { runCommand, stderrTail, type CommandResult } from '../common/run.js';

/** Runs a program with an argument vector (never through a shell); rejects naming `step` on failure. */
export async function run(step: string, cmd: string, args: string[], cwd?: string): Promise<string> {
  let r: CommandResult;
  try {
    r = await runCommand(cmd, args, cwd === undefined ? {} : { cwd });
  } catch (err) {
    throw new Error(`${step}: ${(err as Error).message}`);
  }
  if (r.code === 0) return r.stdout;
  const detail = stderrTail(r, 5);
  throw new Error(`${step}: ${cmd} ${args.join(' ')} failed (${r.signal ?? `exit ${r.code}`})${detail ? `:\n${detail}` : ''}`);
}

export async function hashFile(file: string, algorithm: 'sha256' | 'sha512', encoding: 'hex' | 'base64' = 'hex'): Promise<string> {
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest(encoding);
}

/** The Subresource-Integrity string npm records for a tarball ("sha512-<base64>"). */
export async function npmIntegrity(file: string): Promise<string> {
  return `sha512-${await hashFile(file, 'sha512', 'base64')}`;
}

/**
 * Downloads one package version's tarball with `npm pack` into `destDir`, and checks it against the
 * integrity pinned by the caller, so a republished or tampered tarball is refused.
 */
export async function npmPack(spec: string, destDir: string, integrity: string): Promise<string> {
  await mkdir(destDir, { recursive: true });
  const json = await run(`npm pack ${spec}`, 'npm', ['pack', spec, '--pack-destination', destDir, '--json', '--loglevel=error']);
  let filename: string;
  try {
    const info = JSON.parse(json) as { filename?: string }[];
    filename = basename(info[0]?.filename ?? '');
    if (!filename) throw new Error('no filename in its report');
  } catch (err) {
    throw new Error(`npm pack ${spec}: cannot understand its output: ${(err as Error).message}`);
  }
  const file = join(destDir, filename);
  const actual = await npmIntegrity(file);
  if (actual !== integrity) {
    throw new Error(
      `${file}: integrity mismatch for ${spec}: expected ${integrity}, got ${actual}; delete the file and retry, or check the registry`,
    );
  }
  return file;
}

/**
 * Extracts the named members of a .tgz into `destDir` (flattened to their base names). The files
 * appear together through a rename, so a reader sees all of them or none.
 */
export async function extractFromTarball(tgz: string, members: string[], destDir: string): Promise<void> {
  const parent = join(destDir, '..');
  await mkdir(parent, { recursive: true });
  const tmp = await mkdtemp(join(parent, `.${basename(destDir)}-`));
  try {
    const depth = (members[0] ?? '').split('/').length - 1;
    if (members.some((m) => m.split('/').length - 1 !== depth)) throw new Error(`extract from ${tgz}: members must share one folder depth`);
    await run(`extract ${members.join(', ')} from ${tgz}`, 'tar', [
      '-xzf',
      tgz,
      '-C',
      tmp,
      `--strip-components=${depth}`,
      '--',
      ...members,
    ]);
    await chmod(tmp, 0o755);
    await rm(destDir, { recursive: true, force: true });
    await rename(tmp, destDir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}
