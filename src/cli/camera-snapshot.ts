import { writeFile } from 'node:fs/promises';
import { grabFrame } from '../ingest/index.js';
import { drawAnnotations, ZONE_COLOR } from '../evidence/annotate.js';
import { drawLabel, drawPolygon, styleFor, type Color } from '../evidence/draw.js';
import { encodeJpeg } from '../common/jpeg.js';
import type { Canvas } from '../evidence/draw.js';
import type { CameraConfig } from '../config/index.js';
import { formatLocal } from '../common/time.js';
import { cameraFromConfig } from './rules.js';
import { EXIT, parseCommandArgs, reportError, UsageError, writeJson, type CommandIo } from './io.js';

const help = `usage: edgepatrol camera snapshot <camera> --config <file> [--annotate out.jpg] [--out clean.jpg]

Grabs one current frame from the camera's stream (or its video file) and writes it:
  --annotate FILE   with every zone (yellow, with its id), mask (grey) and line_cross line (blue, the arrow
                    points forward) drawn on it, to check them against the scene
  --out FILE        untouched, e.g. as the reference image of a scene_change rule
  --config FILE     the gateway's YAML config (see docs/config.md)
  --timeout S       give up after S seconds (default 10)
  --json            instead of the "wrote" lines, one JSON document: {"camera","width","height","ts","out","annotate",
                    "zones":[ids]}; out and annotate are the files written (null if not asked for)
  --models-dir DIR  folder with manifest.json, to check the rules' classes (default: the project's models/)
exit codes: 0 written, 1 bad usage or no frame, 2 invalid config, 3 model manifest missing or refused
`;

const options = {
  config: { type: 'string', short: 'c' },
  annotate: { type: 'string' },
  out: { type: 'string' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
  'models-dir': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function parse(argv: string[]) {
  const { values, positionals } = parseCommandArgs(argv, options, { positionals: true });
  if (values.help) return { help: true as const };
  const [camera, ...extra] = positionals;
  if (!camera || extra.length) throw new UsageError('exactly one camera id expected');
  if (!values.config) throw new UsageError('--config <file> is required');
  if (!values.annotate && !values.out) throw new UsageError('nothing to write: give --annotate FILE and/or --out FILE');
  const timeout = values.timeout === undefined ? 10 : Number(values.timeout);
  if (!(timeout > 0)) throw new UsageError(`--timeout must be a positive number of seconds, got '${values.timeout}'`);
  return {
    help: false as const,
    camera,
    config: values.config,
    annotate: values.annotate,
    out: values.out,
    timeoutMs: timeout * 1000,
    json: values.json ?? false,
    modelsDir: values['models-dir'],
  };
}

/** The zone `zones set` has just written, drawn over the others in a colour no other annotation uses. */
export const HIGHLIGHT_COLOR: Color = [255, 0, 255];

/**
 * Draws every zone, mask and line of the camera, each zone labelled with its id and rules; the zone `highlight`
 * (if any) is drawn last, thicker and in HIGHLIGHT_COLOR. `title` goes after the camera's name in the caption.
 */
export function drawCameraLayout(img: Canvas, camera: CameraConfig, ts: number, opts: { highlight?: string; title?: string } = {}): void {
  const { scale, thickness } = styleFor(img);
  const zones = [...camera.zones.filter((z) => z.id !== opts.highlight), ...camera.zones.filter((z) => z.id === opts.highlight)];
  for (const zone of zones) {
    const highlighted = zone.id === opts.highlight;
    const lines = zone.rules.flatMap((r) => (r.kind === 'line_cross' ? [r.line] : []));
    drawAnnotations(img, { title: '', zone: highlighted ? undefined : zone.polygon, masks: zone.masks, objects: [] });
    if (highlighted)
      drawPolygon(
        img,
        zone.polygon.map(([x, y]) => [x * img.width, y * img.height] as const),
        HIGHLIGHT_COLOR,
        thickness + 1,
      );
    for (const l of lines) drawAnnotations(img, { title: '', line: l, objects: [] });
    // The zone's label sits at its top-left-most point, as a box label would.
    const corner = [...zone.polygon].sort((a, b) => a[0] + a[1] - (b[0] + b[1]))[0]!;
    const label = `${zone.id}: ${zone.rules.map((r) => `${r.id} (${r.kind})`).join(', ') || 'no rules'}`;
    drawLabel(img, corner[0] * img.width, corner[1] * img.height, label, {
      color: highlighted ? [255, 255, 255] : [0, 0, 0],
      background: highlighted ? HIGHLIGHT_COLOR : ZONE_COLOR,
      scale,
    });
  }
  // The caption last, so no zone label covers it.
  const title = [camera.name, opts.title, formatLocal(ts, camera.timezone)].filter(Boolean).join(' | ');
  drawAnnotations(img, { title, objects: [] });
}

/** `camera snapshot`: `argv` are its arguments, the sub-command's name taken out. */
export async function cameraSnapshotCommand(argv: string[], io: CommandIo = process): Promise<number> {
  let opts: ReturnType<typeof parse>;
  try {
    opts = parse(argv);
  } catch (err) {
    return reportError(io, 'camera snapshot', err, help);
  }
  if (opts.help) {
    io.stdout.write(help);
    return EXIT.ok;
  }
  try {
    const { camera } = cameraFromConfig(opts.config, opts.camera, opts.modelsDir);
    const url = camera.source.file ?? camera.source.url;
    const frame = await grabFrame({ cameraId: camera.id, url, timeoutMs: opts.timeoutMs });
    if (opts.out) {
      await writeFile(opts.out, await encodeJpeg(frame, 92));
      if (!opts.json) io.stdout.write(`wrote ${opts.out} (${frame.width}×${frame.height})\n`);
    }
    if (opts.annotate) {
      const img: Canvas = { width: frame.width, height: frame.height, data: Buffer.from(frame.data) };
      drawCameraLayout(img, camera, frame.ts);
      await writeFile(opts.annotate, await encodeJpeg(img, 90));
      if (!opts.json)
        io.stdout.write(
          `wrote ${opts.annotate} (${frame.width}×${frame.height}, ${camera.zones.length} zone${camera.zones.length === 1 ? '' : 's'})\n`,
        );
    }
    if (opts.json) {
      writeJson(io, {
        camera: camera.id,
        width: frame.width,
        height: frame.height,
        ts: new Date(frame.ts).toISOString(),
        out: opts.out ?? null,
        annotate: opts.annotate ?? null,
        zones: camera.zones.map((z) => z.id),
      });
    }
    return EXIT.ok;
  } catch (err) {
    return reportError(io, 'camera snapshot', err, help);
  }
}
