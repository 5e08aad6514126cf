import { discover, OnvifDevice, type DiscoveredCamera } from '../onvif/index.js';
import { EXIT, parseCommandArgs, reportError, UsageError, writeJson, type CommandIo } from './io.js';
import { progress, readPasswordFile, secondsOption } from './onvif-common.js';

const help = `usage: edgepatrol discover [--interface IF] [--timeout S] [--host H] [--user U --password-file F] [--json]

Finds ONVIF cameras on the local network (WS-Discovery: a multicast probe on UDP 3702) and lists each one's address,
ONVIF port, maker and model (from what the camera announces). With --user and --password-file each camera is also
asked for its serial number, which needs a login; a camera that refuses it says so in its row.
  --interface IF    the network interface (or one of its IPv4 addresses) the cameras are on, e.g. eth1; default:
                    the system's choice, which is the interface of the default route
  --timeout S       how long to wait for answers (default 3)
  --host H          ask one address directly (unicast) instead of the whole network: for cameras behind a router
  --port P          WS-Discovery port (default 3702)
  --user U, --password-file F   ONVIF login to read serial numbers (the password's first line of F)
  --json            one JSON document: {"cameras":[{"address","port","xaddrs","manufacturer","model","name",
                    "location","serialNumber","error"}]}
exit codes: 0 at least one camera answered, 1 bad usage or a failure, 9 no camera answered within --timeout
`;

const options = {
  interface: { type: 'string', short: 'i' },
  timeout: { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  user: { type: 'string', short: 'u' },
  'password-file': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

interface Row {
  address: string;
  port: number | null;
  xaddrs: string[];
  manufacturer: string | null;
  model: string | null;
  name: string | null;
  location: string | null;
  serialNumber: string | null;
  /** Why the serial number could not be read (with --user). */
  error: string | null;
}

function row(cam: DiscoveredCamera): Row {
  return {
    address: cam.address,
    port: cam.port ?? null,
    xaddrs: cam.xaddrs,
    manufacturer: cam.manufacturer ?? null,
    model: cam.model ?? null,
    name: cam.name ?? null,
    location: cam.location ?? null,
    serialNumber: null,
    error: null,
  };
}

/** The device service URL to log in at: the XAddr on the address that answered, else the first one. */
function xaddrOf(cam: DiscoveredCamera): string | undefined {
  return cam.xaddrs.find((x) => x.includes(`//${cam.address}`)) ?? cam.xaddrs[0];
}

export async function discoverCommand(argv: string[], io: CommandIo = process): Promise<number> {
  try {
    const { values } = parseCommandArgs(argv, options, { positionals: false });
    if (values.help) {
      io.stdout.write(help);
      return EXIT.ok;
    }
    const timeout = secondsOption(values.timeout, '--timeout', 3, 60);
    const port = values.port === undefined ? undefined : Number(values.port);
    if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536))
      throw new UsageError(`--port must be a port number 1..65535, got '${values.port}'`);
    if (Boolean(values.user) !== Boolean(values['password-file'])) throw new UsageError('--user and --password-file go together');
    const password = values['password-file'] ? readPasswordFile(values['password-file']) : undefined;
    const json = Boolean(values.json);
    const say = progress(io, json);
    const where = values.host ? values.host : (values.interface ?? 'the default interface');
    say(`probing ${where} for ${timeout} s …`);
    const found = await discover({
      timeoutMs: timeout * 1000,
      ...(values.interface && { interface: values.interface }),
      ...(values.host && { host: values.host }),
      ...(port && { port }),
    });
    const rows = found.map(row).sort((a, b) => a.address.localeCompare(b.address, 'en', { numeric: true }));
    if (values.user && rows.length) {
      say(`reading serial numbers from ${rows.length} camera${rows.length === 1 ? '' : 's'} …`);
      await Promise.all(
        found.map(async (cam) => {
          const r = rows.find((x) => x.address === cam.address && x.xaddrs === cam.xaddrs)!;
          const xaddr = xaddrOf(cam);
          if (!xaddr) {
            r.error = 'announced no device service address';
            return;
          }
          try {
            const info = await new OnvifDevice({ address: xaddr, user: values.user, password, timeoutMs: 5000 }).getDeviceInformation();
            r.serialNumber = info.serialNumber ?? null;
            r.manufacturer = info.manufacturer ?? r.manufacturer;
            r.model = info.model ?? r.model;
          } catch (err) {
            r.error = (err as Error).message;
          }
        }),
      );
    }
    if (json) writeJson(io, { cameras: rows });
    else if (rows.length) {
      const cells = [
        ['address', 'port', 'manufacturer', 'model', 'serial', 'name'],
        ...rows.map((r) => [
          r.address,
          String(r.port ?? '-'),
          r.manufacturer ?? '-',
          r.model ?? '-',
          r.serialNumber ?? (r.error ? 'error (below)' : values.user ? '-' : '(needs --user)'),
          r.name ?? '-',
        ]),
      ];
      const widths = cells[0]!.map((_, i) => Math.max(...cells.map((c) => c[i]!.length)));
      io.stdout.write(`${cells.map((c) => c.map((x, i) => (i === c.length - 1 ? x : x.padEnd(widths[i]!))).join('  ')).join('\n')}\n`);
      for (const r of rows) if (r.error) io.stdout.write(`${r.address}: ${r.error}\n`);
      io.stdout.write(`next: edgepatrol camera add <address[:port]> --user <u> --password-file <f>\n`);
    }
    if (rows.length === 0) {
      io.stderr.write(
        `edgepatrol discover: no camera answered on ${where} within ${timeout} s (check --interface, that the cameras are on and have ONVIF discovery enabled, or ask one directly with --host)\n`,
      );
      return EXIT.cameraUnreachable;
    }
    return EXIT.ok;
  } catch (err) {
    return reportError(io, 'discover', err, help);
  }
}
