/**
 * The checks `edgepatrol doctor` runs. Each is one entry in GATEWAY_CHECKS (once per gateway) or CAMERA_CHECKS
 * (once per camera it applies to): a new check, such as the ONVIF one once the client exists, is one entry there.
 * A check only reads: it never changes the config, the outbox or the broker's sessions.
 */
import { execFile } from 'node:child_process';
import { existsSync, statfsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import mqtt, { type IClientOptions } from 'mqtt';
import type { CameraConfig, Config } from '../config/index.js';
import { probeTcp, rtspAddress, unreadableFile } from '../ingest/reachability.js';
import { safeUrl } from '../log.js';
import { OnvifDevice, OnvifError } from '../onvif/index.js';
import { loadManifest, readVerifiedModel, resolveModel } from '../vision/index.js';
import { brokerProblem, configBrokerOptions } from './broker.js';
import { cameraModelName } from './model-check.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  status: CheckStatus;
  /** One line: what was found. */
  detail: string;
  /** When not ok: what to do, one line. */
  fix?: string;
}

export interface DoctorContext {
  config: Config;
  configFile: string;
  /** Folder with manifest.json (default: the project's models/). */
  modelsDir?: string;
  /** How long one check may take; a check also gets this as its own network timeout. */
  timeoutMs: number;
}

export interface GatewayCheck {
  name: string;
  run(ctx: DoctorContext): Promise<CheckResult>;
}

export interface CameraCheck {
  name: string;
  /** Whether the check is about this camera at all (default: every camera). */
  applies?(camera: CameraConfig): boolean;
  run(camera: CameraConfig, ctx: DoctorContext): Promise<CheckResult>;
}

const ok = (detail: string): CheckResult => ({ status: 'ok', detail });
const warn = (detail: string, fix: string): CheckResult => ({ status: 'warn', detail, fix });
const fail = (detail: string, fix: string): CheckResult => ({ status: 'fail', detail, fix });

/** Runs a program (argument vector, no shell); resolves its stdout, or rejects with the error (code ENOENT: not installed). */
function run(file: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
  });
}

/** The ffmpeg filters the frame sources use (src/ingest/ffmpeg.ts: rateFilter, scaleFilter). */
const NEEDED_FILTERS = ['select', 'zscale', 'scale'];

const ffmpegCheck: GatewayCheck = {
  name: 'ffmpeg',
  async run(ctx) {
    let version: string;
    let filters: string;
    try {
      version = (await run('ffmpeg', ['-hide_banner', '-version'], ctx.timeoutMs)).split('\n')[0] ?? '';
      filters = await run('ffmpeg', ['-hide_banner', '-filters'], ctx.timeoutMs);
    } catch (err) {
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      return fail(
        missing ? 'ffmpeg is not installed (not found on PATH)' : `ffmpeg does not run: ${(err as Error).message.split('\n')[0]}`,
        "install Debian's ffmpeg: apt-get install ffmpeg (scripts/setup.sh checks it)",
      );
    }
    const have = new Set(filters.split('\n').map((line) => line.trim().split(/\s+/)[1]));
    const absent = NEEDED_FILTERS.filter((f) => !have.has(f));
    const name = /^ffmpeg version (\S+)/.exec(version)?.[1] ?? 'unknown version';
    if (absent.length)
      return fail(
        `ffmpeg ${name} lacks the filter${absent.length === 1 ? '' : 's'} ${absent.join(', ')} the frame sources need`,
        "install Debian's ffmpeg, built with libzimg (apt-get install ffmpeg)",
      );
    return ok(`ffmpeg ${name} with ${NEEDED_FILTERS.join(', ')}`);
  },
};

const modelsCheck: GatewayCheck = {
  name: 'models',
  async run(ctx) {
    const fix = 'run scripts/setup.sh to rebuild the models, or restore the models folder from the release';
    try {
      const manifest = loadManifest(ctx.modelsDir);
      // With no cameras yet, the model they will get: model.name, else the manifest's default.
      const wanted = ctx.config.cameras.length
        ? ctx.config.cameras.map((cam) => cameraModelName(ctx.config, cam))
        : [ctx.config.model.name];
      const names = [...new Set(wanted.map((name) => resolveModel(manifest, name).name))];
      for (const name of names) await readVerifiedModel(resolveModel(manifest, name));
      return ok(`${names.join(', ')}: sha256 matches ${manifest.file}`);
    } catch (err) {
      return fail((err as Error).message, fix);
    }
  },
};

const brokerCheck: GatewayCheck = {
  name: 'broker',
  run(ctx) {
    const m = ctx.config.mqtt;
    const url = safeUrl(m.url);
    const tls = m.tls;
    let options: IClientOptions;
    try {
      options = configBrokerOptions(m, 'doctor', ctx.timeoutMs);
    } catch (err) {
      return Promise.resolve(fail((err as Error).message, 'check the paths under mqtt.tls'));
    }
    return new Promise((resolve) => {
      const started = Date.now();
      // Its own client id and a clean session: the agent's persistent session (and a running agent's
      // connection, which a second client with its id would take over) stay untouched.
      const client = mqtt.connect(m.url, options);
      let settled = false;
      const done = (result: CheckResult): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        client.end(true);
        resolve(result);
      };
      const timer = setTimeout(
        () =>
          done(fail(`no connection to ${url} within ${ctx.timeoutMs / 1000} s`, "check that the broker runs and the url's host and port")),
        ctx.timeoutMs,
      );
      client.on('connect', () => done(ok(`connected to ${url}${tls ? ' over TLS' : ''} in ${Date.now() - started} ms`)));
      client.on('error', (err) => {
        const problem = brokerProblem(url, err as Error & { code?: unknown }, tls !== undefined);
        done(fail(problem.detail, problem.fix));
      });
      client.on('close', () =>
        done(fail(`${url} closed the connection before accepting it`, "check the url's port is the broker's MQTT listener")),
      );
    });
  },
};

const MiB = 1024 * 1024;
/** Below this, SQLite commits and evidence writes start failing within minutes of a busy camera. */
const DISK_FAIL_BYTES = 64 * MiB;

/** The nearest folder of `path` that exists (the data folder is made at the agent's first start). */
function existingFolder(path: string): string {
  let dir = path;
  while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

const diskCheck: GatewayCheck = {
  name: 'disk',
  async run(ctx) {
    const dataDir = ctx.config.gateway.dataDir;
    const folder = existingFolder(dataDir);
    const fs = statfsSync(folder);
    const free = fs.bavail * fs.bsize;
    // The outbox (and its evidence) may grow to outbox.maxBytes: less free space than that means it cannot.
    const want = ctx.config.outbox.maxBytes;
    const detail = `${(free / MiB).toFixed(0)} MiB free where the outbox and evidence live (${folder})`;
    const fix = `free space on that disk, or lower outbox.maxBytes and evidence.maxBytes in ${ctx.configFile}`;
    if (free < DISK_FAIL_BYTES) return fail(`${detail}; below ${DISK_FAIL_BYTES / MiB} MiB`, fix);
    const floor = ctx.config.evidence.minFreeBytes;
    if (free < floor)
      return fail(
        `${detail}; below evidence.minFreeBytes (${(floor / MiB).toFixed(0)} MiB): the agent writes no evidence images, only events`,
        fix,
      );
    if (free < want) return warn(`${detail}; less than outbox.maxBytes (${(want / MiB).toFixed(0)} MiB)`, fix);
    return ok(detail);
  },
};

const SYNC_FILE = '/run/systemd/timesync/synchronized';

const clockCheck: GatewayCheck = {
  name: 'clock',
  async run(ctx) {
    const fix = 'enable NTP: timedatectl set-ntp true, and let the gateway reach an NTP server (event times come from this clock)';
    try {
      const answer = (await run('timedatectl', ['show', '-p', 'NTPSynchronized', '--value'], ctx.timeoutMs)).trim();
      if (answer === 'yes') return ok('synchronized (timedatectl)');
      if (answer === 'no') return warn('not synchronized with NTP (timedatectl)', fix);
    } catch {
      // No timedatectl, or no systemd to answer it: ask the file systemd-timesyncd keeps.
    }
    if (existsSync(SYNC_FILE)) return ok(`synchronized (${SYNC_FILE})`);
    return warn('unknown: no timedatectl answer and no systemd-timesyncd state', fix);
  },
};

const outboxCheck: GatewayCheck = {
  name: 'outbox',
  async run(ctx) {
    const file = join(ctx.config.gateway.dataDir, 'outbox.db');
    if (!existsSync(file)) return ok(`not created yet (${file}); the agent creates it at its first start`);
    const fix = `stop the agent and move ${file} (with its -wal and -shm files) aside; the agent starts a new one, and sqlite3 '.recover' may save its events`;
    let db: Database.Database | undefined;
    try {
      db = new Database(file, { readonly: true, fileMustExist: true });
      db.pragma('busy_timeout = 2000');
      const check = db.pragma('quick_check', { simple: true }) as string;
      if (check !== 'ok') return fail(`${file} failed SQLite's quick_check: ${check}`, fix);
      const row = db.prepare(`SELECT count(*) AS n, min(created_at) AS oldest FROM events WHERE state IN ('pending', 'sent')`).get() as {
        n: number;
        oldest: number | null;
      };
      const age = row.oldest === null ? '' : `, the oldest ${formatAge(Date.now() - row.oldest)} old`;
      return ok(`${file}: ${row.n} event${row.n === 1 ? '' : 's'} waiting to be sent${age}`);
    } catch (err) {
      return fail(`cannot read ${file}: ${(err as Error).message}`, fix);
    } finally {
      db?.close();
    }
  },
};

function formatAge(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} days`;
}

const reachableCheck: CameraCheck = {
  name: 'reachable',
  async run(camera, ctx) {
    if (camera.source.file !== undefined) {
      const why = await unreadableFile(camera.source.file);
      return why === undefined
        ? ok(`file ${camera.source.file} is readable`)
        : fail(`file ${camera.source.file}: ${why}`, `check source.file of camera ${camera.id} in ${ctx.configFile}`);
    }
    const urls = [...new Set([camera.source.url!, camera.source.detectUrl].filter((u): u is string => u !== undefined))];
    const found: string[] = [];
    for (const url of urls) {
      const address = rtspAddress(url);
      if (!address) return fail(`cannot read host and port from ${safeUrl(url)}`, `check the url of camera ${camera.id}`);
      const where = `${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
      const why = await probeTcp(address.host, address.port, Math.min(ctx.timeoutMs, 5000));
      if (why !== undefined)
        return fail(
          `RTSP ${where}: ${why}`,
          `check that camera ${camera.id} is powered and on the network, and the host and port of its url in ${ctx.configFile}`,
        );
      if (!found.includes(where)) found.push(where);
    }
    return ok(`RTSP ${found.join(', ')} accepts connections`);
  },
};

/** Where the ONVIF check goes once src/onvif/ has a client: it replaces this entry. */
const onvifCheck: CameraCheck = {
  name: 'onvif',
  applies: (camera) => camera.onvif !== undefined,
  async run(camera, ctx) {
    const onvif = camera.onvif!;
    const device = new OnvifDevice({ address: onvif.url, user: onvif.user, password: onvif.password, timeoutMs: ctx.timeoutMs });
    try {
      const { offsetMs } = await device.getSystemDateAndTime();
      const info = await device.getDeviceInformation();
      const who = [info.manufacturer, info.model].filter(Boolean).join(' ') || 'camera';
      const clock = `clock ${offsetMs >= 0 ? '+' : ''}${(offsetMs / 1000).toFixed(1)} s`;
      const detail = `${who} at ${device.camera}, logged in (${device.authMode === 'digest' ? 'HTTP digest' : 'WS-Security'}), ${clock}`;
      if (Math.abs(offsetMs) > 60_000)
        return warn(
          detail,
          "set the camera's clock (NTP in its web page): requests are signed in its time, but its overlay and logs are off",
        );
      return ok(detail);
    } catch (err) {
      if (!(err instanceof OnvifError)) throw err;
      const fix =
        err.kind === 'auth'
          ? `check onvif.user and onvif.password of camera ${camera.id} in ${ctx.configFile} (the camera's web page shows its ONVIF users)`
          : err.kind === 'timeout' || err.kind === 'unreachable'
            ? `check onvif.url of camera ${camera.id} in ${ctx.configFile}, the cable, and that ONVIF is enabled on the camera`
            : `the camera answered but not as ONVIF expects: check onvif.url of camera ${camera.id} (it should end in /onvif/device_service)`;
      return fail(err.message, fix);
    }
  },
};

export const GATEWAY_CHECKS: readonly GatewayCheck[] = [ffmpegCheck, modelsCheck, brokerCheck, diskCheck, clockCheck, outboxCheck];
export const CAMERA_CHECKS: readonly CameraCheck[] = [reachableCheck, onvifCheck];
