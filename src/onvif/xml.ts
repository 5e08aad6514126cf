import { XMLParser } from 'fast-xml-parser';
import { OnvifError } from './errors.js';

/**
 * XML read safely: no DOCTYPE (so no entity can be declared, let alone expanded), entities left to us (only the five
 * predefined ones and character references are decoded), bounded depth, and every element named by its namespace
 * URI and local name, never by the prefix a vendor happened to pick.
 */
export interface XmlElement {
  /** Namespace URI ('' when none is in scope). */
  ns: string;
  /** Local name, without prefix. */
  name: string;
  /** Attributes by local name. */
  attrs: Record<string, string>;
  children: XmlElement[];
  /** The element's own text, entity references decoded, trimmed. */
  text: string;
}

/** Deeper than any ONVIF answer nests (a profile is ~8 levels inside the envelope). */
export const MAX_DEPTH = 64;

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  processEntities: false,
  htmlEntities: false,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  commentPropName: false,
  // CDATA apart from text: its content is literal, an & in it is not an entity reference.
  cdataPropName: '#cdata',
  maxNestedTags: MAX_DEPTH + 1,
});

const PREDEFINED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** Decodes the five predefined entities and character references; any other reference means the XML is broken. */
export function decodeEntities(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|[A-Za-z][\w.-]*);?/g, (whole, ref: string) => {
    if (!whole.endsWith(';')) throw new SyntaxError('a bare & in text');
    if (ref[0] === '#') {
      const cp = ref[1] === 'x' ? Number.parseInt(ref.slice(2), 16) : Number.parseInt(ref.slice(1), 10);
      if (!(cp > 0 && cp <= 0x10ffff) || (cp >= 0xd800 && cp <= 0xdfff)) throw new SyntaxError(`bad character reference ${whole}`);
      return String.fromCodePoint(cp);
    }
    const v = PREDEFINED[ref];
    if (v === undefined) throw new SyntaxError(`undeclared entity ${whole}`);
    return v;
  });
}

type Ordered = Record<string, unknown>;

/**
 * Parses `text` into an element tree. Throws OnvifError 'malformed' (naming `camera`) for anything that is not
 * well-formed XML with one root element, for a DOCTYPE or entity declaration, for undeclared prefixes or entities,
 * and for nesting deeper than MAX_DEPTH.
 */
export function parseXml(text: string, camera: string, what = 'answer'): XmlElement {
  const bad = (why: string, cause?: unknown): OnvifError =>
    new OnvifError(
      'malformed',
      camera,
      `camera ${camera} sent a malformed ${what} (${why}); check the camera's firmware or ONVIF settings`,
      undefined,
      {
        cause,
      },
    );
  if (/<!DOCTYPE|<!ENTITY/i.test(text)) throw bad('it declares a DOCTYPE or entities, which ONVIF never uses; refused');
  let doc: unknown;
  try {
    doc = parser.parse(text, true);
  } catch (err) {
    throw bad(
      `not XML: ${String((err as Error).message ?? err)
        .split('\n')[0]!
        .slice(0, 120)}`,
      err,
    );
  }
  const roots = (doc as Ordered[]).filter((n) => !('#text' in n));
  if (roots.length !== 1) throw bad(roots.length === 0 ? 'no XML element' : 'more than one root element');
  try {
    return convert(roots[0]!, new Map([['xml', 'http://www.w3.org/XML/1998/namespace']]), 0);
  } catch (err) {
    throw bad((err as Error).message, err);
  }
}

function convert(node: Ordered, scope: Map<string, string>, depth: number): XmlElement {
  if (depth > MAX_DEPTH) throw new SyntaxError(`nested deeper than ${MAX_DEPTH} elements`);
  const qname = Object.keys(node).find((k) => k !== ':@');
  if (qname === undefined) throw new SyntaxError('an element without a name');
  const rawAttrs = (node[':@'] ?? {}) as Record<string, unknown>;
  let inner = scope;
  for (const [k, v] of Object.entries(rawAttrs)) {
    if (k === 'xmlns' || k.startsWith('xmlns:')) {
      if (inner === scope) inner = new Map(scope);
      inner.set(k === 'xmlns' ? '' : k.slice(6), decodeEntities(String(v)));
    }
  }
  const attrs: Record<string, string> = {};
  for (const [k, v] of Object.entries(rawAttrs)) {
    if (k === 'xmlns' || k.startsWith('xmlns:')) continue;
    attrs[localName(k)] = typeof v === 'string' ? decodeEntities(v) : '';
  }
  const colon = qname.indexOf(':');
  const prefix = colon < 0 ? '' : qname.slice(0, colon);
  const ns = inner.get(prefix);
  if (ns === undefined && prefix !== '') throw new SyntaxError(`undeclared namespace prefix ${prefix}:`);
  const el: XmlElement = { ns: ns ?? '', name: colon < 0 ? qname : qname.slice(colon + 1), attrs, children: [], text: '' };
  const content = node[qname];
  if (Array.isArray(content)) {
    const texts: string[] = [];
    for (const c of content as Ordered[]) {
      if ('#text' in c) texts.push(decodeEntities(String(c['#text'])));
      else if ('#cdata' in c) texts.push(((c['#cdata'] ?? []) as Ordered[]).map((x) => String(x['#text'] ?? '')).join(''));
      else if (Object.keys(c).some((k) => k !== ':@')) el.children.push(convert(c, inner, depth + 1));
    }
    el.text = texts.join('').trim();
  }
  return el;
}

function localName(q: string): string {
  const i = q.indexOf(':');
  return i < 0 ? q : q.slice(i + 1);
}

/** First child with this local name (any namespace: vendors put fields in tt:, tds: or none). */
export function child(el: XmlElement | undefined, name: string): XmlElement | undefined {
  return el?.children.find((c) => c.name === name);
}

export function childrenNamed(el: XmlElement | undefined, name: string): XmlElement[] {
  return el ? el.children.filter((c) => c.name === name) : [];
}

/** Follows a path of local names: path(el, 'Capabilities', 'Media', 'XAddr'). */
export function path(el: XmlElement | undefined, ...names: string[]): XmlElement | undefined {
  let cur = el;
  for (const n of names) cur = child(cur, n);
  return cur;
}

/** Text at a path, undefined when the element is absent or empty. */
export function textAt(el: XmlElement | undefined, ...names: string[]): string | undefined {
  const t = path(el, ...names)?.text;
  return t === undefined || t === '' ? undefined : t;
}

/** Escapes text for an element or attribute value we send. */
export function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&${{ '<': 'lt', '>': 'gt', '&': 'amp', '"': 'quot', "'": 'apos' }[c]};`);
}
