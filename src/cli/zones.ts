import { EXIT, reportError, UsageError, type Command, type CommandIo } from './io.js';

/** The sub-commands of `zones`, one file each. */
const SUBCOMMANDS: Record<string, () => Promise<Command>> = {
  set: async () => (await import('./zones-set.js')).zonesSetCommand,
};

const help = `usage: edgepatrol zones <sub-command> [options]

  set <camera> <zone> "x,y x,y …"   write a zone's outline into the config and a preview JPEG beside it

edgepatrol zones <sub-command> --help shows its options.
exit codes: 0 done, 1 bad usage or a failure, 2 invalid config, 6 zone written but no preview (no frame)
`;

/** `edgepatrol zones <sub-command>`: the sub-command is the first argument that names one. */
export async function zonesCommand(argv: string[], io: CommandIo = process): Promise<number> {
  const at = argv.findIndex((a) => Object.hasOwn(SUBCOMMANDS, a));
  if (at === -1) {
    if (argv.includes('--help') || argv.includes('-h')) {
      io.stdout.write(help);
      return EXIT.ok;
    }
    const stray = argv.find((a) => !a.startsWith('-'));
    return reportError(
      io,
      'zones',
      new UsageError(stray ? `unknown sub-command 'zones ${stray}'` : 'a sub-command is required: zones set'),
      help,
    );
  }
  const command = await SUBCOMMANDS[argv[at]!]!();
  return command([...argv.slice(0, at), ...argv.slice(at + 1)], io);
}
