import { loadConfig } from '../config/index.js';
import { DEFAULT_CONFIG, EXIT, parseCommandArgs, writeJson, type CommandIo } from './io.js';
import { cameraById, deviceOf, positionalArgs, ptzProfile, reportCameraError, secondsOption } from './onvif-common.js';

const help = `usage: edgepatrol camera presets <camera> [--config FILE] [--timeout S] [--json]

Lists the PTZ presets the camera has stored (token, name, position), and which of them have a view (zones and rules)
in the config. Give a preset zones with \`edgepatrol zones set <camera> <zone> "x,y …" --preset <name>\`; look
through it first with \`edgepatrol camera goto <camera> <preset>\`.
  --config FILE     the gateway's YAML config (default ${DEFAULT_CONFIG})
  --timeout S       seconds each request to the camera may take (default 5)
  --json            one JSON document: {"camera","profile","presets":[{"token","name","position":{"pan","tilt","zoom"},
                    "configured"}]}
exit codes: 0 done, 1 bad usage or a failure (e.g. the camera cannot move), 2 invalid config,
            8 authentication failed, 9 the camera did not answer
`;

const options = {
  config: { type: 'string', short: 'c' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

const num = (v: number | undefined): string => (v === undefined ? '-' : v.toFixed(3));

/** `camera presets`: `argv` are its arguments, the sub-command's name taken out. */
export async function cameraPresetsCommand(argv: string[], io: CommandIo = process): Promise<number> {
  try {
    const { values, positionals } = parseCommandArgs(argv, options, { positionals: true });
    if (values.help) {
      io.stdout.write(help);
      return EXIT.ok;
    }
    const [id] = positionalArgs(positionals, 1, '<camera>: edgepatrol camera presets <camera>') as [string];
    const timeout = secondsOption(values.timeout, '--timeout', 5);
    const file = values.config ?? DEFAULT_CONFIG;
    const camera = cameraById(loadConfig(file).cameras, id, file);
    const device = deviceOf(camera, file, timeout * 1000);
    const profile = await ptzProfile(device, camera);
    const presets = await device.getPresets(profile);
    const configured = new Set((camera.presets ?? []).flatMap((p) => [p.id, p.token].filter((x): x is string => x !== undefined)));
    const rows = presets.map((p) => ({ ...p, configured: configured.has(p.name) || configured.has(p.token) }));
    if (values.json) {
      writeJson(io, { camera: id, profile, presets: rows });
      return EXIT.ok;
    }
    if (rows.length === 0) {
      io.stdout.write(`camera ${id} has no presets stored; set them in the camera's own web page or app\n`);
      return EXIT.ok;
    }
    const cells = [
      ['token', 'name', 'pan', 'tilt', 'zoom', 'zones in config'],
      ...rows.map((r) => [
        r.token,
        r.name,
        num(r.position?.pan),
        num(r.position?.tilt),
        num(r.position?.zoom),
        r.configured ? 'yes' : 'no',
      ]),
    ];
    const widths = cells[0]!.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
    io.stdout.write(`${cells.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n')}\n`);
    return EXIT.ok;
  } catch (err) {
    return reportCameraError(io, 'camera presets', err, help);
  }
}
