import { pino, type Logger } from 'pino';

/** Paths pino censors wherever they appear in a log object: credentials never reach a log line. */
export const redactPaths = [
  'password',
  '*.password',
  '*.*.password',
  'username',
  '*.username',
  'key',
  '*.key',
  'tls.key',
  '*.tls.key',
  'url',
  '*.url',
  'source.url',
  '*.source.url',
  'authorization',
  '*.authorization',
];

export function createLogger(opts: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const options = {
    name: opts.name ?? 'edgepatrol',
    level: opts.level ?? process.env.EDGEPATROL_LOG_LEVEL ?? 'info',
    redact: { paths: redactPaths, censor: '[redacted]' },
    base: { pid: process.pid },
  };
  // Redaction by path misses credentials inside strings (a message, an error text, ffmpeg's stderr quoting the
  // camera URL): every line is scrubbed once more on its way out.
  const out = opts.destination ?? pino.destination(2);
  return pino(options, { write: (line: string) => out.write(scrubSecrets(line)) });
}

/**
 * Removes credentials from any text: user:password@ of every URL (kept as ***@), and the values of query
 * parameters that carry secrets (password, token, key, secret, signature, ...). Used on every log line.
 */
export function scrubSecrets(text: string): string {
  return text
    .replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s"'<>]*@/gi, '$1***@')
    .replace(
      /([?&;](?:password|passwd|pwd|pass|token|access_token|auth|authorization|key|apikey|api_key|secret|signature|sig|credential|credentials)=)[^&;#\s"'<>]*/gi,
      '$1***',
    );
}

/**
 * A URL fit to show a person or log: user:password@ and secret query parameters (?token=, &password=, …) are
 * replaced by ***, as scrubSecrets does to every log line.
 */
export function safeUrl(url: string): string {
  return scrubSecrets(url);
}
