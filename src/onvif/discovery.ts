import { randomUUID } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { isIPv4 } from 'node:net';
import { networkInterfaces } from 'node:os';
import { OnvifError } from './errors.js';
import { childrenNamed, parseXml, path, textAt, type XmlElement } from './xml.js';

/** WS-Discovery 1.0 (April 2005), the version ONVIF uses. */
const WSD = 'http://schemas.xmlsoap.org/ws/2005/04/discovery';
const WSA = 'http://schemas.xmlsoap.org/ws/2004/08/addressing';
const SOAP12 = 'http://www.w3.org/2003/05/soap-envelope';
export const MULTICAST_ADDRESS = '239.255.255.250';
export const DISCOVERY_PORT = 3702;

export interface DiscoverOptions {
  /** Network interface name ('eth0') or one of its IPv4 addresses; probes leave from it (default: the OS's choice). */
  interface?: string;
  /** How long to collect answers (default 3000). */
  timeoutMs?: number;
  /** Probe this host directly instead of multicasting. */
  host?: string;
  /** Destination port (default 3702; tests use another). */
  port?: number;
}

export interface DiscoveredCamera {
  /** EndpointReference address (urn:uuid:…), the identity answers are deduplicated by. */
  endpoint: string;
  /** IPv4 address the answer came from. */
  address: string;
  /** Every XAddr the camera listed (device service URLs). */
  xaddrs: string[];
  /** Port of the XAddr on the answering address (else of the first XAddr). */
  port?: number;
  name?: string;
  manufacturer?: string;
  model?: string;
  location?: string;
  types: string[];
  scopes: string[];
}

/** The Probe message for one device type. */
export function probeMessage(messageId: string, types = 'dn:NetworkVideoTransmitter'): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="${SOAP12}" xmlns:a="${WSA}" xmlns:d="${WSD}"` +
    ' xmlns:dn="http://www.onvif.org/ver10/network/wsdl" xmlns:tds="http://www.onvif.org/ver10/device/wsdl"><s:Header>' +
    `<a:Action s:mustUnderstand="1">${WSD}/Probe</a:Action><a:MessageID>urn:uuid:${messageId}</a:MessageID>` +
    '<a:To s:mustUnderstand="1">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To></s:Header>' +
    `<s:Body><d:Probe><d:Types>${types}</d:Types></d:Probe></s:Body></s:Envelope>`
  );
}

/** Parses one datagram into the cameras it lists; [] for anything that is not a ProbeMatches (never throws). */
export function parseProbeMatches(text: string, from: string): DiscoveredCamera[] {
  let root: ReturnType<typeof parseXml>;
  try {
    root = parseXml(text, from, 'discovery answer');
  } catch {
    return [];
  }
  if (root.name !== 'Envelope') return [];
  const matches = path(root, 'Body', 'ProbeMatches');
  if (!matches || matches.ns !== WSD) return [];
  return childrenNamed(matches, 'ProbeMatch').flatMap((m) => {
    try {
      return probeMatch(m, from);
    } catch {
      return []; // one broken match must not cost the others, nor throw in the socket's handler
    }
  });
}

function probeMatch(m: XmlElement, from: string): DiscoveredCamera[] {
  const endpoint = textAt(m, 'EndpointReference', 'Address');
  const xaddrs = (textAt(m, 'XAddrs') ?? '').split(/\s+/).filter((x) => /^https?:\/\//i.test(x) && URL.canParse(x));
  if (!endpoint) return [];
  const scopes = (textAt(m, 'Scopes') ?? '').split(/\s+/).filter(Boolean);
  const scope = (...kinds: string[]): string | undefined => {
    for (const s of scopes) {
      const m2 = /^onvif:\/\/www\.onvif\.org\/([^/]+)\/(.+)$/i.exec(s);
      if (m2 && kinds.includes(m2[1]!.toLowerCase())) return decode(m2[2]!);
    }
    return undefined;
  };
  const hardware = scope('hardware');
  const portOf = (x: string | undefined): number | undefined => {
    if (!x) return undefined;
    const u = new URL(x);
    return Number(u.port) || (u.protocol === 'https:' ? 443 : 80);
  };
  return [
    {
      endpoint,
      address: from,
      xaddrs,
      port: portOf(xaddrs.find((x) => new URL(x).hostname === from) ?? xaddrs[0]),
      name: scope('name'),
      manufacturer: scope('mfr', 'manufacturer'),
      model: hardware,
      location: scope('location'),
      types: (textAt(m, 'Types') ?? '').split(/\s+/).filter(Boolean),
      scopes,
    },
  ];
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

/** The IPv4 address to send from: an address as given, or the first IPv4 address of the named interface. */
export function interfaceAddress(iface: string): string {
  if (isIPv4(iface)) return iface;
  const all = networkInterfaces();
  const addr = all[iface]?.find((a) => a.family === 'IPv4');
  if (!addr) {
    const names = Object.keys(all).join(', ');
    throw new OnvifError(
      'unreachable',
      `discovery on ${iface}`,
      `network interface "${iface}" has no IPv4 address or does not exist (available: ${names}); pass another --interface`,
    );
  }
  return addr.address;
}

/**
 * WS-Discovery Probe (for NetworkVideoTransmitter and for tds:Device, which some stacks answer to instead), by
 * multicast from the chosen interface or unicast to `host`; collects ProbeMatches until `timeoutMs`, one entry per
 * EndpointReference (XAddrs of repeated answers merged). Malformed datagrams are ignored.
 */
export async function discover(opts: DiscoverOptions = {}): Promise<DiscoveredCamera[]> {
  const timeoutMs = opts.timeoutMs ?? 3000;
  const port = opts.port ?? DISCOVERY_PORT;
  const local = opts.interface === undefined ? undefined : interfaceAddress(opts.interface);
  const target = opts.host ?? MULTICAST_ADDRESS;
  const where = `discovery ${opts.host ? `of ${opts.host}:${port}` : `on ${opts.interface ?? 'the default interface'}`}`;
  const socket = createSocket({ type: 'udp4', reuseAddr: true });
  const found = new Map<string, DiscoveredCamera>();
  socket.on('message', (msg, rinfo) => {
    for (const cam of parseProbeMatches(msg.toString('utf8'), rinfo.address)) {
      const seen = found.get(cam.endpoint);
      if (seen) seen.xaddrs = [...new Set([...seen.xaddrs, ...cam.xaddrs])];
      else found.set(cam.endpoint, cam);
    }
  });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ port: 0, address: local }, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    socket.on('error', () => {});
    if (!opts.host) {
      socket.setMulticastTTL(1);
      if (local) socket.setMulticastInterface(local);
    }
    for (const types of ['dn:NetworkVideoTransmitter', 'tds:Device']) {
      const msg = Buffer.from(probeMessage(randomUUID(), types));
      await new Promise<void>((resolve, reject) => socket.send(msg, port, target, (err) => (err ? reject(err) : resolve())));
    }
    await new Promise((r) => setTimeout(r, timeoutMs));
  } catch (err) {
    if (err instanceof OnvifError) throw err;
    throw new OnvifError(
      'unreachable',
      where,
      `${where} failed: ${(err as Error).message}; check the interface and that multicast is allowed`,
      undefined,
      { cause: err },
    );
  } finally {
    socket.close();
  }
  return [...found.values()];
}
