import { join, resolve } from 'node:path';
import { readStatus, STATUS_FILE, STATUS_INTERVAL_MS, type AgentStatus, type CameraStatus } from '../agent/stats.js';
import { loadConfig } from '../config/index.js';
import { EXIT, parseCommandArgs, reportError, UsageError, writeJson, type CommandIo } from './io.js';

const help = `usage: edgepatrol status --config <file> [--json]

Shows what the running agent of this config reports about each camera: stream state (and why), decoded,
detected and skipped frames per second, the share of frames with motion, and detector time. The agent
rewrites {gateway.dataDir}/${STATUS_FILE} every ${STATUS_INTERVAL_MS / 1000} s; rates cover that interval.
  --config  the gateway's YAML config (the one given to edgepatrol run)
  --json    the status file as the agent wrote it, on one line: {"schema","gatewayId","pid","version","startedAt",
            "writtenAt","windowSeconds","cameras":[{"id","state","reason","since","decodeFps","detectFps",
            "skippedFps","motionRatio","inferenceMs","totals":{…}}],"outbox":{…}}; a stale status is still
            printed, with the warning on stderr and exit code 1
exit codes: 0 the agent is running, 1 bad usage, no status or a stale one (agent not running), 2 invalid config
`;

/** A status this much older than the write interval means the agent is not writing it any more. */
const STALE_AFTER_MS = 3 * STATUS_INTERVAL_MS;

const options = {
  config: { type: 'string', short: 'c' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

function parse(argv: string[]) {
  const { values } = parseCommandArgs(argv, options, { positionals: false });
  if (values.help) return { help: true as const };
  if (!values.config) throw new UsageError('--config <file> is required');
  return { help: false as const, config: values.config, json: values.json ?? false };
}

export async function statusCommand(argv: string[], io: CommandIo = process): Promise<number> {
  let args: ReturnType<typeof parse>;
  let dataDir: string;
  try {
    args = parse(argv);
    if (args.help) {
      io.stdout.write(help);
      return EXIT.ok;
    }
    dataDir = resolve(loadConfig(args.config).gateway.dataDir);
  } catch (err) {
    return reportError(io, 'status', err, help);
  }
  const file = join(dataDir, STATUS_FILE);
  let status: AgentStatus;
  try {
    status = readStatus(dataDir);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot be read: ${(err as Error).message}`;
    io.stderr.write(
      `edgepatrol status: ${file} ${why}; the agent of ${args.config} is not running, or started less than ` +
        `${STATUS_INTERVAL_MS / 1000} s ago (start it with: edgepatrol run --config ${args.config}, or systemctl start edgepatrol)\n`,
    );
    return EXIT.failed;
  }
  if (args.json) writeJson(io, status);
  else io.stdout.write(formatStatus(status, Date.now()));
  if (!isFresh(status)) {
    io.stderr.write(
      `edgepatrol status: ${file} was last written ${ago(Date.parse(status.writtenAt), Date.now())} ago; ` +
        `the agent (pid ${status.pid}) seems to have stopped\n`,
    );
    return EXIT.failed;
  }
  return EXIT.ok;
}

function isFresh(status: AgentStatus): boolean {
  return Date.now() - Date.parse(status.writtenAt) <= STALE_AFTER_MS && alive(status.pid);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the agent runs as another user (systemd) and is alive.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ago(ts: number, now: number): string {
  const s = Math.max(0, Math.round((now - ts) / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}

/** The human view: one header line, one row per camera. */
export function formatStatus(status: AgentStatus, now: number): string {
  const head =
    `gateway ${status.gatewayId} · agent pid ${status.pid} · version ${status.version} · up ${ago(Date.parse(status.startedAt), now)}` +
    ` · written ${ago(Date.parse(status.writtenAt), now)} ago · rates over ${status.windowSeconds} s\n`;
  const cols: [string, (c: CameraStatus) => string][] = [
    ['camera', (c) => c.id],
    ['state', (c) => c.state],
    ['for', (c) => ago(Date.parse(c.since), now)],
    ['decode fps', (c) => c.decodeFps.toFixed(1)],
    ['detect fps', (c) => c.detectFps.toFixed(1)],
    ['skipped fps', (c) => c.skippedFps.toFixed(1)],
    ['motion', (c) => `${Math.round(c.motionRatio * 100)} %`],
    ['infer ms', (c) => c.inferenceMs.toFixed(1)],
    ['events', (c) => String(c.totals.events)],
    ['reason', (c) => c.reason ?? ''],
  ];
  const rows = [cols.map(([h]) => h), ...status.cameras.map((c) => cols.map(([, f]) => f(c)))];
  const widths = cols.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return (
    head +
    rows
      .map((r) =>
        r
          .map((v, i) => (i === r.length - 1 ? v : v.padEnd(widths[i]!)))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') +
    '\n'
  );
}
