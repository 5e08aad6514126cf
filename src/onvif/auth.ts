import { createHash, randomBytes } from 'node:crypto';
import { escapeXml } from './xml.js';

const WSSE = 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd';
const WSU = 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd';
const PASSWORD_DIGEST = 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest';
const BASE64 = 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary';

/** ISO time without milliseconds, as cameras print and expect it. */
export function isoSeconds(d: Date): string {
  return `${d.toISOString().slice(0, 19)}Z`;
}

/**
 * A WS-Security UsernameToken with PasswordDigest = Base64(SHA1(nonce + created + password)). `created` must be the
 * camera's time, not ours: a camera rejects a token created too far from its own clock.
 */
export function usernameToken(user: string, password: string, created: Date, nonce: Buffer = randomBytes(16)): string {
  const c = isoSeconds(created);
  const digest = createHash('sha1')
    .update(Buffer.concat([nonce, Buffer.from(c, 'utf8'), Buffer.from(password, 'utf8')]))
    .digest('base64');
  return (
    `<wsse:Security s:mustUnderstand="1" xmlns:wsse="${WSSE}" xmlns:wsu="${WSU}"><wsse:UsernameToken>` +
    `<wsse:Username>${escapeXml(user)}</wsse:Username><wsse:Password Type="${PASSWORD_DIGEST}">${digest}</wsse:Password>` +
    `<wsse:Nonce EncodingType="${BASE64}">${nonce.toString('base64')}</wsse:Nonce><wsu:Created>${c}</wsu:Created>` +
    '</wsse:UsernameToken></wsse:Security>'
  );
}

/** One challenge of a WWW-Authenticate header: its scheme and parameters (names lower-cased). */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parses WWW-Authenticate values (RFC 7235): several challenges may share one header, separated by commas, and
 * several headers may be present. Quoted strings may contain commas and escaped quotes.
 */
export function parseChallenges(values: readonly string[]): Challenge[] {
  const out: Challenge[] = [];
  for (const value of values) {
    let i = 0;
    let cur: Challenge | undefined;
    const s = value;
    const skip = (): void => {
      while (i < s.length && /[\s,]/.test(s[i]!)) i++;
    };
    while (i < s.length) {
      skip();
      const m = /^[!#$%&'*+.^_`|~\w-]+/.exec(s.slice(i));
      if (!m) break;
      const token = m[0];
      i += token.length;
      while (i < s.length && s[i] === ' ') i++;
      if (s[i] === '=' && cur) {
        i++;
        while (i < s.length && s[i] === ' ') i++;
        let v = '';
        if (s[i] === '"') {
          i++;
          while (i < s.length && s[i] !== '"') {
            if (s[i] === '\\' && i + 1 < s.length) i++;
            v += s[i];
            i++;
          }
          i++;
        } else {
          const vm = /^[^,\s]*/.exec(s.slice(i))!;
          v = vm[0];
          i += v.length;
        }
        cur.params[token.toLowerCase()] = v;
      } else if (s[i] === '=') {
        break; // a parameter before any scheme: not a header we can use
      } else {
        cur = { scheme: token.toLowerCase(), params: {} };
        out.push(cur);
      }
    }
  }
  return out;
}

const ALGORITHMS: Record<string, 'md5' | 'sha256'> = { md5: 'md5', 'md5-sess': 'md5', 'sha-256': 'sha256', 'sha-256-sess': 'sha256' };

/** The digest challenge we answer, strongest first: SHA-256 over MD5; undefined when none is usable. */
export function pickDigest(challenges: readonly Challenge[]): Challenge | undefined {
  const usable = challenges.filter(
    (c) => c.scheme === 'digest' && c.params.nonce !== undefined && ALGORITHMS[(c.params.algorithm ?? 'MD5').toLowerCase()] !== undefined,
  );
  return usable.find((c) => (c.params.algorithm ?? '').toLowerCase().startsWith('sha-256')) ?? usable[0];
}

/** HTTP Digest (RFC 7616) state for one camera: the current challenge and the nonce count that goes with it. */
export class DigestSession {
  private nc = 0;
  constructor(readonly challenge: Challenge) {}

  /** The Authorization header value for one request. */
  authorization(user: string, password: string, method: string, uri: string, cnonce: string = randomBytes(8).toString('hex')): string {
    const p = this.challenge.params;
    const algName = p.algorithm ?? 'MD5';
    const alg = ALGORITHMS[algName.toLowerCase()]!;
    const h = (s: string): string => createHash(alg).update(s, 'utf8').digest('hex');
    const qops = (p.qop ?? '').split(',').map((q) => q.trim().toLowerCase());
    const qop = qops.includes('auth') ? 'auth' : undefined;
    this.nc++;
    const nc = this.nc.toString(16).padStart(8, '0');
    let ha1 = h(`${user}:${p.realm ?? ''}:${password}`);
    if (algName.toLowerCase().endsWith('-sess')) ha1 = h(`${ha1}:${p.nonce}:${cnonce}`);
    const ha2 = h(`${method}:${uri}`);
    const response = qop ? h(`${ha1}:${p.nonce}:${nc}:${cnonce}:${qop}:${ha2}`) : h(`${ha1}:${p.nonce}:${ha2}`);
    const q = (v: string): string => `"${v.replace(/["\\]/g, '\\$&')}"`;
    const parts = [
      `username=${q(user)}`,
      `realm=${q(p.realm ?? '')}`,
      `nonce=${q(p.nonce!)}`,
      `uri=${q(uri)}`,
      `algorithm=${algName}`,
      `response=${q(response)}`,
    ];
    if (qop) parts.push(`qop=${qop}`, `nc=${nc}`, `cnonce=${q(cnonce)}`);
    if (p.opaque !== undefined) parts.push(`opaque=${q(p.opaque)}`);
    return `Digest ${parts.join(', ')}`;
  }
}
