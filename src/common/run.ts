import { spawn } from 'node:child_process';

/** How a command ended and what it printed (stderr is empty when it went to the terminal). */
export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `cmd` with `args` (no shell: nothing in them is ever interpreted) and collects its output. Settles when it
 * exits, whatever its status: the caller says what a failure means. Rejects only when it cannot start, with
 * `startHint` (what to install) after the reason.
 */
export function runCommand(
  cmd: string,
  args: readonly string[],
  opts: { cwd?: string; inheritStderr?: boolean; startHint?: string } = {},
): Promise<CommandResult> {
  return new Promise((settle, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', opts.inheritStderr ? 'inherit' : 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.on('error', (err) => reject(new Error(`cannot start ${cmd}: ${err.message}${opts.startHint ? `; ${opts.startHint}` : ''}`)));
    child.on('close', (code, signal) => settle({ code, signal, stdout, stderr }));
  });
}

/** The last `lines` lines of a command's stderr, for an error message. */
export function stderrTail(result: CommandResult, lines: number): string {
  return result.stderr.trim().split('\n').slice(-lines).join('\n');
}
