import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type IPublishPacket } from 'mqtt';
import type { z } from 'zod';
import { senderTopics } from '../common/topics.js';
import { eventPayloadSchema } from '../agent/event.js';
import { healthPayloadSchema } from '../health/index.js';
import { safeUrl } from '../log.js';
import { alertPayloadSchema } from '../outbox/index.js';
import { taskStatePayloadSchema } from '../tasks/index.js';
import {
  ACK_SCHEMA_ID,
  availabilityPayloadSchema,
  REQUEST_VERBS,
  evidencePropertiesSchema,
  responsePayloadSchema,
  responseSchemaFor,
  type AckPayload,
} from '../uplink/index.js';
import { EXIT, parseCommandArgs, reportError, UsageError, type CommandIo } from './io.js';

const help = `usage: edgepatrol tail [--url mqtt://host:port] [--prefix edgepatrol] [--topic filter] [--share group]
                      [--session id] [--ack] [--save-evidence dir] [--check] [--count N] [--timeout S] [--json]

A reference subscriber: prints every message under {prefix}/# as one line, "topic payload" (evidence images as a
summary line).
  --url            broker URL (default mqtt://127.0.0.1:1883); TLS files through --ca, --cert, --key
  --prefix         topic prefix to follow (default edgepatrol)
  --topic          a topic filter instead of {prefix}/#
  --share          join the MQTT 5 shared subscription $share/<group>/<filter>: the broker gives each message
                   to one member of the group, so several consumers split the stream
  --session        keep a persistent session under this client id: what is published while tail is away waits
                   at the broker (QoS 1)
  --ack            acknowledge each event and alert on {prefix}/{gatewayId}/ack, as the task service does for
                   gateways configured with mqtt.delivery: service
  --save-evidence  reassemble evidence images (split ones too), check their sha256 and write <dir>/<messageId>.jpg
  --check          validate every message against its schema (docs/schemas), answers to requests included;
                   exit 1 at the end if one failed
  --count          exit after N event messages
  --timeout        exit 1 if --count is not reached within S seconds
  --json           JSON lines instead of text, one per message, nothing else on stdout:
                     {"kind":"message","topic","retained","payload"}  payload parsed from JSON (the text if it is not)
                     {"kind":"evidence","topic","retained","messageId","part","parts","bytes"}
                     {"kind":"saved","messageId","file","bytes","parts"}  with --save-evidence, once an image is whole
                   subscription notes, errors and --check findings go to stderr as in the text form
exit codes: 0 done (--count reached, or stopped by SIGINT/SIGTERM), 1 bad usage, --timeout passed or --check failed,
            4 broker unreachable within --timeout, or refusing the connection (user, password, certificate)
`;

interface Options {
  url: string;
  prefix: string;
  topic?: string;
  share?: string;
  session?: string;
  ack: boolean;
  saveEvidence?: string;
  check: boolean;
  json?: boolean;
  ca?: string;
  cert?: string;
  key?: string;
}

/** Parts of an evidence image received so far, by message id. */
interface Assembly {
  parts: Buffer[];
  received: number;
  total: number;
  sha256: string;
}

const payloadSchemas: [RegExp, z.ZodType][] = [
  [/\/event\/[^/]+$/, eventPayloadSchema],
  [/\/alert\/[^/]+$/, alertPayloadSchema],
  [/\/availability$/, availabilityPayloadSchema],
  [/\/health$/, healthPayloadSchema],
  [/\/task\/[^/]+\/state$/, taskStatePayloadSchema],
];

function verbResponseSchema(verb: string): z.ZodType {
  return (REQUEST_VERBS as readonly string[]).includes(verb) ? responseSchemaFor(verb) : responsePayloadSchema;
}

/** What is wrong with a message by the contract, or null when it conforms. Exported for the contract tests. */
export function contractProblem(topic: string, payload: Buffer, properties: IPublishPacket['properties']): string | null {
  if (/\/evidence\/[^/]+$/.test(topic)) {
    if (properties?.contentType !== 'image/jpeg') return `content type ${String(properties?.contentType)}, expected image/jpeg`;
    const parsed = evidencePropertiesSchema.safeParse(properties?.userProperties);
    if (!parsed.success) return `user properties: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`;
    if (!topic.endsWith(`/${parsed.data.messageId}`)) return `messageId ${parsed.data.messageId} is not the topic's last level`;
    return null;
  }
  // A request's own Response Topic (…/response/client-7/x) names no verb: any answer's shape goes there.
  const verb = /\/response\/(.+)$/.exec(topic)?.[1];
  const schema = verb !== undefined ? verbResponseSchema(verb) : payloadSchemas.find(([re]) => re.test(topic))?.[1];
  if (!schema) return null;
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch {
    return 'payload is not JSON';
  }
  const parsed = schema.safeParse(json);
  return parsed.success ? null : parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}

const options = {
  url: { type: 'string', default: 'mqtt://127.0.0.1:1883' },
  prefix: { type: 'string', default: 'edgepatrol' },
  topic: { type: 'string' },
  share: { type: 'string' },
  session: { type: 'string' },
  ack: { type: 'boolean', default: false },
  'save-evidence': { type: 'string' },
  check: { type: 'boolean', default: false },
  json: { type: 'boolean', default: false },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  count: { type: 'string' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function parse(argv: string[]) {
  const { values: v } = parseCommandArgs(argv, options, { positionals: false });
  if (v.help) return { help: true as const };
  const count = v.count === undefined ? Infinity : Number(v.count);
  const timeoutS = v.timeout === undefined ? Infinity : Number(v.timeout);
  if (!(count > 0) || !(timeoutS > 0)) throw new UsageError('--count and --timeout take positive numbers');
  if (v.share !== undefined && !/^[^/+#$]+$/.test(v.share))
    throw new UsageError(`--share ${v.share}: a group name without '/', '+', '#' or '$'`);
  const tail: TailOptions = {
    url: v.url,
    prefix: v.prefix,
    topic: v.topic,
    share: v.share,
    session: v.session,
    ack: v.ack,
    saveEvidence: v['save-evidence'],
    check: v.check,
    json: v.json,
    ca: v.ca,
    cert: v.cert,
    key: v.key,
    count,
    timeoutS,
  };
  return { help: false as const, tail };
}

export async function tailCommand(argv: string[], io: CommandIo = process): Promise<number> {
  let opts: ReturnType<typeof parse>;
  try {
    opts = parse(argv);
    if (opts.help) {
      io.stdout.write(help);
      return EXIT.ok;
    }
    const stop = new AbortController();
    process.once('SIGINT', () => stop.abort());
    process.once('SIGTERM', () => stop.abort());
    return await runTail(opts.tail, { out: (s) => io.stdout.write(s), err: (s) => io.stderr.write(s), signal: stop.signal });
  } catch (err) {
    return reportError(io, 'tail', err, help);
  }
}

export type TailOptions = Options & { count?: number; timeoutS?: number };

/**
 * The subscriber itself, writing lines to `out` and diagnostics to `err`; resolves with the exit code when
 * --count is reached, the timeout passes or `signal` aborts. Tests run several in one process.
 */
export async function runTail(
  args: TailOptions,
  io: { out: (s: string) => void; err: (s: string) => void; signal?: AbortSignal },
): Promise<number> {
  const count = args.count ?? Infinity;
  const timeoutS = args.timeoutS ?? Infinity;
  const base = args.topic ?? `${args.prefix}/#`;
  const filter = args.share ? `$share/${args.share}/${base}` : base;
  if (args.saveEvidence) mkdirSync(args.saveEvidence, { recursive: true });
  const client = mqtt.connect(args.url, {
    protocolVersion: 5,
    reconnectPeriod: 1000,
    connectTimeout: 5000,
    ...(args.session ? { clientId: args.session, clean: false, properties: { sessionExpiryInterval: 7 * 24 * 3600 } } : {}),
    ...(args.ca ? { ca: readTlsFile('ca', args.ca) } : {}),
    ...(args.cert ? { cert: readTlsFile('cert', args.cert) } : {}),
    ...(args.key ? { key: readTlsFile('key', args.key) } : {}),
  });
  const assemblies = new Map<string, Assembly>();
  let events = 0;
  let invalid = 0;
  let connected = false;
  return await new Promise<number>((resolve) => {
    let done = false;
    const finish = (code: number): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      io.signal?.removeEventListener('abort', onAbort);
      if (args.check && invalid > 0) io.err(`edgepatrol tail: ${invalid} message(s) broke the contract\n`);
      client.end(false, () => resolve(args.check && invalid > 0 ? EXIT.failed : code));
    };
    const onAbort = (): void => finish(EXIT.ok);
    io.signal?.addEventListener('abort', onAbort);
    const timer = Number.isFinite(timeoutS)
      ? setTimeout(() => {
          if (connected) {
            io.err(`edgepatrol tail: ${events} of ${count} events within ${timeoutS} s\n`);
            finish(EXIT.failed);
          } else {
            io.err(`edgepatrol tail: no connection to ${safeUrl(args.url)} within ${timeoutS} s; check --url and that the broker runs\n`);
            finish(EXIT.broker);
          }
        }, timeoutS * 1000)
      : undefined;
    client.on('connect', (connack) => {
      connected = true;
      // A resumed session still has the subscription.
      if (connack.sessionPresent) return;
      client.subscribe(filter, { qos: 1 }, (err) => {
        if (err) io.err(`edgepatrol tail: cannot subscribe to ${filter}: ${err.message}\n`);
        else io.err(`edgepatrol tail: subscribed to ${filter} on ${safeUrl(args.url)}\n`);
      });
    });
    client.on('error', (err) => {
      // A reason code before any connection is the broker's CONNACK refusal; mqtt.js does not retry it, so neither do we.
      if (!connected && typeof (err as { code?: unknown }).code === 'number') {
        io.err(
          `edgepatrol tail: ${safeUrl(args.url)} refused the connection (${err.message}); check the user and password in --url, or --cert and --key\n`,
        );
        finish(EXIT.broker);
        return;
      }
      // Once tail is ending (--count reached, a signal), the closing connection's errors are not news.
      if (!done) io.err(`edgepatrol tail: ${safeUrl(args.url)}: ${err.message}\n`);
    });
    client.on('message', (topic, payload, packet) => {
      if (args.check) {
        const problem = contractProblem(topic, payload, packet.properties);
        if (problem) {
          invalid++;
          io.err(`edgepatrol tail: INVALID ${topic}: ${problem}\n`);
        }
      }
      const retained = packet.retain ? ' (retained)' : '';
      if (/\/evidence\/[^/]+$/.test(topic)) {
        const p = packet.properties?.userProperties as Record<string, string> | undefined;
        if (args.json) {
          const part = (v: string | undefined): number | null => (v === undefined ? null : Number(v));
          io.out(
            line({
              kind: 'evidence',
              topic,
              retained: packet.retain,
              messageId: p?.messageId ?? null,
              part: part(p?.part),
              parts: part(p?.parts),
              bytes: payload.length,
            }),
          );
        } else {
          io.out(`${topic}${retained} [image/jpeg ${payload.length} bytes, part ${p?.part ?? '?'}/${p?.parts ?? '?'}]\n`);
        }
        if (args.saveEvidence && p) saveEvidence(args.saveEvidence, assemblies, p, payload, io, args.json ?? false);
        return;
      }
      const text = payload.toString('utf8');
      io.out(
        args.json
          ? line({ kind: 'message', topic, retained: packet.retain, payload: parsedOrText(text) })
          : `${topic}${retained} ${text}\n`,
      );
      const kind = /\/(event|alert)\/[^/]+$/.exec(topic)?.[1];
      if (kind && args.ack) acknowledge(client, topic, payload);
      if (kind === 'event' && ++events >= count) finish(EXIT.ok);
    });
  });
}

function readTlsFile(option: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new Error(`--${option} ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
}

const line = (value: unknown): string => `${JSON.stringify(value)}\n`;

function parsedOrText(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** Acks by message id (an event's messageId, an alert's id) on the ack topic of the gateway that published it. */
function acknowledge(client: mqtt.MqttClient, topic: string, payload: Buffer): void {
  let id: unknown;
  try {
    const body = JSON.parse(payload.toString('utf8')) as { messageId?: unknown; id?: unknown };
    id = body.messageId ?? body.id;
  } catch {
    return;
  }
  if (typeof id !== 'string') return;
  const ackTopic = senderTopics(topic)?.ack;
  if (!ackTopic) return;
  const ack: AckPayload = { schema: ACK_SCHEMA_ID, ids: [id] };
  client.publish(ackTopic, JSON.stringify(ack), { qos: 1, properties: { contentType: 'application/json' } });
}

function saveEvidence(
  dir: string,
  assemblies: Map<string, Assembly>,
  p: Record<string, string>,
  payload: Buffer,
  io: { out: (s: string) => void; err: (s: string) => void },
  json: boolean,
): void {
  const id = p.messageId;
  const part = Number(p.part);
  const total = Number(p.parts);
  if (!id || !(part >= 1) || !(total >= part)) return;
  let a = assemblies.get(id);
  // A part 1 restarts the image: after a reconnect the gateway sends every part again.
  if (!a || part === 1) {
    a = { parts: new Array<Buffer>(total), received: 0, total, sha256: p.sha256 ?? '' };
    assemblies.set(id, a);
  }
  if (!a.parts[part - 1]) a.received++;
  a.parts[part - 1] = Buffer.from(payload);
  if (a.received < a.total) return;
  assemblies.delete(id);
  const image = Buffer.concat(a.parts);
  const sha = createHash('sha256').update(image).digest('hex');
  if (sha !== a.sha256) {
    io.err(`edgepatrol tail: evidence ${id}: sha256 ${sha} does not match ${a.sha256}; not saved\n`);
    return;
  }
  const file = join(dir, `${id}.jpg`);
  writeFileSync(file, image);
  io.out(
    json
      ? line({ kind: 'saved', messageId: id, file, bytes: image.length, parts: a.total })
      : `saved evidence ${file} (${image.length} bytes, ${a.total} part(s), sha256 ok)\n`,
  );
}
