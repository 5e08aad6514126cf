/**
 * A camera made of recorded-style answers (test/fixtures/onvif-answers/): a real HTTP server on loopback that
 * answers each ONVIF action with a fixture file, checks WS-Security tokens against its own (possibly wrong) clock
 * and runs an HTTP Digest handshake (RFC 7616) when told to. Not a simulator: it knows nothing of the actions beyond
 * which file to send. Tests and bench/onvif-clients.ts use it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root, whether this runs from test/helpers or from dist/test/helpers. */
const root = here.includes('/dist/') ? here.replace(/\/dist\/.*$/, '') : resolve(here, '../..');
export const ANSWERS_DIR = resolve(root, 'test/fixtures/onvif-answers');

export function fixture(name: string): string {
  return readFileSync(resolve(ANSWERS_DIR, name), 'utf8');
}

/** What the camera sends for one request: a body, or a raw behaviour. */
export type Reply =
  | string
  | { status?: number; body: string; headers?: Record<string, string> }
  | { hang: true }
  | { truncateAt: number; body: string }
  | { stream: Buffer | string; repeat: number };

export interface CameraBehaviour {
  user?: string;
  password?: string;
  /** What protected actions accept: WS-Security, HTTP Digest, either, or nothing (default 'wsse'). */
  auth?: 'wsse' | 'digest' | 'either' | 'none';
  /** Digest algorithms offered, strongest first (default ['MD5']). */
  digestAlgorithms?: ('MD5' | 'SHA-256')[];
  /** A nonce is answered stale=true after this many uses. */
  nonceUses?: number;
  /** The camera's clock (default: ours). */
  clock?: () => Date;
  /** Largest |Created − camera clock| accepted, in seconds (default 5). */
  maxSkewSeconds?: number;
  /** action → fixture file name, raw reply, or a function of the request path. Unlisted actions get ActionNotSupported. */
  answers: Record<string, Reply | ((ctx: { path: string; body: string }) => Reply)>;
  /** GetSystemDateAndTime needs authentication too (a few stacks do that). */
  protectClock?: boolean;
  /** Extra template values ({{NAME}} in fixtures). */
  values?: Record<string, string | number>;
}

export interface RequestRecord {
  action: string;
  path: string;
  auth: 'wsse' | 'digest' | 'none';
  /** For wsse: whether the token verified; for digest: whether the response verified. */
  verified: boolean;
  created?: string;
  nc?: string;
  /** Scheme of the Authorization header, if any ('Digest', 'Basic'). */
  scheme?: string;
  /** The request body as sent. */
  body: string;
}

export interface AnswerCamera {
  host: string;
  port: number;
  url: string;
  requests: RequestRecord[];
  behaviour: CameraBehaviour;
  stop(): Promise<void>;
}

const ACTION = /<(?:[\w.-]+:)?Body\b[^>]*>\s*<(?:[\w.-]+:)?([A-Za-z]+)/;
const UNPROTECTED = new Set(['GetSystemDateAndTime']);

/** A fixture's text with its {{NAME}} placeholders filled from the behaviour (clock, port, values). */
export function render(text: string, b: CameraBehaviour, port: number): string {
  const now = (b.clock ?? (() => new Date()))();
  const values: Record<string, string | number> = {
    PORT: port,
    ADDRESS: '127.0.0.1',
    YEAR: now.getUTCFullYear(),
    MONTH: now.getUTCMonth() + 1,
    DAY: now.getUTCDate(),
    HOUR: now.getUTCHours(),
    MINUTE: now.getUTCMinutes(),
    SECOND: now.getUTCSeconds(),
    PAN: 0,
    TILT: 0,
    ZOOM: 0,
    MOVE: 'IDLE',
    ...b.values,
  };
  return text.replace(/\{\{(\w+)\}\}/g, (_, k: string) => String(values[k] ?? ''));
}

function checkWsse(body: string, b: CameraBehaviour): { present: boolean; ok: boolean; created?: string } {
  const user = /<(?:\w+:)?Username\b[^>]*>([^<]*)</.exec(body)?.[1];
  const digest = /<(?:\w+:)?Password[^>]*>([^<]*)</.exec(body)?.[1];
  const nonce = /<(?:\w+:)?Nonce[^>]*>([^<]*)</.exec(body)?.[1];
  const created = /<(?:\w+:)?Created\b[^>]*>([^<]*)</.exec(body)?.[1];
  if (user === undefined) return { present: false, ok: false };
  if (digest === undefined || nonce === undefined || created === undefined) return { present: true, ok: false, created };
  const expect = createHash('sha1')
    .update(Buffer.concat([Buffer.from(nonce, 'base64'), Buffer.from(created), Buffer.from(b.password ?? '')]))
    .digest('base64');
  const now = (b.clock ?? (() => new Date()))().getTime();
  const skew = Math.abs(Date.parse(created) - now) / 1000;
  return { present: true, ok: user === b.user && expect === digest && skew <= (b.maxSkewSeconds ?? 5), created };
}

interface NonceState {
  uses: number;
  lastNc: number;
}

function parseAuthParams(h: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of h.matchAll(/(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g))
    out[m[1]!.toLowerCase()] = (m[2] ?? m[3] ?? '').replace(/\\(.)/g, '$1');
  return out;
}

export async function startAnswerCamera(behaviour: CameraBehaviour): Promise<AnswerCamera> {
  const requests: RequestRecord[] = [];
  const nonces = new Map<string, NonceState>();
  const sockets = new Set<Socket>();
  const algs = behaviour.digestAlgorithms ?? ['MD5'];

  const challenge = (res: ServerResponse, stale = false): void => {
    const nonce = randomBytes(12).toString('hex');
    nonces.set(nonce, { uses: 0, lastNc: 0 });
    res.statusCode = 401;
    // Several challenges, as cameras send them: one header each.
    res.setHeader(
      'WWW-Authenticate',
      algs.map(
        (a) =>
          `Digest realm="IP Camera(C3412)", qop="auth", nonce="${nonce}", opaque="5ccc069c403ebaf9f0171e9517f40e41", algorithm=${a}, stale="${stale ? 'TRUE' : 'FALSE'}"`,
      ),
    );
    res.setHeader('Content-Type', 'text/html');
    res.end('<html><body>401 Unauthorized</body></html>');
  };

  const checkDigest = (req: IncomingMessage): 'ok' | 'bad' | 'stale' | 'none' => {
    const h = req.headers.authorization;
    if (!h?.startsWith('Digest ')) return 'none';
    const p = parseAuthParams(h.slice(7));
    const state = nonces.get(p.nonce ?? '');
    if (!state) return 'stale';
    const nc = Number.parseInt(p.nc ?? '0', 16);
    if (!(nc > state.lastNc)) return 'bad';
    state.lastNc = nc;
    state.uses++;
    if (behaviour.nonceUses !== undefined && state.uses > behaviour.nonceUses) {
      nonces.delete(p.nonce!);
      return 'stale';
    }
    const alg = (p.algorithm ?? 'MD5').toUpperCase() === 'SHA-256' ? 'sha256' : 'md5';
    const H = (s: string): string => createHash(alg).update(s).digest('hex');
    const ha1 = H(`${behaviour.user}:${p.realm}:${behaviour.password}`);
    const ha2 = H(`${req.method}:${p.uri}`);
    const expect = H(`${ha1}:${p.nonce}:${p.nc}:${p.cnonce}:${p.qop}:${ha2}`);
    return p.username === behaviour.user && p.response === expect && p.uri === req.url ? 'ok' : 'bad';
  };

  const send = async (req: IncomingMessage, res: ServerResponse, reply: Reply, port: number): Promise<void> => {
    if (typeof reply === 'string')
      reply = { body: reply.endsWith('.xml') && !reply.includes('<') ? render(fixture(reply), behaviour, port) : reply };
    if ('hang' in reply) return; // never answer
    if ('stream' in reply) {
      res.writeHead(200, { 'Content-Type': 'application/soap+xml' });
      for (let i = 0; i < reply.repeat && !res.destroyed; i++) {
        if (!res.write(reply.stream)) {
          await new Promise<void>((r) => {
            const done = (): void => {
              res.off('drain', done).off('close', done);
              r();
            };
            res.on('drain', done).on('close', done);
          });
        }
      }
      res.end();
      return;
    }
    if ('truncateAt' in reply) {
      const buf = Buffer.from(reply.body);
      res.writeHead(200, { 'Content-Type': 'application/soap+xml', 'Content-Length': String(buf.length) });
      // Flushed, then the connection closed: the client sees fewer bytes than Content-Length promised.
      res.write(buf.subarray(0, reply.truncateAt), () => req.socket.end());
      return;
    }
    const isFault = /:Fault>|<Fault>/.test(reply.body) && !/Response>/.test(reply.body);
    res.writeHead(reply.status ?? (isFault ? 400 : 200), { 'Content-Type': 'application/soap+xml; charset=utf-8', ...reply.headers });
    res.end(reply.body);
  };

  let server: Server;
  const handler = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const action = ACTION.exec(body)?.[1] ?? '';
    const port = (server.address() as AddressInfo).port;
    const mode = behaviour.auth ?? 'wsse';
    const rec: RequestRecord = {
      action,
      path: req.url ?? '',
      auth: 'none',
      verified: false,
      scheme: req.headers.authorization?.split(' ')[0],
      body,
    };
    requests.push(rec);
    if ((behaviour.protectClock || !UNPROTECTED.has(action)) && mode !== 'none') {
      const w = checkWsse(body, behaviour);
      const d = checkDigest(req);
      if (w.present) {
        rec.auth = 'wsse';
        rec.verified = w.ok;
        rec.created = w.created;
      }
      if (d !== 'none') {
        rec.auth = 'digest';
        rec.verified = d === 'ok';
        rec.nc = parseAuthParams(req.headers.authorization!.slice(7)).nc;
      }
      const digestOk = d === 'ok' && (mode === 'digest' || mode === 'either');
      const wsseOk = w.ok && (mode === 'wsse' || mode === 'either');
      if (!digestOk && !wsseOk) {
        if (d === 'stale') return challenge(res, true);
        if (mode === 'digest' || (mode === 'either' && !w.present)) return challenge(res);
        return send(req, res, { status: 400, body: fixture('Fault.not-authorized.xml') }, port);
      }
    }
    const a = behaviour.answers[action];
    const reply = typeof a === 'function' ? a({ path: req.url ?? '', body }) : a;
    await send(req, res, reply ?? { status: 400, body: fixture('Fault.action-not-supported.xml') }, port);
  };
  server = createServer((req, res) => {
    handler(req, res).catch(() => res.destroy());
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    host: '127.0.0.1',
    port,
    url: `http://127.0.0.1:${port}/onvif/device_service`,
    requests,
    behaviour,
    stop: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** The good answers of a PTZ camera, file per action, for tests to start from. */
export function ptzCameraAnswers(): Record<string, Reply> {
  return {
    GetSystemDateAndTime: 'GetSystemDateAndTime.hikvision.xml',
    GetDeviceInformation: 'GetDeviceInformation.axis.xml',
    GetServices: 'GetServices.hanwha.xml',
    GetCapabilities: 'GetCapabilities.nat.xml',
    GetProfiles: 'GetProfiles.hikvision.xml',
    GetStreamUri: 'GetStreamUri.hikvision.xml',
    GetSnapshotUri: 'GetSnapshotUri.uniview.xml',
    GetPresets: 'GetPresets.hikvision.xml',
    SetPreset: 'SetPreset.xml',
    GotoPreset: 'GotoPreset.xml',
    GotoHomePosition: 'GotoHomePosition.xml',
    GetStatus: 'GetStatus.full.xml',
  };
}
