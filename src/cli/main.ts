import { version } from '../version.js';
import { EXIT, reportError, UsageError, type Command, type CommandIo } from './io.js';

const commands: Record<string, { summary: string; load: () => Promise<Command> }> = {
  detect: {
    summary: 'run the detector on an image or video and print detections',
    load: async () => (await import('./detect.js')).detectCommand,
  },
  run: { summary: 'run the agent with a config file', load: async () => (await import('./run.js')).runCommand },
  status: { summary: 'show per-camera state and rates of a running agent', load: async () => (await import('./status.js')).statusCommand },
  tail: {
    summary: 'reference subscriber: print (and ack) what gateways publish',
    load: async () => (await import('./tail.js')).tailCommand,
  },
  task: {
    summary: 'send a task to a gateway and follow its states; list the task inbox (task send, task list)',
    load: async () => (await import('./task.js')).taskCommand,
  },
  patrol: {
    summary: 'run one patrol round of a PTZ camera on the agent and watch it: states, stops, events (patrol run)',
    load: async () => (await import('./patrol.js')).patrolCommand,
  },
  outbox: {
    summary: 'inspect and replay the local event store (stats, ls, show, replay)',
    load: async () => (await import('./outbox.js')).outboxCommand,
  },
  model: {
    summary: 'manage detector models (list, verify, add, quantize, compare, bench)',
    load: async () => (await import('./model.js')).modelCommand,
  },
  discover: {
    summary: 'find ONVIF cameras on the local network: address, port, maker, model, serial',
    load: async () => (await import('./discover.js')).discoverCommand,
  },
  camera: {
    summary: 'add an ONVIF camera, test it, list and move to its presets; list cameras, snapshot (camera add, …)',
    load: async () => (await import('./camera.js')).cameraCommand,
  },
  zones: {
    summary: "write a zone's outline into the config and draw a preview (zones set)",
    load: async () => (await import('./zones.js')).zonesCommand,
  },
  doctor: {
    summary: 'check ffmpeg, models, broker, disk, clock, cameras and outbox, each with a fix when not ok',
    load: async () => (await import('./doctor.js')).doctorCommand,
  },
  rules: {
    summary: "replay a video through a camera's rules and print the events (rules test)",
    load: async () => (await import('./rules.js')).rulesCommand,
  },
};

function usage(): string {
  const lines = [`edgepatrol ${version}`, '', 'usage: edgepatrol <command> [options]', '', 'commands:'];
  for (const [name, c] of Object.entries(commands)) lines.push(`  ${name.padEnd(10)} ${c.summary}`);
  lines.push(
    '',
    'edgepatrol <command> --help shows the options and exit codes of a command. Every command that prints a table or a',
    'report takes --json: one JSON document (JSON lines for streams) on stdout, errors on stderr.',
    'exit codes: 0 done, 1 bad usage or a failure, 2 invalid config, 3 model missing or refused, 4 broker unreachable',
    '            or refusing (each command lists the ones it uses; docs/cli.md)',
  );
  return `${lines.join('\n')}\n`;
}

async function main(argv: string[], io: CommandIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--help' || name === '-h' || name === 'help') {
    io.stdout.write(usage());
    return EXIT.ok;
  }
  if (name === '--version' || name === '-v') {
    io.stdout.write(`${version}\n`);
    return EXIT.ok;
  }
  const command = name === undefined ? undefined : commands[name];
  if (!command) {
    return reportError(io, '', new UsageError(name === undefined ? 'a command is required' : `unknown command '${name}'`), usage());
  }
  try {
    return await (await command.load())(rest, io);
  } catch (err) {
    // Commands report what they expect; this is the last word on anything else, still one line naming the command.
    return reportError(io, name!, err, '');
  }
}

process.exitCode = await main(process.argv.slice(2), process);
