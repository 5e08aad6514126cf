import { loadConfig } from '../config/index.js';
import type { OnvifDevice } from '../onvif/index.js';
import { DEFAULT_CONFIG, EXIT, parseCommandArgs, UsageError, writeJson, type CommandIo } from './io.js';
import { cameraById, deviceOf, positionalArgs, progress, ptzProfile, reportCameraError, secondsOption } from './onvif-common.js';

const help = `usage: edgepatrol camera goto <camera> <preset|home> [--config FILE] [--timeout S] [--no-wait] [--json]

Turns a PTZ camera to one of its presets (by name or token, as \`edgepatrol camera presets\` lists them), or to its
home position, and waits until it has arrived: by the camera's move status where it reports one, else by its
position, else by time (2 s at least). Then \`edgepatrol camera snapshot\` shows the view, and
\`edgepatrol zones set … --preset\` draws its zones.
While the agent runs, it notices the move and leaves the camera alone for a while.
  --config FILE     the gateway's YAML config (default ${DEFAULT_CONFIG})
  --timeout S       seconds each request may take (default 5); the move itself may take up to 30 s
  --no-wait         return once the camera has accepted the move
  --json            one JSON document: {"camera","preset":{"token","name"},"arrived","by","elapsedMs"}
exit codes: 0 arrived (or accepted, with --no-wait), 1 bad usage, an unknown preset, or not arrived within 30 s,
            2 invalid config, 8 authentication failed, 9 the camera did not answer
`;

const options = {
  config: { type: 'string', short: 'c' },
  timeout: { type: 'string' },
  'no-wait': { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

const MOVE_TIMEOUT_MS = 30_000;

/** `camera goto`: `argv` are its arguments, the sub-command's name taken out. */
export async function cameraGotoCommand(argv: string[], io: CommandIo = process): Promise<number> {
  try {
    const { values, positionals } = parseCommandArgs(argv, options, { positionals: true });
    if (values.help) {
      io.stdout.write(help);
      return EXIT.ok;
    }
    const [id, wanted] = positionalArgs(positionals, 2, '<camera> <preset|home>: edgepatrol camera goto <camera> <preset|home>') as [
      string,
      string,
    ];
    const timeout = secondsOption(values.timeout, '--timeout', 5);
    const file = values.config ?? DEFAULT_CONFIG;
    const camera = cameraById(loadConfig(file).cameras, id, file);
    const device = deviceOf(camera, file, timeout * 1000);
    const profile = await ptzProfile(device, camera);
    const say = progress(io, Boolean(values.json));
    const presets = await device.getPresets(profile);
    const home = wanted === 'home';
    const preset = home ? undefined : (presets.find((p) => p.name === wanted) ?? presets.find((p) => p.token === wanted));
    if (!home && !preset) {
      const names = presets.map((p) => (p.name === p.token ? p.name : `${p.name} (${p.token})`)).join(', ') || 'none';
      throw new UsageError(`camera ${id} has no preset '${wanted}' (presets: ${names}; or home)`);
    }
    const label = preset ? preset.name : 'home';
    const started = Date.now();
    if (preset) await device.gotoPreset(profile, preset.token);
    else await device.gotoHomePosition(profile);
    let result = { arrived: false, by: 'accepted' as string, elapsedMs: Date.now() - started };
    if (!values['no-wait']) {
      say(`camera ${id} is moving to ${label} …`);
      // Home has no stored position to compare with: its move status, else time.
      result = preset
        ? await device.waitUntilArrived(profile, preset.token, { timeoutMs: MOVE_TIMEOUT_MS })
        : await waitHome(device, profile, MOVE_TIMEOUT_MS);
    }
    if (values.json) {
      writeJson(io, { camera: id, preset: preset ? { token: preset.token, name: preset.name } : { token: null, name: 'home' }, ...result });
    } else if (values['no-wait']) {
      io.stdout.write(`camera ${id}: move to ${label} accepted\n`);
    } else if (result.arrived) {
      const how =
        result.by === 'move-status'
          ? 'its move status is IDLE'
          : result.by === 'position'
            ? 'its position matches the preset'
            : 'by time: it reports neither move status nor position';
      io.stdout.write(`camera ${id} is at ${label} after ${(result.elapsedMs / 1000).toFixed(1)} s (${how})\n`);
    }
    if (!values['no-wait'] && !result.arrived) {
      io.stderr.write(
        `edgepatrol camera goto: camera ${id} did not reach ${label} within ${MOVE_TIMEOUT_MS / 1000} s (is something else moving it?)\n`,
      );
      return EXIT.failed;
    }
    return EXIT.ok;
  } catch (err) {
    return reportCameraError(io, 'camera goto', err, help);
  }
}

/** Until the camera says IDLE (not before 1 s, cameras say IDLE before they start), else 2 s of time. */
async function waitHome(
  device: OnvifDevice,
  profile: string,
  timeoutMs: number,
): Promise<{ arrived: boolean; by: string; elapsedMs: number }> {
  const start = Date.now();
  for (;;) {
    const elapsedMs = Date.now() - start;
    const status = await device.getStatus(profile);
    const state = status.moveStatus?.panTilt;
    if (state === undefined) {
      await new Promise((r) => setTimeout(r, Math.max(0, 2000 - elapsedMs)));
      return { arrived: true, by: 'time', elapsedMs: Date.now() - start };
    }
    if (state === 'IDLE' && elapsedMs >= 1000) return { arrived: true, by: 'move-status', elapsedMs };
    if (elapsedMs > timeoutMs) return { arrived: false, by: 'move-status', elapsedMs };
    await new Promise((r) => setTimeout(r, 250));
  }
}
