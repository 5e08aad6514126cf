import { readFileSync } from 'node:fs';
import type { IClientOptions } from 'mqtt';

/** PEM file paths; read once at start(). */
export interface UplinkTls {
  ca?: string;
  cert?: string;
  key?: string;
  rejectUnauthorized?: boolean;
}

export interface SessionOptions {
  clientId: string;
  username?: string;
  password?: string;
  tls?: UplinkTls;
  sessionExpirySeconds: number;
  /** The last will: the broker publishes it (QoS 1, retained) when the connection is lost without a DISCONNECT. */
  will: { topic: string; payload: string };
}

/** Default of mqtt.sessionExpirySeconds: a week of gateway downtime before the broker forgets the session. */
export const DEFAULT_SESSION_EXPIRY_SECONDS = 7 * 24 * 3600;

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function readPem(what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new Error(`uplink: cannot read the TLS ${what} file ${file}: ${errorText(err)}`, { cause: err });
  }
}

/**
 * mqtt.js options for the gateway's connection. The session is persistent (clean start off, kept for
 * sessionExpirySeconds after a disconnect; the client id names it), so what is sent down to the gateway while it
 * is offline waits at the broker. What goes up needs no session: the outbox holds it, and the uplink drops
 * mqtt.js's in-memory copies of unacknowledged publishes when a connection closes (docs/delivery.md).
 * Throws at once if a TLS file cannot be read.
 */
export function sessionOptions(opts: SessionOptions): IClientOptions {
  const { tls } = opts;
  return {
    protocolVersion: 5,
    clientId: opts.clientId,
    username: opts.username,
    password: opts.password,
    clean: false,
    properties: { sessionExpiryInterval: opts.sessionExpirySeconds },
    // The uplink applies its subscriptions itself on every connect, session present or not.
    resubscribe: false,
    keepalive: 30,
    connectTimeout: 10_000,
    // Reconnects are scheduled by the uplink (exponential backoff with jitter), not by mqtt.js's fixed-period timer.
    reconnectPeriod: 0,
    will: { topic: opts.will.topic, payload: Buffer.from(opts.will.payload), qos: 1, retain: true },
    ...(tls?.ca ? { ca: readPem('CA', tls.ca) } : {}),
    ...(tls?.cert ? { cert: readPem('client certificate', tls.cert) } : {}),
    ...(tls?.key ? { key: readPem('client key', tls.key) } : {}),
    ...(tls?.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: tls.rejectUnauthorized }),
  };
}
