import { scrubSecrets } from '../log.js';

/** Keys whose string values are secrets wherever they sit in the config. */
const SECRET_KEY = /passw(or)?d$|secret|api_?key/i;
/** What redact() leaves of a secret: a secret-named value, a URL's user:password@, a secret query value. */
const MARKER = '***';
const REDACTED_URL = /:\/\/\*\*\*@|=\*\*\*(?:[&;#]|$)/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A copy of `value` safe to send (config/get): values of secret-named keys become "***", and every other string
 * loses the credentials and secret query values of the URLs in it (as log lines do). TLS key paths stay: a path is
 * not a key.
 */
export function redact(value: unknown, key = ''): unknown {
  if (typeof value === 'string') return SECRET_KEY.test(key) ? MARKER : scrubSecrets(value);
  if (Array.isArray(value)) return value.map((v) => redact(v));
  if (isRecord(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redact(v, k)]));
  return value;
}

/** The element of `running` a sent list item stands for: the one with its id (cameras, zones, presets), else the same index. */
function counterpart(item: unknown, running: unknown, index: number): unknown {
  if (!Array.isArray(running)) return undefined;
  if (isRecord(item) && typeof item.id === 'string') return running.find((r) => isRecord(r) && r.id === item.id);
  return running[index];
}

/**
 * `sent` with each string that is what redact() makes of the running config's value at the same place put back
 * to that value: a config read with config/get, edited and sent back keeps the secrets it was shown as ***. List
 * items are matched by their id where they have one, so a camera keeps its own password when others move.
 */
export function keepRedacted(sent: unknown, running: unknown, key = ''): unknown {
  if (typeof sent === 'string') {
    return typeof running === 'string' && running !== sent && redact(running, key) === sent ? running : sent;
  }
  if (Array.isArray(sent)) return sent.map((item, i) => keepRedacted(item, counterpart(item, running, i)));
  if (isRecord(sent)) {
    const old = isRecord(running) ? running : {};
    return Object.fromEntries(Object.entries(sent).map(([k, v]) => [k, keepRedacted(v, old[k], k)]));
  }
  return sent;
}

/** Config paths (`cameras[1].source.url`) whose value still holds a redaction marker: a secret nobody sent. */
export function redactedLeft(value: unknown, path = '', key = ''): string[] {
  if (typeof value === 'string') return (SECRET_KEY.test(key) && value === MARKER) || REDACTED_URL.test(value) ? [path] : [];
  if (Array.isArray(value)) return value.flatMap((v, i) => redactedLeft(v, `${path}[${i}]`));
  if (isRecord(value)) return Object.entries(value).flatMap(([k, v]) => redactedLeft(v, path ? `${path}.${k}` : k, k));
  return [];
}
