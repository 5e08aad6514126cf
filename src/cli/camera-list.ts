import { loadConfig, type CameraConfig } from '../config/index.js';
import { rtspAddress } from '../ingest/reachability.js';
import { DEFAULT_CONFIG, EXIT, parseCommandArgs, reportError, writeJson, type CommandIo } from './io.js';

const help = `usage: edgepatrol camera list [--config <file>] [--json]

Lists the cameras of the config: id, name, source (rtsp host:port, or the video file), detect size and rate,
how many zones and PTZ presets, and the ONVIF host. Never prints a user name or password.
  --config FILE     the gateway's YAML config (default ${DEFAULT_CONFIG}; see docs/config.md)
  --json            one JSON document: {"config","cameras":[{"id","name","source":{"kind":"rtsp","host","port"} or
                    {"kind":"file","path"},"detect":{"width","height","fps"},"zones","presets","onvif":host or null}]}
exit codes: 0 done, 1 bad usage, 2 invalid config
`;

const options = {
  config: { type: 'string', short: 'c' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type SourceSummary = { kind: 'rtsp'; host: string; port: number } | { kind: 'file'; path: string };

/** Where a camera's frames come from, without credentials: host and port of an RTSP url, or the file. */
export function sourceSummary(camera: CameraConfig): SourceSummary {
  if (camera.source.file !== undefined) return { kind: 'file', path: camera.source.file };
  const url = camera.source.detectUrl ?? camera.source.url!;
  const address = rtspAddress(url);
  return { kind: 'rtsp', host: address?.host ?? '?', port: address?.port ?? 0 };
}

/** The host (and port, when given) of a camera's ONVIF url, without credentials. */
export function onvifHost(camera: CameraConfig): string | null {
  if (!camera.onvif) return null;
  try {
    return new URL(camera.onvif.url).host;
  } catch {
    return null;
  }
}

function summary(camera: CameraConfig) {
  return {
    id: camera.id,
    name: camera.name,
    source: sourceSummary(camera),
    detect: { width: camera.detect.width, height: camera.detect.height, fps: camera.detect.fps },
    zones: camera.zones.length,
    presets: camera.presets?.length ?? 0,
    onvif: onvifHost(camera),
  };
}

function table(rows: ReturnType<typeof summary>[]): string {
  const cells = [
    ['id', 'name', 'source', 'detect', 'zones', 'presets', 'onvif'],
    ...rows.map((r) => [
      r.id,
      r.name,
      r.source.kind === 'rtsp'
        ? `rtsp ${r.source.host.includes(':') ? `[${r.source.host}]` : r.source.host}:${r.source.port}`
        : `file ${r.source.path}`,
      `${r.detect.width}×${r.detect.height} @ ${r.detect.fps} fps`,
      String(r.zones),
      String(r.presets),
      r.onvif ?? '-',
    ]),
  ];
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
  return `${cells.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n')}\n`;
}

/** `camera list`: `argv` are its arguments, the sub-command's name taken out. */
export async function cameraListCommand(argv: string[], io: CommandIo = process): Promise<number> {
  try {
    const { values } = parseCommandArgs(argv, options, { positionals: false });
    if (values.help) {
      io.stdout.write(help);
      return EXIT.ok;
    }
    const file = values.config ?? DEFAULT_CONFIG;
    const config = loadConfig(file);
    const rows = config.cameras.map(summary);
    if (values.json) writeJson(io, { config: file, cameras: rows });
    else io.stdout.write(table(rows));
    return EXIT.ok;
  } catch (err) {
    return reportError(io, 'camera list', err, help);
  }
}
