import { version } from '../version.js';

/** A sub-command: takes its own arguments, returns the process exit code. */
export type Command = (argv: string[]) => Promise<number>;

const commands: Record<string, { summary: string; load: () => Promise<Command> }> = {
  detect: { summary: 'run the detector on an image or video and print detections', load: async () => (await import('./detect.js')).detectCommand },
  run: { summary: 'run the agent with a config file', load: async () => (await import('./run.js')).runCommand },
  status: { summary: 'show per-camera state and rates of a running agent', load: async () => (await import('./status.js')).statusCommand },
  tail: { summary: 'reference subscriber: print (and ack) what gateways publish', load: async () => (await import('./tail.js')).tailCommand },
  outbox: { summary: 'inspect and replay the local event store (stats, ls, show, replay)', load: async () => (await import('./outbox.js')).outboxCommand },
  model: { summary: 'manage detector models (list, verify, add, quantize, compare, bench)', load: async () => (await import('./model.js')).modelCommand },
  camera: { summary: 'grab a frame and draw its zones, masks and lines (camera snapshot)', load: async () => (await import('./camera.js')).cameraCommand },
  rules: { summary: "replay a video through a camera's rules and print the events (rules test)", load: async () => (await import('./rules.js')).rulesCommand },
};

function usage(): string {
  const lines = [`edgepatrol ${version}`, '', 'usage: edgepatrol <command> [options]', '', 'commands:'];
  for (const [name, c] of Object.entries(commands)) lines.push(`  ${name.padEnd(10)} ${c.summary}`);
  lines.push('', 'edgepatrol <command> --help shows the options of a command. Every command that prints a table or a',
    'report takes --json: one JSON document (JSON lines for streams) on stdout, errors on stderr.');
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name ? 0 : 1;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(version + '\n');
    return 0;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`edgepatrol: unknown command '${name}'\n\n${usage()}\n`);
    return 1;
  }
  return (await command.load())(rest);
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    process.stderr.write(`edgepatrol: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
