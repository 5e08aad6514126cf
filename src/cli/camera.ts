import { EXIT, reportError, UsageError, type Command, type CommandIo } from './io.js';

/** The sub-commands of `camera`, one file each; a new one is one entry here and a line in the usage below. */
const SUBCOMMANDS: Record<string, () => Promise<Command>> = {
  snapshot: async () => (await import('./camera-snapshot.js')).cameraSnapshotCommand,
  list: async () => (await import('./camera-list.js')).cameraListCommand,
  add: async () => (await import('./camera-add.js')).cameraAddCommand,
  test: async () => (await import('./camera-test.js')).cameraTestCommand,
  presets: async () => (await import('./camera-presets.js')).cameraPresetsCommand,
  goto: async () => (await import('./camera-goto.js')).cameraGotoCommand,
};

const help = `usage: edgepatrol camera <sub-command> [options]

  snapshot <camera>   grab a frame and draw its zones, masks and lines (--annotate FILE, --out FILE)
  list                the cameras of a config: source, detect size and rate, zones, presets, ONVIF host
  add <host[:port]>   ask an ONVIF camera for its streams and add it to the config (--user, --password-file)
  test <camera>       ONVIF login, time to the first frame, frame rate, the detector on one frame
  presets <camera>    the PTZ presets the camera has stored, and which have zones in the config
  goto <camera> <p>   turn a PTZ camera to preset p (or home) and wait until it is there

edgepatrol camera <sub-command> --help shows its options.
exit codes: 0 done, 1 bad usage, no frame or a failure, 2 invalid config, 3 model manifest missing or refused,
            8 the camera refused the ONVIF login, 9 the camera did not answer
`;

/**
 * `edgepatrol camera <sub-command>`: the sub-command is the first argument that names one, so options may come
 * before it (`camera --config gw.yaml snapshot gate-3 …`, as the command has always accepted).
 */
export async function cameraCommand(argv: string[], io: CommandIo = process): Promise<number> {
  const at = argv.findIndex((a) => Object.hasOwn(SUBCOMMANDS, a));
  if (at === -1) {
    if (argv.includes('--help') || argv.includes('-h')) {
      io.stdout.write(help);
      return EXIT.ok;
    }
    const stray = argv.find((a) => !a.startsWith('-'));
    const message = stray
      ? `unknown sub-command 'camera ${stray}'`
      : `a sub-command is required: ${Object.keys(SUBCOMMANDS)
          .map((s) => `camera ${s}`)
          .join(', ')}`;
    return reportError(io, 'camera', new UsageError(message), help);
  }
  const command = await SUBCOMMANDS[argv[at]!]!();
  return command([...argv.slice(0, at), ...argv.slice(at + 1)], io);
}
