import { addCamera } from '../config/index.js';
import { chooseStreams, OnvifDevice, type Profile } from '../onvif/index.js';
import { safeUrl } from '../log.js';
import { DEFAULT_CONFIG, EXIT, parseCommandArgs, UsageError, writeJson, type CommandIo } from './io.js';
import {
  positionalArgs,
  progress,
  readableByOthers,
  readPasswordFile,
  reportCameraError,
  secondsOption,
  withCredentials,
} from './onvif-common.js';

const help = `usage: edgepatrol camera add <host[:port]> --user <u> --password-file <f> [--id ID] [--name NAME]
                           [--config FILE] [--timeout S] [--json]

Asks the camera over ONVIF what it offers and writes it into the config as a new camera:
  1. its clock (without a password; requests are then signed in the camera's own time, which may be wrong),
  2. maker, model and serial number (this checks the user name and password),
  3. its media profiles: the smallest H.264 stream at least 320 px wide is decoded for detection (source.detectUrl),
     the largest is grabbed for evidence (source.url); their stream addresses, with the credentials in them,
  4. whether a profile can be moved (PTZ): then its presets can get their own zones (edgepatrol camera presets).
The camera is appended to the config's cameras with its onvif section (url, user, password, profile tokens); the
rest of the file (comments, order) stays as it was, and the file is written with mode 600 (it holds the password).
  <host[:port]>     the camera's address, e.g. 192.0.2.64 or 192.0.2.64:8080 (as \`edgepatrol discover\` lists it),
                    or its device service URL http://host[:port]/onvif/device_service
  --user U          ONVIF user of the camera (an operator or administrator account)
  --password-file F a file whose first line is the password (it is never printed or logged)
  --id ID           the camera's id in the config and in events (default cam-<address>); an id that is already
                    there is refused
  --name NAME       the name people know the camera by (default: the id)
  --config FILE     the gateway's YAML config (default ${DEFAULT_CONFIG})
  --timeout S       seconds each request to the camera may take (default 5)
  --json            one JSON document: {"config","camera":{"id","name","onvif","detect","evidence","ptz"},
                    "device":{"manufacturer","model","serialNumber","firmwareVersion"},"clockOffsetSeconds","auth"}
exit codes: 0 added, 1 bad usage or a failure, 2 the resulting config would be invalid (nothing written),
            8 authentication failed, 9 the camera did not answer
`;

const options = {
  user: { type: 'string', short: 'u' },
  'password-file': { type: 'string' },
  id: { type: 'string' },
  name: { type: 'string' },
  config: { type: 'string', short: 'c' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** A camera id from its address: cam-192-0-2-64, cam-192-0-2-64-8080. */
export function idFromAddress(address: string): string {
  const host = address.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '');
  return `cam-${host.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '')}`;
}

/** Detection size: the sub-stream's aspect at most 640 wide, both even (the frames are YUV 4:2:0). */
export function detectSize(p: Profile): { width: number; height: number } | undefined {
  if (!p.width || !p.height) return undefined;
  const width = Math.min(640, p.width - (p.width % 2));
  const height = Math.max(64, Math.round((width * p.height) / p.width / 2) * 2);
  return { width, height };
}

const describe = (p: Profile): string => `${p.width ?? '?'}×${p.height ?? '?'} ${p.encoding ?? '?'} (profile ${p.token})`;

/** `camera add`: `argv` are its arguments, the sub-command's name taken out. */
export async function cameraAddCommand(argv: string[], io: CommandIo = process): Promise<number> {
  let json = false;
  try {
    const { values, positionals } = parseCommandArgs(argv, options, { positionals: true });
    if (values.help) {
      io.stdout.write(help);
      return EXIT.ok;
    }
    json = Boolean(values.json);
    const [address] = positionalArgs(positionals, 1, '<host[:port]>: edgepatrol camera add <host[:port]> --user U --password-file F') as [
      string,
    ];
    if (!values.user) throw new UsageError('--user is required (the camera’s ONVIF user)');
    if (!values['password-file']) throw new UsageError('--password-file is required (a file with the password on its first line)');
    const timeout = secondsOption(values.timeout, '--timeout', 5);
    const file = values.config ?? DEFAULT_CONFIG;
    const password = readPasswordFile(values['password-file']);
    const say = progress(io, json);
    if (readableByOthers(values['password-file']))
      say(`note: ${values['password-file']} can be read by other users; chmod 600 it (or delete it once the camera is added)`);

    const device = new OnvifDevice({ address, user: values.user, password, timeoutMs: timeout * 1000 });
    say(`asking ${device.camera} for its clock …`);
    const { offsetMs } = await device.getSystemDateAndTime();
    if (Math.abs(offsetMs) > 5000)
      say(
        `the camera's clock is ${Math.round(offsetMs / 1000)} s off this gateway's: requests are signed in its time; set NTP on the camera`,
      );
    const info = await device.getDeviceInformation();
    say(
      `${[info.manufacturer, info.model].filter(Boolean).join(' ') || 'camera'} (serial ${info.serialNumber ?? 'unknown'}): reading its media profiles …`,
    );
    const profiles = await device.getProfiles();
    const streams = chooseStreams(profiles);
    if (!streams) throw new Error(`camera ${device.camera} has no media profile: it offers no video stream over ONVIF`);
    const detectUri = await device.getStreamUri(streams.detect.token);
    const evidenceUri = streams.evidence.token === streams.detect.token ? detectUri : await device.getStreamUri(streams.evidence.token);
    const ptz = profiles.some((p) => p.ptz);

    const id = values.id ?? idFromAddress(address);
    const user = values.user;
    const source =
      streams.evidence.token === streams.detect.token
        ? { url: withCredentials(evidenceUri, user, password) }
        : { url: withCredentials(evidenceUri, user, password), detectUrl: withCredentials(detectUri, user, password) };
    const size = detectSize(streams.detect);
    const camera = {
      id,
      ...(values.name && { name: values.name }),
      source,
      ...(size && { detect: size }),
      onvif: {
        url: device.url.toString(),
        user,
        password,
        profile: streams.detect.token,
        ...(streams.evidence.token !== streams.detect.token && { evidenceProfile: streams.evidence.token }),
      },
    };
    addCamera(file, camera);

    const result = {
      config: file,
      camera: {
        id,
        name: values.name ?? id,
        onvif: device.url.toString(),
        detect: { ...streams.detect, uri: safeUrl(detectUri) },
        evidence: { ...streams.evidence, uri: safeUrl(evidenceUri) },
        ptz,
      },
      device: {
        manufacturer: info.manufacturer ?? null,
        model: info.model ?? null,
        serialNumber: info.serialNumber ?? null,
        firmwareVersion: info.firmwareVersion ?? null,
      },
      clockOffsetSeconds: Math.round(offsetMs / 100) / 10,
      auth: device.authMode,
    };
    if (json) {
      writeJson(io, result);
      return EXIT.ok;
    }
    io.stdout.write(
      [
        `added camera ${id} to ${file}`,
        `  device     ${[info.manufacturer, info.model].filter(Boolean).join(' ') || '?'}, serial ${info.serialNumber ?? '?'}, firmware ${info.firmwareVersion ?? '?'}`,
        `  detection  ${describe(streams.detect)}  ${safeUrl(detectUri)}`,
        `  evidence   ${describe(streams.evidence)}  ${safeUrl(evidenceUri)}`,
        `  ptz        ${ptz ? `yes: list its presets with \`edgepatrol camera presets ${id}\`` : 'no'}`,
        `  auth       ${device.authMode === 'digest' ? 'HTTP digest' : 'WS-Security'}, camera clock ${result.clockOffsetSeconds >= 0 ? '+' : ''}${result.clockOffsetSeconds} s`,
        `next: edgepatrol camera test ${id}${values.config ? ` --config ${file}` : ''}`,
        '',
      ].join('\n'),
    );
    return EXIT.ok;
  } catch (err) {
    return reportCameraError(io, 'camera add', err, help);
  }
}
