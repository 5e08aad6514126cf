import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { MqttConfig } from '../config/index.js';

/**
 * mqtt.js options for a command that talks to the gateway's own broker with the config's settings (url, user,
 * password, TLS files): `doctor`, `patrol run`. Its own client id (`{mqtt.clientId}-{role}-{pid}`) and a clean
 * session, so a running agent keeps its connection and its persistent session. Throws, naming the file, when a
 * TLS file cannot be read.
 */
export function configBrokerOptions(m: MqttConfig, role: string, connectTimeoutMs: number): IClientOptions {
  const tls = m.tls;
  const pem = (what: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new Error(`cannot read the TLS ${what} file ${file} (mqtt.tls): ${(err as Error).message}`);
    }
  };
  return {
    protocolVersion: 5,
    clientId: `${m.clientId}-${role}-${process.pid}`,
    clean: true,
    username: m.username,
    password: m.password,
    connectTimeout: connectTimeoutMs,
    reconnectPeriod: 0,
    ...(tls?.ca && { ca: pem('CA', tls.ca) }),
    ...(tls?.cert && { cert: pem('client certificate', tls.cert) }),
    ...(tls?.key && { key: pem('client key', tls.key) }),
    ...(tls && { rejectUnauthorized: tls.rejectUnauthorized }),
  };
}

/**
 * A connected client, or the error that kept it from connecting. Unlike mqtt.connectAsync with retries on, a
 * connection that closes before the CONNACK (no answer within connectTimeout) rejects too instead of waiting forever.
 */
export async function connectBroker(url: string, options: IClientOptions): Promise<MqttClient> {
  return mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, ...options }, false);
}

/** What a failed connection to the broker means (`detail`), and what to do about it (`fix`), in the config's terms. */
export function brokerProblem(url: string, err: Error & { code?: unknown }, tls: boolean): { detail: string; fix: string } {
  const code = typeof err.code === 'string' ? err.code : '';
  if (typeof err.code === 'number')
    return {
      detail: `${url} refused the connection (${err.message})`,
      fix: 'check mqtt.username and mqtt.password, or the client certificate in mqtt.tls.cert and mqtt.tls.key',
    };
  // OpenSSL's alerts come as "<hex>:error:<hex>:SSL routines:<function>:<reason>:<source file>:…": the reason is what helps.
  const reason = /SSL routines:[^:]*:([^:]+)/.exec(err.message)?.[1] ?? err.message;
  if (/CERTIFICATE_REQUIRED/.test(code) || /certificate required/i.test(reason))
    return {
      detail: `TLS to ${url} failed: the broker asks for a client certificate (${reason})`,
      fix: 'set mqtt.tls.cert and mqtt.tls.key to the PEM files of the certificate issued to this gateway',
    };
  if (/CERT|SELF_SIGNED|UNABLE_TO|ERR_TLS|ERR_SSL/.test(code) || /certificate|tls|ssl/i.test(err.message))
    return {
      detail: `TLS to ${url} failed: ${reason}${code ? ` (${code})` : ''}`,
      fix: tls
        ? "check that mqtt.tls.ca is the CA that signed the broker's certificate and that the url's host is the name in it"
        : 'check the url: use mqtts:// only for a TLS listener',
    };
  if (code === 'ECONNREFUSED')
    return { detail: `${url}: connection refused`, fix: "check that the broker runs and the url's host and port" };
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
    return { detail: `${url}: host not found (${code})`, fix: "check the url's host name and the gateway's DNS" };
  return { detail: `${url}: ${err.message}`, fix: "check the url's host and port, and the network between gateway and broker" };
}
