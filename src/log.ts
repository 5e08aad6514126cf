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
  return opts.destination ? pino(options, opts.destination) : pino(options, pino.destination(2));
}

/** Strips user:password@ from a URL so it can be shown to a person or logged. */
export function safeUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/i, '$1***@');
}
