/**
 * How the outbox reports failure (OutboxError, with a code for the failures a caller handles), and how its parts
 * read SQLite's error code and an error's text from whatever was thrown.
 */
import Database from 'better-sqlite3';

/** An outbox that cannot be opened or used; `file` names the SQLite file so a technician can find it. */
export class OutboxError extends Error {
  override name = 'OutboxError';
  constructor(
    message: string,
    readonly file: string,
    options?: { cause?: unknown; code?: 'duplicate' | 'full' | 'corrupt' },
  ) {
    super(message, options);
    this.code = options?.code;
  }
  readonly code: 'duplicate' | 'full' | 'corrupt' | undefined;
}

export function sqliteCode(err: unknown): string | undefined {
  return err instanceof Database.SqliteError ? err.code : undefined;
}

export function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
