import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { configMessage } from '../config/load.js';
import { addZoneRule, polygonSchema, setZone, type CameraConfig } from '../config/index.js';
import { isPresetName, PRESET_NAMES, PRESETS, type PresetName, type RuleKind } from '../config/presets.js';
import { encodeJpeg } from '../common/jpeg.js';
import type { Canvas } from '../evidence/draw.js';
import { grabFrame } from '../ingest/index.js';
import { cameraWithView } from '../rules/index.js';
import { drawCameraLayout } from './camera-snapshot.js';
import { DEFAULT_CONFIG, EXIT, parseCommandArgs, reportError, UsageError, writeJson, type CommandIo } from './io.js';

const help = `usage: edgepatrol zones set <camera> <zone> "x,y x,y x,y …" [--rule NAME[:KIND]] [--preset P] [--config FILE] [--json]

Writes the zone's outline into the config file, then grabs a frame from the camera and writes a preview JPEG
beside the config, <camera>-<zone>.jpg (<camera>-<preset>-<zone>.jpg with --preset), with all the camera's
zones drawn and this one highlighted (magenta). Prints both paths.
Points are fractions of the frame, as in the config's polygons: 0,0 is the top-left corner, 1,1 the
bottom-right; at least 3, listed in order around the outline so that no two edges cross. Errors number the
points from 0, as the config's messages do.
An existing zone keeps its rules and masks, only its outline changes; a new zone is added with no rules.
Everything else in the file (comments, order, formatting) stays as it was; the file is checked before it is
written and replaced atomically (mode 600 when it holds a password).
  --rule NAME[:KIND]  also give the zone a rule from a governance preset (unless it has one of that preset already):
                    ${PRESET_NAMES.join(', ')} (docs/rules.md), of the preset's own kind or KIND (e.g.
                    reserve_land_intrusion:presence reports anyone at once, to check a camera); edit the config to tune it
  --preset P        the zone of PTZ preset P's view (the preset is added to the camera if it is new). The camera
                    is not moved to the preset yet: the preview shows where it looks now
  --config FILE     the gateway's YAML config (default ${DEFAULT_CONFIG})
  --timeout S       give up grabbing the preview frame after S seconds (default 10)
  --json            one JSON document: {"config","camera","zone","preset","rule","polygon":[[x,y],…],"preview",
                    "previewSkipped"}; preview is the JPEG written, or null and previewSkipped says why
exit codes: 0 done, 1 bad usage or a failure, 2 invalid config, 6 zone written but no preview (no frame)
`;

const options = {
  config: { type: 'string', short: 'c' },
  rule: { type: 'string' },
  preset: { type: 'string' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Polygon = [number, number][];

/**
 * Parses "x,y x,y …" into a polygon checked by the config's own polygon schema (same messages); a problem is a
 * UsageError naming the camera, zone and point (numbered from 0, as the schema's self-crossing message does).
 */
export function parsePoints(text: string, where: string): Polygon {
  const words = text.trim().split(/\s+/).filter(Boolean);
  const points = words.map((word, i): [number, number] => {
    const parts = word.split(',');
    const [x, y] = parts.map((p) => (p.trim() === '' ? Number.NaN : Number(p)));
    if (parts.length !== 2 || !Number.isFinite(x) || !Number.isFinite(y))
      throw new UsageError(`${where}: point ${i} '${word}' is not x,y (two numbers between 0 and 1, e.g. 0.25,0.6)`);
    return [x!, y!];
  });
  const result = polygonSchema.safeParse(points, { error: configMessage });
  if (result.success) return result.data as Polygon;
  const issue = result.error.issues[0]!;
  const index = issue.path[0];
  const point = typeof index === 'number' ? `point ${index} (${words[index]}): ` : '';
  throw new UsageError(`${where}: ${point}${issue.message}`);
}

function parse(argv: string[]) {
  const { values, positionals } = parseCommandArgs(argv, options, { positionals: true });
  if (values.help) return { help: true as const };
  const [camera, zone, points, ...extra] = positionals;
  if (!camera || !zone || points === undefined)
    throw new UsageError('expected <camera> <zone> "x,y x,y x,y …" (quote the points, they are one argument)');
  if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}' (quote the points, they are one argument)`);
  const timeout = values.timeout === undefined ? 10 : Number(values.timeout);
  if (!(timeout > 0)) throw new UsageError(`--timeout must be a positive number of seconds, got '${values.timeout}'`);
  const where = `camera ${camera}, ${values.preset === undefined ? '' : `preset ${values.preset}, `}zone ${zone}`;
  return {
    help: false as const,
    camera,
    zone,
    polygon: parsePoints(points, where),
    preset: values.preset,
    rule: checkRule(values.rule, where),
    config: values.config ?? DEFAULT_CONFIG,
    timeoutMs: timeout * 1000,
    json: values.json ?? false,
  };
}

/**
 * A --rule value, NAME or NAME:KIND: one of the governance presets (docs/rules.md), optionally with one of the rule
 * kinds it supports; or a UsageError listing them.
 */
function checkRule(rule: string | undefined, where: string): { preset: PresetName; kind?: RuleKind } | undefined {
  if (rule === undefined) return undefined;
  const [name, kind, ...rest] = rule.split(':');
  if (!isPresetName(name) || rest.length)
    throw new UsageError(`${where}: --rule '${rule}' is not a rule preset; one of ${PRESET_NAMES.join(', ')} (docs/rules.md)`);
  if (kind === undefined) return { preset: name };
  const kinds = Object.keys(PRESETS[name].defaults);
  if (!kinds.includes(kind)) throw new UsageError(`${where}: preset ${name} works with kind ${kinds.join(' or ')}, not '${kind}'`);
  return { preset: name, kind: kind as RuleKind };
}

const ruleName = (r: { preset: string; kind?: string }): string => (r.kind ? `${r.preset}:${r.kind}` : r.preset);

/** The camera as it looks at `preset` (its view's zones), or as configured. */
function cameraAt(camera: CameraConfig, preset: string | undefined): CameraConfig {
  const view = preset === undefined ? undefined : camera.presets?.find((p) => p.id === preset);
  return view ? cameraWithView(camera, view) : camera;
}

/** `zones set`: `argv` are its arguments, the sub-command's name taken out. */
export async function zonesSetCommand(argv: string[], io: CommandIo = process): Promise<number> {
  let opts: ReturnType<typeof parse>;
  try {
    opts = parse(argv);
  } catch (err) {
    return reportError(io, 'zones set', err, help);
  }
  if (opts.help) {
    io.stdout.write(help);
    return EXIT.ok;
  }
  try {
    let config = setZone(opts.config, opts.camera, opts.zone, opts.polygon, { preset: opts.preset });
    if (opts.rule)
      config = addZoneRule(opts.config, opts.camera, opts.zone, opts.rule.preset, { preset: opts.preset, kind: opts.rule.kind });
    const camera = cameraAt(config.cameras.find((c) => c.id === opts.camera)!, opts.preset);
    const what = `zone ${opts.zone} of camera ${opts.camera}${opts.preset === undefined ? '' : ` at preset ${opts.preset}`}`;
    if (!opts.json) io.stdout.write(`wrote ${what}${opts.rule ? ` with a ${ruleName(opts.rule)} rule` : ''} to ${opts.config}\n`);

    const name = [opts.camera, opts.preset, opts.zone].filter((p) => p !== undefined).join('-');
    const preview = join(dirname(opts.config), `${name}.jpg`);
    let skipped: string | null = null;
    try {
      const frame = await grabFrame({
        cameraId: camera.id,
        url: camera.source.file ?? camera.source.detectUrl ?? camera.source.url!,
        timeoutMs: opts.timeoutMs,
      });
      const img: Canvas = { width: frame.width, height: frame.height, data: Buffer.from(frame.data) };
      drawCameraLayout(img, camera, frame.ts, { highlight: opts.zone, title: opts.preset && `preset ${opts.preset}` });
      await writeFile(preview, await encodeJpeg(img, 90));
      if (!opts.json) io.stdout.write(`wrote ${preview} (${frame.width}×${frame.height}, ${opts.zone} highlighted)\n`);
    } catch (err) {
      skipped = (err as Error).message;
      io.stderr.write(`edgepatrol zones set: ${what} is written, but the preview was skipped: ${skipped}\n`);
    }
    if (opts.json)
      writeJson(io, {
        config: opts.config,
        camera: opts.camera,
        zone: opts.zone,
        preset: opts.preset ?? null,
        rule: opts.rule ? ruleName(opts.rule) : null,
        polygon: opts.polygon,
        preview: skipped === null ? preview : null,
        previewSkipped: skipped,
      });
    return skipped === null ? EXIT.ok : EXIT.noPreview;
  } catch (err) {
    return reportError(io, 'zones set', err, help);
  }
}
