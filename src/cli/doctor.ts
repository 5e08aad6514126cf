import { loadConfig } from '../config/index.js';
import { CAMERA_CHECKS, GATEWAY_CHECKS, type CheckResult, type CheckStatus, type DoctorContext } from './doctor-checks.js';
import { DEFAULT_CONFIG, EXIT, parseCommandArgs, reportError, UsageError, writeJson, type CommandIo } from './io.js';

const help = `usage: edgepatrol doctor [--config FILE] [--json] [--timeout S] [--models-dir DIR]

Checks what the agent needs, all at once, and prints each check as ok, warn or fail with one line of detail;
a check that is not ok gets a "fix:" line saying what to do:
  ffmpeg            installed, with the filters the frame sources use (select, zscale, scale)
  models            the model files the cameras use are there and match models/manifest.json (sha256)
  broker            connects with the config's mqtt url, user, password and TLS files, then disconnects
                    (its own client id: a running agent's session is left alone)
  disk              free space where the outbox and evidence live (fail below 64 MiB, warn below outbox.maxBytes)
  clock             NTP synchronized (timedatectl, else systemd-timesyncd's state; warn when unknown)
  outbox            the outbox file, read-only: SQLite's quick_check, events waiting, the oldest one's age
  camera <id> reachable   RTSP: the url's host and port accept a TCP connection; file: it is readable
  camera <id> onvif       cameras with onvif: not checked yet (warn)
The checks run at the same time; progress goes to stderr while they take longer than a second.
  --config FILE     the gateway's YAML config (default ${DEFAULT_CONFIG})
  --timeout S       how long each check may take, in seconds (default 5)
  --models-dir DIR  folder with manifest.json (default: the project's models/)
  --json            one JSON document: {"config","checks":[{"check","camera","status","detail","fix"}],
                    "ok","warn","fail"} (camera null for gateway checks, fix null when ok)
exit codes: 0 no check failed (warnings allowed), 1 bad usage, 2 invalid config, 7 at least one check failed
`;

const options = {
  config: { type: 'string', short: 'c' },
  timeout: { type: 'string' },
  'models-dir': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

interface Reported extends CheckResult {
  check: string;
  camera: string | null;
}

/** `check` run with a deadline: a check that has not answered by then fails, saying so. */
async function withDeadline(check: () => Promise<CheckResult>, ms: number): Promise<CheckResult> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<CheckResult>((resolve) => {
    // A little after the check's own timeout, so the check can say what it was waiting for.
    timer = setTimeout(
      () =>
        resolve({
          status: 'fail',
          detail: `no answer within ${ms / 1000} s`,
          fix: 'run it again; if it repeats, look at this part by hand',
        }),
      ms + 1000,
    );
  });
  try {
    return await Promise.race([
      check().catch((err: unknown): CheckResult => ({ status: 'fail', detail: (err as Error).message, fix: 'see the detail' })),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const MARK: Record<CheckStatus, string> = { ok: 'ok  ', warn: 'warn', fail: 'FAIL' };

function label(r: Reported): string {
  return r.camera === null ? r.check : `camera ${r.camera} ${r.check}`;
}

export async function doctorCommand(argv: string[], io: CommandIo = process): Promise<number> {
  let ctx: DoctorContext;
  let json: boolean;
  try {
    const { values } = parseCommandArgs(argv, options, { positionals: false });
    if (values.help) {
      io.stdout.write(help);
      return EXIT.ok;
    }
    const timeout = values.timeout === undefined ? 5 : Number(values.timeout);
    if (!(timeout > 0)) throw new UsageError(`--timeout must be a positive number of seconds, got '${values.timeout}'`);
    const configFile = values.config ?? DEFAULT_CONFIG;
    json = values.json ?? false;
    ctx = { config: loadConfig(configFile), configFile, modelsDir: values['models-dir'], timeoutMs: timeout * 1000 };
  } catch (err) {
    return reportError(io, 'doctor', err, help);
  }

  const jobs: { check: string; camera: string | null; run: () => Promise<CheckResult> }[] = [
    ...GATEWAY_CHECKS.map((c) => ({ check: c.name, camera: null, run: () => c.run(ctx) })),
    ...ctx.config.cameras.flatMap((cam) =>
      CAMERA_CHECKS.filter((c) => c.applies?.(cam) ?? true).map((c) => ({ check: c.name, camera: cam.id, run: () => c.run(cam, ctx) })),
    ),
  ];
  const pending = new Set(jobs.map((j) => (j.camera === null ? j.check : `camera ${j.camera} ${j.check}`)));
  const progress = json ? undefined : setInterval(() => io.stderr.write(`doctor: still checking ${[...pending].join(', ')}\n`), 1000);
  let results: Reported[];
  try {
    results = await Promise.all(
      jobs.map(async (j) => {
        const result = await withDeadline(j.run, ctx.timeoutMs);
        const reported = { check: j.check, camera: j.camera, ...result };
        pending.delete(label(reported));
        return reported;
      }),
    );
  } finally {
    clearInterval(progress);
  }

  const count = (s: CheckStatus): number => results.filter((r) => r.status === s).length;
  if (json) {
    writeJson(io, {
      config: ctx.configFile,
      checks: results.map((r) => ({ check: r.check, camera: r.camera, status: r.status, detail: r.detail, fix: r.fix ?? null })),
      ok: count('ok'),
      warn: count('warn'),
      fail: count('fail'),
    });
  } else {
    const width = Math.max(...results.map((r) => label(r).length));
    for (const r of results) {
      io.stdout.write(`${MARK[r.status]}  ${label(r).padEnd(width)}  ${r.detail}\n`);
      if (r.status !== 'ok' && r.fix) io.stdout.write(`      ${' '.repeat(width)}  fix: ${r.fix}\n`);
    }
    io.stdout.write(`${count('ok')} ok, ${count('warn')} warn, ${count('fail')} fail\n`);
  }
  return count('fail') ? EXIT.checkFailed : EXIT.ok;
}
