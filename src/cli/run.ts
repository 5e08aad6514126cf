import { parseArgs } from 'node:util';
import { loadConfig, ConfigError, formatConfigError, type Config } from '../config/index.js';
import { loadManifest, ModelError } from '../vision/index.js';
import { checkConfigAgainstModels } from './model-check.js';
import { Agent } from '../agent/index.js';
import { defaultComponents } from '../components/index.js';
import { createLogger } from '../log.js';

const help = `usage: edgepatrol run --config <file> [--mqtt-url URL] [--models-dir DIR] [--log-level LEVEL]

Runs the agent: every camera of the config through the detector and its rules; events are stored in
{gateway.dataDir}/outbox.db and published to the broker. Stops cleanly on SIGINT/SIGTERM.
  --config      the gateway's YAML config (see docs/config.md)
  --mqtt-url    overrides mqtt.url of the config (e.g. for a local test broker)
  --models-dir  folder with manifest.json and the model files (default: the project's models/)
  --log-level   pino level: trace, debug, info, warn, error (default info)
exit codes: 0 stopped cleanly, 1 bad usage or a runtime failure, 2 invalid config, 3 model missing or refused
`;

export async function runCommand(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({ args: argv, options: {
      config: { type: 'string', short: 'c' },
      'mqtt-url': { type: 'string' },
      'models-dir': { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    } }).values;
  } catch (err) {
    process.stderr.write(`edgepatrol run: ${(err as Error).message}\n\n${help}`);
    return 1;
  }
  if (args.help) { process.stdout.write(help); return 0; }
  if (!args.config) { process.stderr.write(`edgepatrol run: --config <file> is required\n\n${help}`); return 1; }

  let config: Config;
  try {
    config = loadConfig(args.config);
    if (args['mqtt-url']) config = { ...config, mqtt: { ...config.mqtt, url: args['mqtt-url'] } };
    checkConfigAgainstModels(args.config, config, loadManifest(args['models-dir']));
  } catch (err) {
    if (err instanceof ConfigError) { process.stderr.write(formatConfigError(err) + '\n'); return 2; }
    if (err instanceof ModelError) { process.stderr.write(`edgepatrol run: ${err.message}\n`); return 3; }
    throw err;
  }

  const log = createLogger({ level: args['log-level'] });
  let agent: Agent;
  try {
    agent = await Agent.start({ config, log, modelsDir: args['models-dir'], components: defaultComponents() });
  } catch (err) {
    if (err instanceof ModelError) { process.stderr.write(`edgepatrol run: ${err.message}\n`); return 3; }
    throw err;
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
  return 0;
}
