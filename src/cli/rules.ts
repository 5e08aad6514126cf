import { access, mkdir } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join } from 'node:path';
import { loadConfig, ConfigError, type Config, type CameraConfig } from '../config/index.js';
import { loadManifest, openDetector, remapClasses, type Detector } from '../vision/index.js';
import { cameraModelName, checkConfigAgainstModels } from './model-check.js';
import { readVideoFrames } from '../vision/video.js';
import { CameraRules, SceneReferenceError, type RuleHit } from '../rules/index.js';
import { annotateEvidence } from '../evidence/annotate.js';
import { writeFile } from 'node:fs/promises';
import { formatLocal } from '../common/time.js';
import { EXIT, parseCommandArgs, reportError, UsageError, writeJson, type CommandIo } from './io.js';

/**
 * Loads the config and picks one camera, checking the config against the models it names.
 * Throws ConfigError (exit 2), ModelError (exit 3) or UsageError (exit 1) for the caller to report.
 */
export function cameraFromConfig(configFile: string, cameraId: string, modelsDir?: string): { config: Config; camera: CameraConfig } {
  const config = loadConfig(configFile);
  checkConfigAgainstModels(configFile, config, loadManifest(modelsDir));
  const camera = config.cameras.find((c) => c.id === cameraId);
  if (!camera)
    throw new UsageError(`no camera '${cameraId}' in ${configFile}; its cameras are: ${config.cameras.map((c) => c.id).join(', ')}`);
  return { config, camera };
}

const help = `usage: edgepatrol rules test <camera> --video <file> --config <file> [options]

Replays a video through the camera's detector, tracker and rules, as the agent would run them, and prints
every event message that would be sent: time in the video, state, type, zone, rule and objects (those not
detected in the message's frame marked "unseen" with how long ago they were last seen).
Nothing is stored or published.
  --config FILE     the gateway's YAML config (see docs/config.md)
  --video FILE      the clip to replay; sampled at the camera's detect.fps
  --start ISO       wall-clock time of the clip's first frame, for schedules (default: now)
  --evidence DIR    also write each message's annotated evidence JPEG into DIR
  --json            JSON lines, one per message, nothing else on stdout: {"time" (seconds into the video),
                    "eventId","state","eventType","preset","rule","ruleId","zoneId","startedAt","ts","endedAt",
                    "endReason","dwellSeconds","objects":[…],"unseen":[{"class","trackId","lastSeenAt","lastScore",
                    "lastBox"}],"counts","change"} (times in ms since 1970; the optional fields only where the
                    text shows them)
  --models-dir DIR  folder with manifest.json and the model files (default: the project's models/)
exit codes: 0 done, 1 bad usage or unreadable video, 2 invalid config, 3 model missing or refused
`;

/** How errors name the command: with its sub-command once that is given. */
const commandName = (argv: string[]): string => (argv[0] === 'test' ? 'rules test' : 'rules');

const options = {
  config: { type: 'string', short: 'c' },
  video: { type: 'string' },
  start: { type: 'string' },
  evidence: { type: 'string' },
  json: { type: 'boolean' },
  'models-dir': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function parse(argv: string[]) {
  const { values, positionals } = parseCommandArgs(argv, options, { positionals: true });
  if (values.help) return { help: true as const };
  const [sub, camera, ...extra] = positionals;
  if (sub !== 'test') throw new UsageError(sub ? `unknown sub-command 'rules ${sub}'` : 'a sub-command is required: rules test');
  if (!camera || extra.length) throw new UsageError('exactly one camera id expected');
  if (!values.config) throw new UsageError('--config <file> is required');
  if (!values.video) throw new UsageError('--video <file> is required');
  const start = values.start === undefined ? Date.now() : Date.parse(values.start);
  if (Number.isNaN(start)) throw new UsageError(`--start must be an ISO time such as 2025-06-06T21:00:00+08:00, got '${values.start}'`);
  return {
    help: false as const,
    camera,
    config: values.config,
    video: values.video,
    start,
    evidence: values.evidence,
    json: values.json ?? false,
    modelsDir: values['models-dir'],
  };
}

function line(hit: RuleHit, videoSeconds: number): string {
  const objects = [
    ...hit.objects.map((o) => `${o.class}#${o.trackId} ${o.score.toFixed(2)}`),
    ...hit.unseen.map((o) => `${o.class}#${o.trackId} unseen ${((hit.ts - o.lastSeenAt) / 1000).toFixed(1)}s`),
  ].join(', ');
  const extra = [
    hit.counts ? `forward ${hit.counts.forward} backward ${hit.counts.backward}` : '',
    hit.change ? `changed ${Math.round(hit.change.fraction * 100)}% (threshold ${Math.round(hit.change.threshold * 100)}%)` : '',
  ]
    .filter(Boolean)
    .join(' ');
  return (
    `${videoSeconds.toFixed(1).padStart(7)}s  ${hit.state.padEnd(7)} ${hit.eventType}  zone ${hit.zoneId}  rule ${hit.ruleId}  ` +
    `dwell ${hit.dwellSeconds.toFixed(1)}s  event ${hit.eventId}${objects ? `  [${objects}]` : ''}${extra ? `  ${extra}` : ''}\n`
  );
}

export async function rulesCommand(argv: string[], io: CommandIo = process): Promise<number> {
  let opts: ReturnType<typeof parse>;
  try {
    opts = parse(argv);
  } catch (err) {
    return reportError(io, commandName(argv), err, help);
  }
  if (opts.help) {
    io.stdout.write(help);
    return EXIT.ok;
  }
  let detector: Detector | undefined;
  try {
    const { config, camera } = cameraFromConfig(opts.config, opts.camera, opts.modelsDir);
    try {
      await access(opts.video, constants.R_OK);
    } catch {
      throw new UsageError(`cannot read the video ${opts.video}`);
    }
    const rules = await CameraRules.open(camera);
    detector = await openDetector({
      model: cameraModelName(config, camera),
      modelsDir: opts.modelsDir,
      threads: config.model.threads,
      scoreThreshold: config.model.scoreThreshold,
    });
    if (opts.evidence) await mkdir(opts.evidence, { recursive: true });
    let count = 0;
    for await (const frame of readVideoFrames(opts.video, { fps: camera.detect.fps, startTs: opts.start })) {
      const detections = remapClasses(await detector.detect(frame), camera.classMap);
      for (const hit of rules.evaluate(frame.ts, frame.width, frame.height, detections, frame)) {
        count++;
        if (opts.json) writeJson(io, { time: Math.round(frame.time * 1000) / 1000, ...hit });
        else io.stdout.write(line(hit, frame.time));
        if (opts.evidence) {
          const zone = camera.zones.find((z) => z.id === hit.zoneId);
          const rule = zone?.rules.find((r) => r.id === hit.ruleId);
          const jpeg = await annotateEvidence(frame, {
            title: `${camera.name} | ${hit.eventType} ${hit.state} | ${formatLocal(frame.ts, camera.timezone)}`,
            zone: zone?.polygon,
            masks: zone?.masks,
            line: rule?.kind === 'line_cross' ? rule.line : undefined,
            objects: hit.objects,
            unseen: { objects: hit.unseen, ts: hit.ts },
            quality: config.evidence.jpegQuality,
          });
          await writeFile(join(opts.evidence, `${String(count).padStart(4, '0')}-${hit.eventType}-${hit.state}.jpg`), jpeg);
        }
      }
    }
    if (!opts.json) io.stdout.write(`${count} event message${count === 1 ? '' : 's'}\n`);
    return EXIT.ok;
  } catch (err) {
    if (err instanceof SceneReferenceError)
      return reportError(io, commandName(argv), new ConfigError(opts.config, [{ path: '', message: err.message }]), help);
    return reportError(io, commandName(argv), err, help);
  } finally {
    await detector?.close();
  }
}
