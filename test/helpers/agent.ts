import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, chmodSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { stringify } from 'yaml';

export const root = resolve(import.meta.dirname, '..', '..');
export const cli = join(root, 'bin', 'edgepatrol.js');
export const clip = join(root, 'assets', 'vtest.avi');

if (!existsSync(join(root, 'dist', 'src', 'cli', 'main.js'))) {
  throw new Error('dist/ is missing: run `npm run build` (scripts/test.sh does) before these tests');
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `edgepatrol-${prefix}-`));
}

/** A camera on the real clip, looped, with a presence rule on people in the lower two thirds of the view. */
export function clipCamera(id: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    source: { file: clip, loop: true },
    detect: { fps: 2, width: 640, height: 480 },
    location: { lat: 22.5386, lon: 114.0286, address: 'test address', grid: 'FT-XMH-0101' },
    zones: [
      {
        id: 'walkway',
        polygon: [
          [0, 0.33],
          [1, 0.33],
          [1, 1],
          [0, 1],
        ],
        // vtest.avi always has people in view: one long presence event, with an update every 3 s.
        rules: [
          { kind: 'presence', type: 'person_presence', classes: ['person'], minScore: 0.45, cooldownSeconds: 2, updateMinutes: 0.05 },
        ],
      },
    ],
    ...extra,
  };
}

/** Writes a gateway config (mode 0600) and returns its path. */
export function writeConfig(dir: string, config: Record<string, unknown>): string {
  const file = join(dir, 'gateway.yaml');
  writeFileSync(file, stringify(config));
  chmodSync(file, 0o600);
  return file;
}

export function gatewayConfig(dir: string, mqttUrl: string, cameras: Record<string, unknown>[]): Record<string, unknown> {
  return {
    gateway: { id: 'gw-test-01', dataDir: join(dir, 'data'), timezone: 'Asia/Shanghai' },
    mqtt: { url: mqttUrl, prefix: 'ept' },
    model: { threads: 1, scoreThreshold: 0.4 },
    health: { intervalSeconds: 5 },
    cameras,
  };
}

export interface RunningAgent {
  proc: ChildProcess;
  /** Everything the agent wrote to stderr so far (its pino log and error messages). */
  stderr(): string;
  /** Everything it wrote to stdout so far. */
  stdout(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<void>;
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

/** Runs bin/edgepatrol.js with `args`; `env` adds to (or, with undefined values, removes from) this process's environment. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): RunningAgent {
  const proc = spawn(process.execPath, [cli, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  running.add(proc);
  let err = '';
  let out = '';
  const waiters = new Set<() => void>();
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    for (const w of waiters) w();
  });
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
    proc.on('exit', (code, signal) => {
      running.delete(proc);
      for (const w of waiters) w();
      res({ code, signal });
    });
  });
  return {
    proc,
    stderr: () => err,
    stdout: () => out,
    exited,
    waitForLog(pattern, timeoutMs = 60_000) {
      return new Promise((res, rej) => {
        const check = (): void => {
          if (pattern.test(err)) {
            done();
            res();
          } else if (proc.exitCode !== null || proc.signalCode !== null) {
            done();
            rej(new Error(`agent exited before logging ${pattern}; stderr:\n${err.slice(-3000)}\nstdout:\n${out.slice(-1000)}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          rej(new Error(`no log line ${pattern} within ${timeoutMs} ms; stderr:\n${err.slice(-3000)}`));
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** Reads the outbox rows of a data folder (read-only; the agent may be running: WAL allows it). */
export function outboxRows(
  dataDir: string,
): { seq: number; id: string; state: string; payload: string; evidence_path: string; evidence_sha256: string; camera_id: string }[] {
  const file = join(dataDir, 'outbox.db');
  if (!existsSync(file)) return [];
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    // The agent creates the file before its first migration commits: until then there is nothing to read.
    if (!db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'events'").get()) return [];
    return db.prepare('SELECT seq, id, state, payload, evidence_path, evidence_sha256, camera_id FROM events ORDER BY seq').all() as never;
  } finally {
    db.close();
  }
}

export async function until(what: string, cond: () => boolean, timeoutMs = 60_000, everyMs = 200): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Pids of this process's children named ffmpeg or setpriv (FrameSource and grabFrame spawn ffmpeg through setpriv). */
export function ffmpegChildren(): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && (comm === 'ffmpeg' || comm === 'setpriv')) pids.push(Number(name));
    } catch {
      /* exited meanwhile */
    }
  }
  return pids;
}
