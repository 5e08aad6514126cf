import type { MqttClient } from 'mqtt';
import { eventPayloadSchema, type EventPayload } from '../agent/event.js';
import { parsePublicKey, verifyTask } from '../common/signing.js';
import { gatewayTopics } from '../common/topics.js';
import { loadConfig, type CameraConfig, type Config } from '../config/index.js';
import { safeUrl } from '../log.js';
import { isPtzCamera, type RoundStop, type StopResult } from '../ptz/index.js';
import type { TaskStatePayload } from '../tasks/index.js';
import { brokerProblem, configBrokerOptions, connectBroker } from './broker.js';
import { DEFAULT_CONFIG, EXIT, parseCommandArgs, reportError, UsageError, writeJson, type CommandIo } from './io.js';
import { cameraById, secondsOption } from './onvif-common.js';
import { completeTask, followTask } from './task-client.js';

const help = `usage: edgepatrol patrol run <camera> [--round R | --stops LIST] [--config FILE] [--key FILE] [--timeout S] [--json]

Runs one patrol round of a PTZ camera on this gateway's agent and shows it as it happens, for a technician on site:
sends a patrol task on {prefix}/{gateway}/task/{id} through the broker of the config (mqtt.url, user, password,
tls), then prints each state of the task (accepted, running, each stop once it is done: the preset, how the
camera's arrival was told, the events started there and its evidence file), the events the camera publishes
meanwhile (type, state, zone, view), the final state and a one-line summary. The camera, the round and its presets
are checked in the config before anything is sent. The agent must be running; the round takes the camera as any
patrol does (a verification or a person steering the camera takes it back).
  --config FILE   the gateway's YAML config (default ${DEFAULT_CONFIG})
  --round R       one of the camera's patrols (cameras[].patrols[].id); default: its only one
  --stops LIST    a round not in the config: "preset:seconds,preset:seconds" (dwell seconds per preset, default 30)
  --key FILE      sign the task with this Ed25519 private key (PEM, PKCS #8); required when the config sets
                  tasks.requireSignature
  --timeout S     give up after S seconds without a final state (default: the round's dwell times, 60 s per stop,
                  and 60 s)
  --json          one JSON line per task state and per event, each as published (its "schema" tells which); the
                  last line is the final state, whose result holds every stop
Ctrl-C stops watching, not the round: it goes on on the agent, and \`edgepatrol task list\` shows how it ended.
exit codes: 0 the round succeeded, 1 bad usage, an unknown camera or round, a camera without PTZ, or a failure,
            2 invalid config, 4 broker unreachable, 10 the round ended failed, rejected, expired or canceled,
            11 no final state within --timeout, 130 stopped watching by Ctrl-C (SIGINT): the round goes on
`;

const options = {
  config: { type: 'string', short: 'c', default: DEFAULT_CONFIG },
  round: { type: 'string' },
  stops: { type: 'string' },
  key: { type: 'string' },
  timeout: { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h' },
} as const;

/** With nothing printed for this long, a line on stderr says what the round is waiting for. */
const QUIET_MS = 5_000;
/** What --timeout allows per stop beyond its dwell: the move, settling, a still picture, a move cap's wait. */
const PER_STOP_S = 60;

/** The round to ask for: a patrol of the config by id, or stops of its own. */
interface Round {
  id?: string;
  stops: RoundStop[];
  /** How the summary names it. */
  label: string;
}

/** `--stops "centre:20,left:10"` as stops, each preset checked against the camera's. */
export function parseStops(text: string, camera: CameraConfig, configFile: string): RoundStop[] {
  const presets = (camera.presets ?? []).map((p) => p.id);
  const stops = text.split(',').map((part) => {
    const m = /^\s*([A-Za-z0-9_-]+)\s*(?::\s*([^\s,]+)\s*)?$/.exec(part);
    if (!m) throw new UsageError(`--stops: '${part}' is not preset:seconds (e.g. --stops "centre:20,left:10")`);
    const [, preset, seconds] = m as unknown as [string, string, string | undefined];
    const dwellSeconds = seconds === undefined ? 30 : Number(seconds);
    if (!(dwellSeconds > 0 && dwellSeconds <= 3600))
      throw new UsageError(`--stops: the dwell of ${preset} must be seconds above 0 and at most 3600, got '${seconds}'`);
    if (!presets.includes(preset))
      throw new Error(`camera ${camera.id} in ${configFile} has no preset ${preset} (its presets: ${presets.join(', ')})`);
    return { preset, dwellSeconds };
  });
  if (stops.length > 64) throw new UsageError(`--stops: at most 64 stops, got ${stops.length}`);
  return stops;
}

/** The round `--round`/`--stops` ask for, or the camera's only one; an error naming the choices otherwise. */
export function chooseRound(camera: CameraConfig, configFile: string, round?: string, stops?: string): Round {
  if (round !== undefined && stops !== undefined) throw new UsageError('give --round or --stops, not both');
  if (stops !== undefined) {
    const parsed = parseStops(stops, camera, configFile);
    return { stops: parsed, label: `an ad-hoc round of ${camera.id}` };
  }
  const patrols = camera.patrols ?? [];
  const ids = patrols.map((p) => p.id).join(', ');
  if (round !== undefined) {
    const found = patrols.find((p) => p.id === round);
    if (!found) throw new Error(`camera ${camera.id} has no patrol ${round} in ${configFile} (its patrols: ${ids || 'none'})`);
    return { id: found.id, stops: found.stops, label: `round ${found.id} of ${camera.id}` };
  }
  if (patrols.length === 1) return { id: patrols[0]!.id, stops: patrols[0]!.stops, label: `round ${patrols[0]!.id} of ${camera.id}` };
  if (patrols.length === 0)
    throw new Error(
      `camera ${camera.id} has no patrols in ${configFile}: add one under cameras[].patrols, or give the stops with --stops "preset:seconds,…"`,
    );
  throw new Error(`camera ${camera.id} has ${patrols.length} patrols in ${configFile} (${ids}): choose one with --round`);
}

/** The patrol task for `round`, signed with `keyFile`; refused here when the gateway would refuse it for its signature. */
function patrolTask(config: Config, configFile: string, cameraId: string, round: Round, keyFile: string | undefined) {
  const { requireSignature, publicKey } = config.tasks;
  if (requireSignature && keyFile === undefined)
    throw new Error(
      `gateway ${config.gateway.id} takes signed tasks only (tasks.requireSignature in ${configFile}): give --key with the task service's Ed25519 private key`,
    );
  const fields = round.id === undefined ? { stops: round.stops } : { round: round.id };
  const task = completeTask({ kind: 'patrol', camera: cameraId, ...fields }, keyFile, 'the patrol task');
  if (keyFile !== undefined && publicKey !== undefined && !verifyTask(task, parsePublicKey(publicKey)))
    throw new Error(
      `the key ${keyFile} does not match tasks.publicKey in ${configFile}: the agent would reject the task (bad_signature); use the task service's key`,
    );
  return task;
}

const clock = (iso: string): string => new Date(iso).toTimeString().slice(0, 8);
const plural = (n: number, one: string): string => `${n} ${one}${n === 1 ? '' : 's'}`;

/** One stop once it is done: `stop 1/2 centre: arrived by move-status in 1.2 s, 1 event, evidence evidence/….jpg`. */
export function stopLine(index: number, total: number, stop: StopResult): string {
  const parts: string[] = [];
  if (stop.arrived) parts.push(`arrived by ${stop.arrived.by} in ${(stop.arrived.moveMs / 1000).toFixed(1)} s`);
  else parts.push('not arrived');
  parts.push(plural(stop.events.length, 'event'));
  if (stop.evidence) parts.push(`evidence ${stop.evidence.file}`);
  return `stop ${index}/${total} ${stop.preset}: ${parts.join(', ')}${stop.error ? ` — ${stop.error}` : ''}`;
}

/** An event of the camera: `event centre_presence started: zone centre-path, view centre`. */
export function eventLine(e: EventPayload): string {
  const why = e.endReason ? ` (${e.endReason})` : '';
  return `event ${e.type} ${e.state}${why}: zone ${e.zone}, view ${e.view ?? "the camera's own"}`;
}

/** What happened to a stop, as a progress state or the final state's result carries it. */
type Stop = StopResult & { stop?: number };

/** The stops of a final state's result (a failed round carries the ones done too). */
function stopsOf(state: TaskStatePayload): Stop[] {
  const stops = state.result?.stops;
  return Array.isArray(stops) ? (stops as Stop[]) : [];
}

/** The one line after the final state: how the round ended, how far it got, what it saw. */
export function summaryLine(label: string, total: number, final: TaskStatePayload, seconds: number): string {
  const stops = stopsOf(final);
  const done = stops.filter((s) => s.error === undefined).length;
  const events = stops.reduce((n, s) => n + (s.events?.length ?? 0), 0);
  const took = `${Math.round(seconds)} s`;
  if (final.state === 'succeeded') {
    const home = final.result?.home === true ? 'the camera is home' : 'the camera did not go home';
    return `${label} succeeded in ${took}: ${done} of ${plural(total, 'stop')}, ${plural(events, 'event')}, ${home}`;
  }
  const reason = final.reason ? ` (${final.reason})` : '';
  const detail = final.detail ? `: ${final.detail}` : '';
  return `${label} ${final.state}${reason} after ${done} of ${plural(total, 'stop')} and ${took}, ${plural(events, 'event')}${detail}`;
}

async function run(
  cameraId: string,
  v: { config: string; round?: string; stops?: string; key?: string; timeout?: string; json: boolean },
  io: CommandIo,
): Promise<number> {
  const configFile = v.config;
  const config = loadConfig(configFile);
  const camera = cameraById(config.cameras, cameraId, configFile);
  if (!isPtzCamera(camera)) {
    const missing = camera.onvif === undefined ? 'no onvif section' : 'no presets';
    throw new Error(
      `camera ${camera.id} in ${configFile} is not a PTZ camera (${missing}): a patrol needs onvif and presets (edgepatrol camera presets ${camera.id})`,
    );
  }
  const round = chooseRound(camera, configFile, v.round, v.stops);
  const dwell = round.stops.reduce((s, stop) => s + stop.dwellSeconds, 0);
  const timeoutS = secondsOption(v.timeout, '--timeout', dwell + PER_STOP_S * round.stops.length + 60);
  const task = patrolTask(config, configFile, camera.id, round, v.key);
  const id = task.id as string;
  const topics = gatewayTopics(config.mqtt.prefix, config.gateway.id);
  const url = safeUrl(config.mqtt.url);
  const quiet = v.json;
  const note = (text: string): void => {
    if (!quiet) io.stderr.write(`edgepatrol patrol run: ${text}\n`);
  };

  let client: MqttClient;
  try {
    client = await connectBroker(config.mqtt.url, configBrokerOptions(config.mqtt, 'patrol', 10_000));
  } catch (err) {
    const problem = brokerProblem(url, err as Error & { code?: unknown }, config.mqtt.tls !== undefined);
    io.stderr.write(`edgepatrol patrol run: cannot connect to the broker of ${configFile}: ${problem.detail}; ${problem.fix}\n`);
    return EXIT.broker;
  }

  const started = Date.now();
  let lastOutput = Date.now();
  let waitingFor = `gateway ${config.gateway.id} to accept the task`;
  const say = (at: string, text: string): void => {
    lastOutput = Date.now();
    io.stdout.write(`${clock(at)} ${text}\n`);
  };
  /** The agent reports a stop once it is done, the last one only with the final state (after the camera is home). */
  const stopUnderWay = (index: number): string => {
    const stop = round.stops[index]!;
    const last = index === round.stops.length - 1 ? ' and the camera to go home' : '';
    return `stop ${index + 1}/${round.stops.length} (${stop.preset}, ${stop.dwellSeconds} s)${last}`;
  };
  let printed = 0;
  const printStop = (stop: Stop, index: number, at: string): void => {
    say(stop.to ?? at, stopLine(index, round.stops.length, stop));
    printed = Math.max(printed, index);
    if (index < round.stops.length) waitingFor = stopUnderWay(index);
  };

  const eventsFilter = `${topics.base}/event/+`;
  const seenEvents = new Set<string>();
  const onEvent = (topic: string, payload: Buffer): void => {
    if (!topic.startsWith(`${topics.base}/event/`)) return;
    let event: EventPayload;
    try {
      event = eventPayloadSchema.parse(JSON.parse(payload.toString('utf8')));
    } catch {
      return note(`ignored a message on ${topic} that is not an event of the contract`);
    }
    if (event.camera.id !== camera.id || seenEvents.has(event.messageId)) return;
    seenEvents.add(event.messageId);
    if (v.json) writeJson(io, event);
    else say(event.detectedAt, eventLine(event));
  };
  const onState = (state: TaskStatePayload): void => {
    if (v.json) return writeJson(io, state);
    if (state.state === 'progress') {
      const stop = state.result as Stop | undefined;
      if (stop?.stop !== undefined) return printStop(stop, stop.stop, state.at);
    }
    if (state.state === 'accepted') waitingFor = `${camera.id} to be free (another task of it runs)`;
    if (state.state === 'running') waitingFor = stopUnderWay(0);
    for (const [i, stop] of stopsOf(state).entries()) if (i + 1 > printed) printStop(stop, i + 1, state.at);
    const reason = state.reason ? ` (${state.reason})` : '';
    say(state.at, `${state.state}${reason}${state.detail && state.state !== 'progress' ? ` — ${state.detail}` : ''}`);
  };

  const interrupted = new AbortController();
  const onSigint = (): void => interrupted.abort();
  const heartbeat = setInterval(() => {
    if (Date.now() - lastOutput < QUIET_MS) return;
    lastOutput = Date.now();
    note(`waiting for ${waitingFor}; ${Math.round((Date.now() - started) / 1000)} s so far`);
  }, 1000);
  client.on('message', onEvent);
  process.on('SIGINT', onSigint);
  try {
    await client.subscribeAsync(eventsFilter, { qos: 1 });
    const followed = await followTask(client, topics, task, {
      timeoutMs: timeoutS * 1000,
      onState,
      onInvalid: (problem) => note(`ignored a state that breaks the contract: ${problem}`),
      onSent: () =>
        note(
          `sent task ${id} for ${round.label} (${round.stops.map((s) => `${s.preset} ${s.dwellSeconds} s`).join(', ')}) to ${config.gateway.id} via ${url}`,
        ),
      signal: interrupted.signal,
    });
    if (followed.end === 'aborted') {
      io.stderr.write(
        `edgepatrol patrol run: stopped watching; ${round.label} goes on on the agent (task ${id}): \`edgepatrol task list\` shows how it ends\n`,
      );
      return EXIT.sigint;
    }
    if (followed.end === 'timeout') {
      io.stderr.write(
        `edgepatrol patrol run: no final state of task ${id} within ${timeoutS} s; is the agent of gateway ${config.gateway.id} running and connected to ${url}? (edgepatrol status)\n`,
      );
      return EXIT.taskTimeout;
    }
    const final = followed.state;
    if (!v.json) io.stdout.write(`${summaryLine(round.label, round.stops.length, final, (Date.now() - started) / 1000)}\n`);
    return final.state === 'succeeded' ? EXIT.ok : EXIT.taskNotSucceeded;
  } finally {
    clearInterval(heartbeat);
    process.off('SIGINT', onSigint);
    client.off('message', onEvent);
    await client.endAsync();
  }
}

/** `edgepatrol patrol run <camera>`: `argv` are the arguments after `patrol`. */
export async function patrolCommand(argv: string[], io: CommandIo = process): Promise<number> {
  const name = argv.includes('run') ? 'patrol run' : 'patrol';
  try {
    const { values: v, positionals } = parseCommandArgs(argv, options, { positionals: true });
    if (v.help) {
      io.stdout.write(help);
      return EXIT.ok;
    }
    const [verb, cameraId, extra] = positionals;
    if (verb !== 'run')
      throw new UsageError(
        verb === undefined ? 'a sub-command is required: patrol run' : `unknown sub-command 'patrol ${verb}': expected run`,
      );
    if (cameraId === undefined) throw new UsageError('expected <camera>: edgepatrol patrol run <camera>');
    if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}'`);
    return await run(cameraId, v, io);
  } catch (err) {
    return reportError(io, name, err, help);
  }
}
