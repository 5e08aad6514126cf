import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** Writes `text` to a new file `path` (mode 0600: a config may hold secrets) and fsyncs it. */
function writeNew(path: string, text: string | Buffer): void {
  const fd = openSync(path, 'wx', 0o600);
  try {
    writeFileSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Not there (already renamed or removed).
  }
}

/** A rename is durable once its folder is synced; a folder that cannot be opened (some file systems) is left. */
function syncFolder(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Best effort.
  }
}

/**
 * A new text for a config file, written beside it (same folder, so relative paths in it mean the same; mode 0600;
 * fsynced) but not in its place yet: it is checked as the file would be, then committed or discarded. Commit keeps
 * the file it replaces as `<file>.previous` and renames the new text over the file, so a crash at any point leaves
 * either the old file or the new one, whole.
 */
export class StagedConfig {
  private done = false;

  private constructor(
    /** The config file it will replace. */
    readonly file: string,
    /** Where the new text waits. */
    readonly path: string,
  ) {}

  static write(file: string, text: string): StagedConfig {
    const path = join(dirname(file), `.${basename(file)}.${randomBytes(4).toString('hex')}.new`);
    try {
      writeNew(path, text);
    } catch (err) {
      removeQuietly(path);
      throw new Error(`cannot write ${path} beside the config file: ${(err as Error).message}`, { cause: err });
    }
    return new StagedConfig(file, path);
  }

  /** Removes the staged texts and copies of `file` an agent that stopped mid-task left behind (they may hold secrets). */
  static removeLeftovers(file: string): void {
    const base = basename(file);
    let names: string[];
    try {
      names = readdirSync(dirname(file));
    } catch {
      return;
    }
    const staged = new RegExp(`^${escapeRegExp(`.${base}.`)}[0-9a-f]{8}\\.new$|^${escapeRegExp(`${base}.previous.`)}[0-9a-f]{8}\\.tmp$`);
    for (const name of names) if (staged.test(name)) removeQuietly(join(dirname(file), name));
  }

  /** Keeps the current file as `<file>.previous` (0600), then puts the new text in its place. */
  commit(): void {
    if (this.done) throw new Error(`${this.path} was already committed or discarded`);
    const previous = `${this.file}.previous`;
    let old: Buffer | undefined;
    try {
      old = readFileSync(this.file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot read ${this.file}: ${(err as Error).message}`);
    }
    if (old !== undefined) {
      const tmp = `${previous}.${randomBytes(4).toString('hex')}.tmp`;
      try {
        writeNew(tmp, old);
        renameSync(tmp, previous);
      } catch (err) {
        removeQuietly(tmp);
        throw new Error(`cannot keep the previous config as ${previous}: ${(err as Error).message}`, { cause: err });
      }
    }
    try {
      renameSync(this.path, this.file);
    } catch (err) {
      throw new Error(`cannot move the new config into ${this.file}: ${(err as Error).message}`, { cause: err });
    }
    this.done = true;
    syncFolder(dirname(this.file));
  }

  discard(): void {
    if (this.done) return;
    this.done = true;
    removeQuietly(this.path);
  }
}
