import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, formatConfigError } from '../config/index.js';
import { ModelError } from '../vision/index.js';

/** Where a command writes; the CLI passes the process streams, tests pass collectors. */
export interface CommandIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

/** A sub-command: takes its own arguments and where to write, returns the process exit code. */
export type Command = (argv: string[], io: CommandIo) => Promise<number>;

/**
 * Exit codes of the commands (docs/cli.md lists which command uses which). `failed` shares 1 with `usage`:
 * scripts tell them apart by stderr, and every command's --help has documented 1 as "bad usage or a failure"
 * since the first release.
 */
export const EXIT = {
  ok: 0,
  usage: 1,
  failed: 1,
  config: 2,
  model: 3,
  broker: 4,
  /** run: the clean stop did not finish within its deadline. */
  stopDeadline: 5,
  /** zones set: the zone is written, but no frame could be grabbed for its preview. */
  noPreview: 6,
  /** doctor: at least one check failed. */
  checkFailed: 7,
  /** camera add/test/presets/goto, discover: the camera refused the user name or password. */
  cameraAuth: 8,
  /** camera add/test/presets/goto, discover: the camera (or any camera) did not answer in time, or refused the connection. */
  cameraUnreachable: 9,
  /** task send, patrol run: the task ended rejected, failed, expired or canceled (the state is printed). */
  taskNotSucceeded: 10,
  /** task send, patrol run: no final state within --timeout. */
  taskTimeout: 11,
  /** run: a second SIGINT while stopping; patrol run: stopped watching (the shell's 128 + signal number). */
  sigint: 130,
  /** run: a second SIGTERM while stopping (128 + 15). */
  sigterm: 143,
} as const;

/**
 * What every `--json` prints: one document on one line of stdout, so `| jq` and `JSON.parse` read it whole
 * and streams (detect on a video, rules test, tail) are JSON lines of the same form.
 */
export function writeJson(io: CommandIo, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value)}\n`);
}

/** Where the installer puts the config (scripts/install.sh); the commands that edit or check it default to it. */
export const DEFAULT_CONFIG = '/etc/edgepatrol/gateway.yaml';

/** A mistake in the command line: reported with the command's usage, exit code `EXIT.usage`. */
export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * The arguments of a command, parsed the one way every command does: options as declared (unknown ones refused),
 * positionals allowed only when the command takes them. Every parse error is a UsageError.
 */
export function parseCommandArgs<const T extends Options>(argv: string[], options: T, opts: { positionals: boolean }) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(parseErrorMessage(err as Error & { code?: string }));
  }
  if (!opts.positionals && parsed.positionals.length) throw new UsageError(`unexpected argument '${parsed.positionals[0]}'`);
  return parsed;
}

function parseErrorMessage(err: Error & { code?: string }): string {
  // node's own text goes on about '--' positionals; a technician needs the option's name.
  const option = /'(?:-\w, )?(-{1,2}[^' ,]+)/.exec(err.message)?.[1];
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option) return `unknown option '${option}'`;
  if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && option && /argument missing/.test(err.message))
    return `${option} needs a value`;
  return err.message;
}

/**
 * Reports why a command failed, as every command does, and returns its exit code: a usage mistake as one line
 * followed by the usage, an invalid config as the config's error list, anything else as one line
 * "edgepatrol <command>: <what, naming the file or camera, and what to do>".
 * `modelExit` is for detect and model, whose --help has documented 1 for a missing or refused model.
 */
export function reportError(io: CommandIo, command: string, err: unknown, help: string, opts: { modelExit?: number } = {}): number {
  const who = command ? `edgepatrol ${command}` : 'edgepatrol';
  if (err instanceof UsageError) {
    io.stderr.write(`${who}: ${err.message}\n${help ? `\n${help}` : ''}`);
    return EXIT.usage;
  }
  if (err instanceof ConfigError) {
    io.stderr.write(`${formatConfigError(err)}\n`);
    return EXIT.config;
  }
  io.stderr.write(`${who}: ${oneLine(err instanceof Error ? err.message : String(err))}\n`);
  return err instanceof ModelError ? (opts.modelExit ?? EXIT.model) : EXIT.failed;
}

/** Messages from libraries sometimes span lines; the report is one line so logs and `2>&1 | tail -1` keep it whole. */
function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ').trim();
}
