/** Where a command writes; the CLI passes the process streams, tests pass collectors. */
export interface CommandIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

/**
 * Exit codes of the commands. `failed` shares 1 with `usage`: scripts tell them apart by stderr, and every
 * command's --help has documented 1 as "bad usage or a failure" since the first release.
 */
export const EXIT = { ok: 0, usage: 1, failed: 1, config: 2, model: 3 } as const;

/**
 * What every `--json` prints: one document on one line of stdout, so `| jq` and `JSON.parse` read it whole
 * and streams (detect on a video, rules test, tail) are JSON lines of the same form.
 */
export function writeJson(io: CommandIo, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value)}\n`);
}
