/**
 * WS-Discovery responders for tests: a UDP socket that answers every Probe with recorded-style ProbeMatches
 * (test/fixtures/onvif-answers/ProbeMatches.*.xml), unicast back to the prober, the way cameras do.
 */
import { createSocket, type Socket } from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { fixture } from './onvif-answers.js';

export interface Responder {
  port: number;
  probes: string[];
  close(): Promise<void>;
}

/** Answers each probe with every file in `answers` (each sent `repeat` times, as cameras resend over UDP) and one garbage datagram. */
export async function startResponder(opts: {
  port?: number;
  address?: string;
  multicast?: string;
  answers: string[];
  repeat?: number;
  onvifPort?: number;
}): Promise<Responder> {
  const socket: Socket = createSocket({ type: 'udp4', reuseAddr: true });
  const probes: string[] = [];
  socket.on('message', (msg, rinfo) => {
    const text = msg.toString('utf8');
    if (!/Probe>|:Probe\b/.test(text)) return;
    probes.push(text);
    const relatesTo = /MessageID>([^<]+)</.exec(text)?.[1] ?? '';
    const send = (s: string): void => socket.send(Buffer.from(s), rinfo.port, rinfo.address);
    send('<not a probe match');
    for (const name of opts.answers) {
      const body = fixture(name)
        .replace(/\{\{RELATES_TO\}\}/g, relatesTo)
        .replace(/\{\{ADDRESS\}\}/g, '127.0.0.1')
        .replace(/\{\{PORT\}\}/g, String(opts.onvifPort ?? 8000));
      for (let i = 0; i < (opts.repeat ?? 1); i++) send(body);
    }
  });
  await new Promise<void>((r) => socket.bind(opts.port ?? 0, opts.address ?? '127.0.0.1', r));
  if (opts.multicast) socket.addMembership(opts.multicast, '127.0.0.1');
  return {
    port: (socket.address() as AddressInfo).port,
    probes,
    close: () => new Promise<void>((r) => socket.close(() => r())),
  };
}
