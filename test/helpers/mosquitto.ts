/**
 * A private Mosquitto broker for tests (Debian's /usr/sbin/mosquitto on a free loopback port, never the
 * system broker on :1883), and a subscriber that records what arrives.
 *
 * Every broker started here is also SIGKILLed and its temp folder removed when the test process exits, so a
 * test that fails before its teardown leaves nothing behind; tests should still `t.teardown(broker.stop)`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';

export const mosquittoBin = '/usr/sbin/mosquitto';

export interface MosquittoTls {
  /** PEM file paths. */
  cafile: string;
  certfile: string;
  keyfile: string;
  /** Ask clients for a certificate signed by cafile (mutual TLS); default true. */
  requireCertificate?: boolean;
  /** Take the client certificate's CN as the MQTT username; default true when certificates are required. */
  useIdentityAsUsername?: boolean;
}

export interface MosquittoOptions {
  /** 0 or absent: pick a free port. */
  port?: number;
  tls?: MosquittoTls;
  /** Keep retained messages and persistent sessions across stop()/restart() (saved when stopped with SIGTERM). */
  persistence?: boolean;
  /** Extra lines appended to the generated mosquitto.conf. */
  extraConfig?: string[];
  /** How long to wait for the port to accept connections (default 15 s, generous for a loaded 2-core box). */
  startTimeoutMs?: number;
}

export interface Mosquitto {
  port: number;
  /** mqtt://127.0.0.1:PORT, or mqtts://127.0.0.1:PORT with tls. */
  url: string;
  /** Folder holding mosquitto.conf and the persistence file; removed when the test process exits. */
  dir: string;
  /** Everything the broker wrote to stdout/stderr since the last (re)start. */
  output(): string;
  /** Stops the broker (SIGTERM, SIGKILL after 5 s) and waits for its exit; restart() brings it back. */
  stop(opts?: { signal?: NodeJS.Signals }): Promise<void>;
  /** Starts the broker again on the same port with the same config (stopping it first if it runs). */
  restart(): Promise<void>;
}

const exitCleanups = new Set<() => void>();
process.once('exit', () => {
  for (const cleanup of exitCleanups) cleanup();
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A port the kernel had free a moment ago; mosquitto binds it right after, and start retries on a clash. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

function configText(port: number, dir: string, opts: MosquittoOptions): string {
  const lines = [
    'per_listener_settings true',
    // As root, mosquitto would drop to user `mosquitto` and then fail to read root-owned 0600 keys and the
    // 0700 temp folder; naming the current user keeps it as the test's own user (`root` means "do not drop").
    `user ${userInfo().username}`,
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'log_type notice',
    // "mosquitto version X running" is an information line, printed once every listener is open.
    'log_type information',
    'log_timestamp_format %H:%M:%S',
    `persistence ${opts.persistence ? 'true' : 'false'}`,
    `persistence_location ${dir}/`,
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
  ];
  if (opts.tls) {
    const requireCertificate = opts.tls.requireCertificate ?? true;
    lines.push(
      `cafile ${opts.tls.cafile}`,
      `certfile ${opts.tls.certfile}`,
      `keyfile ${opts.tls.keyfile}`,
      `require_certificate ${requireCertificate}`,
      `use_identity_as_username ${opts.tls.useIdentityAsUsername ?? requireCertificate}`,
    );
  }
  lines.push(...(opts.extraConfig ?? []));
  return `${lines.join('\n')}\n`;
}

export async function startMosquitto(opts: MosquittoOptions = {}): Promise<Mosquitto> {
  const dir = mkdtempSync(join(tmpdir(), 'edgepatrol-mosquitto-'));
  const confFile = join(dir, 'mosquitto.conf');
  const startTimeoutMs = opts.startTimeoutMs ?? 15_000;
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let output = '';
  let port = opts.port ?? 0;

  const killNow = (): void => {
    child?.kill('SIGKILL');
  };
  const removeDir = (): void => rmSync(dir, { recursive: true, force: true });
  exitCleanups.add(killNow);
  exitCleanups.add(removeDir);

  /** One attempt: spawn, then wait until the broker reports running and accepts a connection, or exits. */
  async function launch(): Promise<void> {
    writeFileSync(confFile, configText(port, dir, opts));
    output = '';
    const proc = spawn(mosquittoBin, ['-c', confFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    proc.stdout.setEncoding('utf8').on('data', (s: string) => {
      output += s;
    });
    proc.stderr.setEncoding('utf8').on('data', (s: string) => {
      output += s;
    });
    let exitInfo: string | undefined;
    exited = new Promise((resolve) => {
      // 'close', not 'exit': by then stdout/stderr are drained, so an error message carries all of the output.
      proc.once('close', (code, signal) => {
        exitInfo = signal ? `signal ${signal}` : `code ${code}`;
        if (child === proc) child = undefined;
        resolve();
      });
      proc.once('error', (err) => {
        exitInfo = `spawn error ${err.message}`;
        if (child === proc) child = undefined;
        resolve();
      });
    });
    const deadline = Date.now() + startTimeoutMs;
    for (;;) {
      if (exitInfo) {
        throw new Error(
          `mosquitto (${mosquittoBin} -c ${confFile}) exited during start with ${exitInfo} on port ${port}; ` +
            `its output:\n${output.trim() || '(none)'}`,
        );
      }
      // Both: "running" proves the listener is ours, not another process that grabbed the port.
      if (/ running\b/.test(output) && (await canConnect(port))) return;
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        await exited;
        throw new Error(
          `mosquitto did not accept connections on 127.0.0.1:${port} within ${startTimeoutMs} ms; ` +
            `its output:\n${output.trim() || '(none)'}`,
        );
      }
      await sleep(25);
    }
  }

  async function start(): Promise<void> {
    const pickPort = port === 0;
    for (let attempt = 1; ; attempt++) {
      if (pickPort) port = await freePort();
      try {
        await launch();
        return;
      } catch (err) {
        // Another process may grab the probed port between freePort() and mosquitto's bind.
        if (!pickPort || attempt >= 3 || !/Address already in use/i.test(output)) throw err;
      }
    }
  }

  async function stop(stopOpts: { signal?: NodeJS.Signals } = {}): Promise<void> {
    const proc = child;
    if (!proc) return;
    const escalate = setTimeout(() => proc.kill('SIGKILL'), 5_000);
    proc.kill(stopOpts.signal ?? 'SIGTERM');
    await exited;
    clearTimeout(escalate);
  }

  try {
    await start();
  } catch (err) {
    exitCleanups.delete(killNow);
    exitCleanups.delete(removeDir);
    removeDir();
    throw err;
  }
  return {
    port,
    // An IP, not `localhost`: Node may resolve localhost to ::1 while the listener is IPv4 only; test
    // server certificates carry IP:127.0.0.1 in their subjectAltName.
    url: `${opts.tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
    dir,
    output: () => output,
    stop,
    async restart() {
      await stop();
      await launch();
    },
  };
}

export interface Received {
  topic: string;
  payload: string;
  /** The payload bytes as received (evidence images are binary). */
  raw: Buffer;
  retain: boolean;
  properties: IPublishPacket['properties'];
}

export interface Collector {
  messages: Received[];
  client: MqttClient;
  /** Resolves with the messages once `until` holds (a count, or a predicate on all messages so far). */
  waitFor(until: number | ((messages: Received[]) => boolean), timeoutMs?: number): Promise<Received[]>;
  close(): Promise<void>;
}

/**
 * Subscribes (MQTT 5, QoS 1) to topicFilter and records every message; after a reconnect mqtt.js subscribes
 * again unless the broker kept the session. With `session`, the subscriber keeps
 * a persistent session (fixed client id, no clean start, 5 min expiry), so with a persistent broker it also
 * receives what was published while it was reconnecting after a broker restart.
 */
export async function collect(
  url: string,
  topicFilter: string,
  opts: { session?: string; clientOptions?: IClientOptions } = {},
): Promise<Collector> {
  const messages: Received[] = [];
  const waiters = new Set<() => void>();
  const client = await mqtt.connectAsync(url, {
    protocolVersion: 5,
    reconnectPeriod: 250,
    connectTimeout: 15_000,
    ...(opts.session
      ? { clientId: opts.session, clean: false, properties: { sessionExpiryInterval: 300 } }
      : { clientId: `collect-${process.pid}-${Math.random().toString(16).slice(2, 10)}` }),
    ...opts.clientOptions,
  });
  client.on('message', (topic, payload, packet) => {
    messages.push({
      topic,
      payload: payload.toString('utf8'),
      raw: Buffer.from(payload),
      retain: packet.retain,
      properties: packet.properties,
    });
    for (const wake of waiters) wake();
  });
  await client.subscribeAsync(topicFilter, { qos: 1 });
  return {
    messages,
    client,
    waitFor(until, timeoutMs = 20_000) {
      const done = typeof until === 'number' ? (m: Received[]) => m.length >= until : until;
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (!done(messages)) return;
          finish();
          resolve(messages);
        };
        const timer = setTimeout(() => {
          finish();
          reject(
            new Error(
              `collect(${topicFilter}): condition not met after ${timeoutMs} ms; ${messages.length} ` +
                `message(s) received, last: ${JSON.stringify(messages.slice(-3).map((m) => [m.topic, m.payload.slice(0, 300)]))}`,
            ),
          );
        }, timeoutMs);
        const finish = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async close() {
      await client.endAsync(true);
    },
  };
}

/** A broker for one tap test: stopped in that test's teardown. */
export async function brokerFor(tt: { teardown(fn: () => unknown): void }, opts: MosquittoOptions = {}): Promise<Mosquitto> {
  const b = await startMosquitto(opts);
  tt.teardown(() => b.stop());
  return b;
}

/** A temporary folder for one tap test, removed in its teardown. */
export function tempDirFor(tt: { teardown(fn: () => unknown): void }, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `edgepatrol-${prefix}-`));
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
