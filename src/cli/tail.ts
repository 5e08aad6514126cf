import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { safeUrl } from '../log.js';

const help = `usage: edgepatrol tail [--url mqtt://host:port] [--prefix edgepatrol] [--topic filter] [--count N] [--timeout S]

A reference subscriber: prints every message under {prefix}/# as one line, "topic payload".
  --url       broker URL (default mqtt://127.0.0.1:1883)
  --prefix    topic prefix to follow (default edgepatrol)
  --topic     a topic filter instead of {prefix}/#
  --count     exit 0 after N event messages
  --timeout   exit 1 if --count is not reached within S seconds
`;

export async function tailCommand(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({ args: argv, options: {
      url: { type: 'string', default: 'mqtt://127.0.0.1:1883' },
      prefix: { type: 'string', default: 'edgepatrol' },
      topic: { type: 'string' },
      count: { type: 'string' },
      timeout: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    } }).values;
  } catch (err) {
    process.stderr.write(`edgepatrol tail: ${(err as Error).message}\n\n${help}`);
    return 1;
  }
  if (args.help) { process.stdout.write(help); return 0; }
  const want = args.count === undefined ? Infinity : Number(args.count);
  const timeoutS = args.timeout === undefined ? Infinity : Number(args.timeout);
  if (!(want > 0) || !(timeoutS > 0)) { process.stderr.write(`edgepatrol tail: --count and --timeout take positive numbers\n`); return 1; }
  const filter = args.topic ?? `${args.prefix}/#`;
  const client = mqtt.connect(args.url, { protocolVersion: 5, reconnectPeriod: 1000, connectTimeout: 5000 });
  let events = 0;
  return await new Promise<number>((resolve) => {
    const finish = (code: number): void => { clearTimeout(timer); client.end(true, () => resolve(code)); };
    const timer = Number.isFinite(timeoutS)
      ? setTimeout(() => { process.stderr.write(`edgepatrol tail: ${events} of ${want} events within ${timeoutS} s\n`); finish(1); }, timeoutS * 1000)
      : undefined;
    client.on('connect', () => {
      process.stderr.write(`edgepatrol tail: subscribed to ${filter} on ${safeUrl(args.url)}\n`);
      client.subscribe(filter, { qos: 1 });
    });
    client.on('error', (err) => process.stderr.write(`edgepatrol tail: ${safeUrl(args.url)}: ${err.message}\n`));
    client.on('message', (topic, payload, packet) => {
      const retained = packet.retain ? ' (retained)' : '';
      process.stdout.write(`${topic}${retained} ${payload.toString('utf8')}\n`);
      if (topic.includes('/event/') && ++events >= want) finish(0);
    });
    const stop = (): void => finish(0);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
