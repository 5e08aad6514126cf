/**
 * Reproducible bad answers for the ONVIF client (test/onvif-fuzz.test.ts, bench/onvif-clients.ts): a seeded PRNG
 * mutates good fixture answers the ways broken or hostile cameras do.
 */
import type { Reply } from './onvif-answers.js';

/** mulberry32: small, fast, and the same sequence on every machine for a seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const MUTATIONS = [
  'truncate',
  'truncate-connection',
  'flip-bytes',
  'wrong-namespace',
  'wrong-envelope',
  'delete-element',
  'duplicate-element',
  'swap-text',
  'huge-body',
  'huge-stream',
  'deep-nesting',
  'xxe',
  'xxe-parameter',
  'billion-laughs',
  'not-xml',
  'empty',
  'hang',
  'garbage-numbers',
  'unclosed-tag',
  'two-roots',
  'undeclared-prefix',
  'bad-entity',
] as const;
export type MutationKind = (typeof MUTATIONS)[number];

export interface Mutation {
  kind: MutationKind;
  reply: Reply;
}

const TEN_MIB = 10 * 1024 * 1024;
let hugeCache: string | undefined;
function huge(good: string): string {
  // Well-formed and 10 MiB: the cap, not the parser, has to stop it.
  hugeCache ??= `<!-- ${'x'.repeat(TEN_MIB)} -->`;
  return good.replace(/<\/([\w-]+:)?Body>/, `${hugeCache}$&`);
}

/** Element spans <x ...>...</x> in a text, found cheaply (enough to cut and copy). */
function elementSpans(s: string): [number, number][] {
  const spans: [number, number][] = [];
  const re = /<([\w.-]+:)?([\w.-]+)[^>]*?(\/>|>)/g;
  for (let m = re.exec(s); m && spans.length < 400; m = re.exec(s)) {
    if (m[3] === '/>') {
      spans.push([m.index, m.index + m[0].length]);
      continue;
    }
    const close = `</${m[1] ?? ''}${m[2]}>`;
    const end = s.indexOf(close, m.index);
    if (end > 0) spans.push([m.index, end + close.length]);
  }
  return spans;
}

/** One mutation of `good`, chosen and shaped by `rnd`. */
export function mutate(good: string, rnd: () => number, kind?: MutationKind): Mutation {
  const k = kind ?? MUTATIONS[Math.floor(rnd() * MUTATIONS.length)]!;
  const at = (n: number): number => Math.floor(rnd() * n);
  const body = (b: string): Mutation => ({ kind: k, reply: { status: 200, body: b } });
  switch (k) {
    case 'truncate':
      return body(good.slice(0, at(good.length)));
    case 'truncate-connection':
      return { kind: k, reply: { truncateAt: at(good.length), body: good } };
    case 'flip-bytes': {
      const b = Buffer.from(good);
      for (let i = 0, n = 1 + at(8); i < n; i++) b[at(b.length)] = at(256);
      return body(b.toString('latin1'));
    }
    case 'wrong-namespace':
      return body(good.replace(/http:\/\/www\.onvif\.org\/ver\d\d\/[\w]+\/wsdl/g, 'http://example.com/not-onvif'));
    case 'wrong-envelope':
      return body(
        good.replace(/http:\/\/www\.w3\.org\/2003\/05\/soap-envelope|http:\/\/schemas\.xmlsoap\.org\/soap\/envelope\//g, 'urn:x-wrong'),
      );
    case 'delete-element': {
      const spans = elementSpans(good);
      const [s, e] = spans[at(spans.length)] ?? [0, 0];
      return body(good.slice(0, s) + good.slice(e));
    }
    case 'duplicate-element': {
      const spans = elementSpans(good);
      const [s, e] = spans[at(spans.length)] ?? [0, 0];
      return body(good.slice(0, e) + good.slice(s, e).repeat(1 + at(3)) + good.slice(e));
    }
    case 'swap-text':
      return body(
        good.replace(/>([^<]{1,80})</g, (m) =>
          rnd() < 0.3 ? `>${['', '-1', 'NaN', '99999999999999999999', '<', '&amp;&amp;', '\u0000', 'é'][at(8)]}<` : m,
        ),
      );
    case 'huge-body':
      return body(huge(good));
    case 'huge-stream':
      return { kind: k, reply: { stream: `<a>${'y'.repeat(65536)}`, repeat: 200 } };
    case 'deep-nesting': {
      const n = [100, 1000, 100_000][at(3)]!;
      return body(good.replace(/<\/([\w-]+:)?Body>/, `${'<a>'.repeat(n)}${'</a>'.repeat(n)}$&`));
    }
    case 'xxe':
      return body(
        `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>${good.replace(/^<\?xml[^>]*>/, '').replace(/>([^<]{1,40})</, '>&e;<')}`,
      );
    case 'xxe-parameter':
      return body(`<!DOCTYPE x [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>${good.replace(/^<\?xml[^>]*>/, '')}`);
    case 'billion-laughs': {
      const ents = ['<!ENTITY l0 "lol">'];
      for (let i = 1; i < 10; i++) ents.push(`<!ENTITY l${i} "${`&l${i - 1};`.repeat(10)}">`);
      return body(
        `<?xml version="1.0"?><!DOCTYPE x [${ents.join('')}]>${good.replace(/^<\?xml[^>]*>/, '').replace(/>([^<]{1,40})</, '>&l9;<')}`,
      );
    }
    case 'not-xml':
      return body(['<html><body><h1>404 Not Found</h1></body></html>', '{"error":"not found"}', 'OK', '\u0000\u0001\u0002'][at(4)]!);
    case 'empty':
      return body('');
    case 'hang':
      return { kind: k, reply: { hang: true } };
    case 'garbage-numbers':
      return body(
        good.replace(/>(\d+(\.\d+)?)</g, () => `>${['-5', '1e309', 'abc', '', '13', '0'][at(6)]}<`).replace(/="(-?\d+(\.\d+)?)"/g, '="x"'),
      );
    case 'unclosed-tag':
      return body(good.replace(/<\/[^>]+>/, ''));
    case 'two-roots':
      return body(`${good}<extra/>`);
    case 'undeclared-prefix':
      return body(good.replace(/<([\w-]+):Body/, '<zz:Body').replace(/<\/([\w-]+):Body>/, '</zz:Body>'));
    case 'bad-entity':
      return body(good.replace(/>([^<]{1,40})</, '>&nbsp;&#0;&#xD800;<'));
  }
}
