import { loadConfig, type Config } from '../config/index.js';
import { loadManifest } from '../vision/index.js';
import { checkConfigAgainstModels } from './model-check.js';
import { Agent } from '../agent/index.js';
import { defaultComponents } from '../components/index.js';
import { createLogger } from '../log.js';
import { EXIT, parseCommandArgs, reportError, UsageError, type CommandIo } from './io.js';

const help = `usage: edgepatrol run --config <file> [--mqtt-url URL] [--models-dir DIR] [--log-level LEVEL]

Runs the agent: every camera of the config through the detector and its rules; events are stored in
{gateway.dataDir}/outbox.db and published to the broker. Stops cleanly on SIGINT/SIGTERM.
  --config      the gateway's YAML config (see docs/config.md)
  --mqtt-url    overrides mqtt.url of the config (e.g. for a local test broker)
  --models-dir  folder with manifest.json and the model files (default: the project's models/)
  --log-level   pino level: trace, debug, info, warn, error (default info)
exit codes: 0 stopped cleanly, 1 bad usage or a runtime failure, 2 invalid config, 3 model missing or refused
`;

const options = {
  config: { type: 'string', short: 'c' },
  'mqtt-url': { type: 'string' },
  'models-dir': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function parse(argv: string[]) {
  const { values } = parseCommandArgs(argv, options, { positionals: false });
  if (values.help) return { help: true as const };
  if (!values.config) throw new UsageError('--config <file> is required');
  return { ...values, help: false as const, config: values.config };
}

export async function runCommand(argv: string[], io: CommandIo = process): Promise<number> {
  let args: ReturnType<typeof parse>;
  let config: Config;
  try {
    args = parse(argv);
    if (args.help) {
      io.stdout.write(help);
      return EXIT.ok;
    }
    config = loadConfig(args.config);
    if (args['mqtt-url']) config = { ...config, mqtt: { ...config.mqtt, url: args['mqtt-url'] } };
    checkConfigAgainstModels(args.config, config, loadManifest(args['models-dir']));
  } catch (err) {
    return reportError(io, 'run', err, help);
  }

  const log = createLogger({ level: args['log-level'] });
  let agent: Agent;
  try {
    agent = await Agent.start({ config, log, modelsDir: args['models-dir'], components: defaultComponents() });
  } catch (err) {
    return reportError(io, 'run', err, help);
  }
  await new Promise<void>((resolveStop) => {
    const stop = (signal: string): void => {
      log.info({ signal }, 'stopping');
      resolveStop();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  await agent.stop();
  return EXIT.ok;
}
