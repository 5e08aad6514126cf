import { runCommand } from '../common/run.js';
import { loadConfig, type CameraConfig } from '../config/index.js';
import { grabFrame } from '../ingest/index.js';
import { safeUrl } from '../log.js';
import { openDetector, type Detector } from '../vision/index.js';
import { DEFAULT_CONFIG, EXIT, parseCommandArgs, writeJson, type CommandIo } from './io.js';
import { cameraById, deviceOf, positionalArgs, progress, reportCameraError, secondsOption } from './onvif-common.js';

const help = `usage: edgepatrol camera test <camera> [--config FILE] [--seconds S] [--timeout S] [--models-dir DIR] [--json]

Checks one camera of the config end to end, as the agent will use it:
  onvif        (cameras with an onvif section) its clock, maker and model: the user name and password work
  first frame  how long the stream the detector watches (source.detectUrl, else source.url) takes to give a
               frame, and its size
  frame rate   frames the stream delivers per second, counted over --seconds
  detector     the camera's model on that first frame: what it finds, and how long it took
  --config FILE     the gateway's YAML config (default ${DEFAULT_CONFIG})
  --seconds S       how long to count frames (default 3)
  --timeout S       seconds to wait for the first frame and for each ONVIF request (default 10)
  --models-dir DIR  folder with manifest.json (default: the project's models/)
  --json            one JSON document: {"camera","stream","onvif":{…} or null,"firstFrameMs","width","height","fps",
                    "detector":{"model","ms","objects":{class:count}}}
exit codes: 0 all worked, 1 bad usage or no frame, 2 invalid config, 3 model missing or refused,
            8 ONVIF authentication failed, 9 the camera did not answer
`;

const options = {
  config: { type: 'string', short: 'c' },
  seconds: { type: 'string' },
  timeout: { type: 'string' },
  'models-dir': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** The stream the detector watches: the sub-stream when there is one. */
function detectStream(camera: CameraConfig): string {
  return camera.source.file ?? camera.source.detectUrl ?? camera.source.url!;
}

/**
 * Frames the stream delivers per second over `seconds`, counted by ffmpeg without decoding (stream copy); a file is
 * read at its own pace (-re), as a camera would send it.
 */
async function measureFps(camera: CameraConfig, seconds: number): Promise<number | null> {
  const url = detectStream(camera);
  const input =
    camera.source.file !== undefined
      ? ['-re', '-i', `file:${url}`]
      : ['-rtsp_transport', 'tcp', '-timeout', '5000000', '-analyzeduration', '500000', '-probesize', '100000', '-i', url];
  const started = Date.now();
  const r = await runCommand(
    'ffmpeg',
    [
      '-hide_banner',
      '-nostdin',
      '-loglevel',
      'error',
      '-stats',
      ...input,
      '-t',
      String(seconds),
      '-map',
      '0:v:0',
      '-c',
      'copy',
      '-f',
      'null',
      '-',
    ],
    { startHint: 'install ffmpeg (apt-get install ffmpeg)' },
  );
  const frames = [...r.stderr.matchAll(/frame=\s*(\d+)/g)].at(-1)?.[1];
  if (frames === undefined) return null;
  const took = Math.max(seconds, (Date.now() - started) / 1000 - 0.5);
  return Math.round((Number(frames) / Math.min(took, seconds)) * 10) / 10;
}

/** `camera test`: `argv` are its arguments, the sub-command's name taken out. */
export async function cameraTestCommand(argv: string[], io: CommandIo = process): Promise<number> {
  let detector: Detector | undefined;
  try {
    const { values, positionals } = parseCommandArgs(argv, options, { positionals: true });
    if (values.help) {
      io.stdout.write(help);
      return EXIT.ok;
    }
    const [id] = positionalArgs(positionals, 1, '<camera>: edgepatrol camera test <camera>') as [string];
    const seconds = secondsOption(values.seconds, '--seconds', 3, 60);
    const timeout = secondsOption(values.timeout, '--timeout', 10);
    const file = values.config ?? DEFAULT_CONFIG;
    const config = loadConfig(file);
    const camera = cameraById(config.cameras, id, file);
    const json = Boolean(values.json);
    const say = progress(io, json);
    const lines: string[] = [`camera ${id}: ${safeUrl(detectStream(camera))}`];

    let onvif: { manufacturer: string | null; model: string | null; clockOffsetSeconds: number; auth: string } | null = null;
    if (camera.onvif) {
      say(`asking ${id} over ONVIF …`);
      const device = deviceOf(camera, file, timeout * 1000);
      const { offsetMs } = await device.getSystemDateAndTime();
      const info = await device.getDeviceInformation();
      onvif = {
        manufacturer: info.manufacturer ?? null,
        model: info.model ?? null,
        clockOffsetSeconds: Math.round(offsetMs / 100) / 10,
        auth: device.authMode,
      };
      const skew =
        Math.abs(offsetMs) > 5000
          ? ' (set NTP on the camera: evidence times come from the gateway, but its own overlay will be wrong)'
          : '';
      lines.push(
        `  onvif        ${[info.manufacturer, info.model].filter(Boolean).join(' ') || '?'}, clock ${onvif.clockOffsetSeconds >= 0 ? '+' : ''}${onvif.clockOffsetSeconds} s${skew}, ${device.authMode === 'digest' ? 'HTTP digest' : 'WS-Security'}`,
      );
    }

    say(`waiting for a frame from ${id} …`);
    const t0 = Date.now();
    let frame;
    try {
      frame = await grabFrame({ cameraId: id, url: detectStream(camera), timeoutMs: timeout * 1000 });
    } catch (err) {
      throw new Error(`${(err as Error).message}; check the camera's stream address and that it is switched on (edgepatrol doctor)`);
    }
    const firstFrameMs = Date.now() - t0;
    lines.push(`  first frame  ${(firstFrameMs / 1000).toFixed(1)} s, ${frame.width}×${frame.height}`);

    say(`counting frames for ${seconds} s …`);
    const fps = await measureFps(camera, seconds);
    lines.push(
      `  frame rate   ${fps === null ? 'not measured (ffmpeg reported no frames)' : `${fps} fps over ${seconds} s`}; detection takes ${camera.detect.fps} a second`,
    );

    const model = camera.model ?? config.model.name;
    detector = await openDetector({ model, modelsDir: values['models-dir'], threads: 1, scoreThreshold: config.model.scoreThreshold });
    const d0 = Date.now();
    const detections = await detector.detect(frame);
    const ms = Date.now() - d0;
    const objects: Record<string, number> = {};
    for (const d of detections) objects[d.class] = (objects[d.class] ?? 0) + 1;
    const found = Object.entries(objects)
      .map(([c, n]) => `${c} ${n}`)
      .join(', ');
    lines.push(
      `  detector     ${detector.model.name}: ${detections.length} object${detections.length === 1 ? '' : 's'}${found ? ` (${found})` : ''} in ${ms} ms`,
    );

    if (json) {
      writeJson(io, {
        camera: id,
        stream: safeUrl(detectStream(camera)),
        onvif,
        firstFrameMs,
        width: frame.width,
        height: frame.height,
        fps,
        detector: { model: detector.model.name, ms, objects },
      });
    } else io.stdout.write(`${lines.join('\n')}\n`);
    return EXIT.ok;
  } catch (err) {
    return reportCameraError(io, 'camera test', err, help);
  } finally {
    await detector?.close();
  }
}
