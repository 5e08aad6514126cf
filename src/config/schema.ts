import { z } from 'zod';
import { polygonProblem } from '../common/geometry.js';
import { TOPIC_PREFIX, TOPIC_PREFIX_RULE } from '../common/topics.js';
import { parsePublicKey } from '../common/signing.js';
import { Cron } from 'croner';
import { applyPreset, PRESET_NAMES } from './presets.js';

/**
 * The gateway config file: this one schema is the TypeScript type (`Config`), the validator, and the source of
 * docs/config.schema.json. Every key is documented in docs/config.md.
 *
 * Checks that relate several places of the file (unique ids, mqtt url vs tls) sit in one root refinement that
 * runs even when other parts are invalid, so a technician sees every problem in one pass.
 */

const IDENTIFIER = /^[A-Za-z0-9_-]+$/;
const EVENT_TYPE = /^[a-z][a-z0-9_]*$/;

function identifier(what: string) {
  return z
    .string()
    .min(1, { error: `${what} must not be empty` })
    .max(64, { error: `${what} is too long; use at most 64 characters` })
    .regex(IDENTIFIER, { error: `${what} may contain only letters, digits, '_' and '-' (it is used in MQTT topics and event ids)` });
}

/**
 * Whole numbers via multipleOf rather than z.int(): zod's integer check aborts the whole parse, which would
 * hide the cross-checks' issues from the technician.
 */
const wholeNumber = () => z.number().multipleOf(1, { error: 'expected a whole number' });

/** Frames travel as YUV 4:2:0, whose chroma planes halve each side: the detect size must be even, as H.264's is. */
const evenNumber = (what: string) =>
  z.number().multipleOf(2, {
    error: (issue) =>
      `${what} must be an even whole number (frames are YUV 4:2:0), got ${String(issue.input)}; use ${Math.round(Number(issue.input) / 2) * 2}`,
  });

const fraction = (what: string) =>
  z
    .number()
    .min(0, { error: `${what} must be between 0 and 1` })
    .max(1, { error: `${what} must be between 0 and 1` });

/** A path on the gateway; a relative one is resolved against the folder of the config file. */
const filePath = z.string().min(1, { error: 'path must not be empty' });

function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

function urlScheme(text: string): string | null {
  try {
    return new URL(text).protocol.replace(/:$/, '');
  } catch {
    return null;
  }
}

function urlWithScheme(schemes: readonly string[], example: string) {
  return z.string().superRefine((text, ctx) => {
    const scheme = urlScheme(text);
    if (scheme === null) {
      ctx.addIssue({
        code: 'custom',
        message: `not a valid URL; expected e.g. ${example} (percent-encode special characters in user and password, e.g. '@' as %40)`,
      });
    } else if (!schemes.includes(scheme)) {
      ctx.addIssue({ code: 'custom', message: `unsupported scheme '${scheme}:'; expected ${schemes.map((s) => `${s}://`).join(', ')}` });
    }
  });
}

const MQTT_SCHEMES = ['mqtt', 'mqtts', 'ws', 'wss'] as const;
const MQTT_TLS_SCHEMES = ['mqtts', 'wss'];

const gatewaySchema = z.strictObject({
  id: identifier('gateway id').describe('Unique id of this gateway; part of every MQTT topic ({prefix}/{id}/…). [A-Za-z0-9_-]+'),
  dataDir: filePath.default('/var/lib/edgepatrol').describe('Folder for the outbox database and evidence images.'),
  timezone: z
    .string()
    .refine(isTimeZone, { error: 'unknown time zone; expected an IANA name such as Asia/Shanghai or UTC' })
    .default('UTC')
    .describe('IANA time zone used for local times shown to people (evidence captions). Event times are always UTC.'),
});

const tlsSchema = z
  .strictObject({
    ca: filePath.optional().describe('PEM file of the CA that signed the broker certificate (default: the system CAs).'),
    cert: filePath.optional().describe("PEM file of this gateway's client certificate (mutual TLS)."),
    key: filePath.optional().describe("PEM file of the client certificate's private key; must not be readable by group or others."),
    rejectUnauthorized: z.boolean().default(true).describe('Verify the broker certificate. Turn off only on a bench.'),
  })
  .superRefine((tls, ctx) => {
    if ((tls.cert === undefined) !== (tls.key === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [tls.cert === undefined ? 'cert' : 'key'],
        message: 'cert and key go together; set both for a client certificate, or neither',
      });
    }
  });

const mqttSchema = z.strictObject({
  url: urlWithScheme(MQTT_SCHEMES, 'mqtts://broker.example:8883').describe('Broker URL: mqtt://, mqtts://, ws:// or wss://.'),
  prefix: z
    .string()
    .regex(TOPIC_PREFIX, { error: `topic prefix must be ${TOPIC_PREFIX_RULE}` })
    .default('edgepatrol')
    .describe('First topic level(s) of every topic this gateway uses.'),
  clientId: z.string().min(1).max(128).optional().describe('MQTT client id (default: edgepatrol-{gateway.id}).'),
  username: z.string().optional().describe('Broker user name.'),
  password: z.string().optional().describe('Broker password. A config file holding it must have mode 600.'),
  tls: tlsSchema.optional().describe('TLS settings for mqtts:// and wss:// URLs.'),
  delivery: z
    .enum(['broker', 'service'])
    .default('broker')
    .describe(
      "When an event counts as delivered: broker = the broker's PUBACK; service = the task service's ack on {prefix}/{gateway.id}/ack (docs/delivery.md).",
    ),
  sessionExpirySeconds: wholeNumber()
    .min(0)
    .max(4_294_967_295)
    .default(7 * 86_400)
    .describe(
      "How long the broker keeps this gateway's session (its subscriptions and the messages sent down to it) while the gateway is offline, s; " +
        '0 ends the session at each disconnect (docs/delivery.md).',
    ),
  reconnect: z
    .strictObject({
      initialMs: wholeNumber().min(100).default(1000).describe('First reconnect delay, ms.'),
      maxMs: wholeNumber().min(100).default(60_000).describe('Longest reconnect delay, ms; delays double up to it, with jitter.'),
    })
    .prefault({})
    .describe('Reconnect backoff after the broker is lost.'),
});

const outboxSchema = z.strictObject({
  maxBytes: wholeNumber()
    .min(1_000_000)
    .default(512 * 1024 * 1024)
    .describe(
      'Outbox (events and their evidence) kept at most, in bytes; when full, evidence goes before events and low priority before high (docs/delivery.md).',
    ),
  ttlSeconds: z
    .strictObject({
      high: z
        .number()
        .positive()
        .default(30 * 86_400)
        .describe('Undelivered high-priority events are dropped (and counted) after this many seconds.'),
      normal: z
        .number()
        .positive()
        .default(7 * 86_400)
        .describe('… normal-priority events.'),
      low: z.number().positive().default(86_400).describe('… low-priority events.'),
    })
    .prefault({})
    .describe('Time-to-live of undelivered events per priority.'),
  confirmTimeoutSeconds: z
    .number()
    .positive()
    .default(60)
    .describe('delivery: service — an acked event the task service has not confirmed within this many seconds is sent again.'),
});

const tasksSchema = z
  .strictObject({
    publicKey: z
      .string()
      .superRefine((text, ctx) => {
        try {
          parsePublicKey(text);
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: (err as Error).message });
        }
      })
      .optional()
      .describe(
        "Ed25519 public key of the task service: PEM ('-----BEGIN PUBLIC KEY-----…') or the base64 of the raw 32 bytes. Tasks must then be signed (docs/decisions/0047-task-inbox.md).",
      ),
    requireSignature: z
      .boolean()
      .optional()
      .describe('Reject tasks without a valid signature (default: true when publicKey is set, false when it is not).'),
    clockSkewSeconds: z
      .number()
      .min(1)
      .default(600)
      .describe("A task whose issuedAt is further than this from the gateway's clock is rejected as stale."),
    configTimeoutSeconds: z
      .number()
      .min(1)
      .max(600)
      .default(30)
      .describe(
        'A config task rolls back when a camera it adds or changes is not streaming within this many seconds (docs/decisions/0048-config-task.md).',
      ),
  })
  .superRefine((tasks, ctx) => {
    if (tasks.requireSignature === true && tasks.publicKey === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['requireSignature'],
        message: 'requireSignature is true but no publicKey is set; set tasks.publicKey',
      });
  })
  .transform((tasks) => ({ ...tasks, requireSignature: tasks.requireSignature ?? tasks.publicKey !== undefined }));

const healthSchema = z.strictObject({
  intervalSeconds: z
    .number()
    .min(5)
    .default(30)
    .describe('How often the retained health message ({prefix}/{gateway.id}/health) is published.'),
});

/**
 * "host:port" for a listening socket: an IPv4 address, a host name or a bracketed IPv6 address, and a port
 * 1..65535 (0, "any free port", would leave Prometheus nowhere to scrape).
 */
const listenAddress = z.string().superRefine((text, ctx) => {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535) {
    ctx.addIssue({ code: 'custom', message: `expected host:port with a port 1..65535, e.g. 127.0.0.1:9464 or [::1]:9464; got '${text}'` });
  }
});

const metricsSchema = z.strictObject({
  listen: listenAddress
    .optional()
    .describe(
      'host:port where GET /metrics serves Prometheus metrics (edgepatrol_*), e.g. 127.0.0.1:9464; absent (the default): no ' +
        'metrics server. Not authenticated: bind to localhost or a management network.',
    ),
});

const modelSchema = z.strictObject({
  name: z.string().min(1).optional().describe("Model name from models/manifest.json (default: the manifest's default model)."),
  threads: wholeNumber()
    .min(1)
    .max(64)
    .default(1)
    .describe(
      'onnxruntime threads for inference, shared by all cameras. 1 leaves the other cores to decoding and preprocessing; more helps only ' +
        'with idle cores (docs/decisions.md).',
    ),
  queueDepth: wholeNumber()
    .min(1)
    .max(10)
    .default(3)
    .describe(
      'Frames of one camera waiting for the detector at most; when it is behind, the oldest are dropped and counted as skipped. 3 ' +
        'absorbs 1.5 s of delay at 2 fps (docs/decisions.md).',
    ),
  scoreThreshold: fraction('scoreThreshold').default(0.35).describe('Detections below this score are dropped before tracking.'),
  pinCores: z
    .boolean()
    .default(true)
    .describe(
      'Give the inference threads cores of their own: the last threads × models CPUs run only the models, the others run the rest of the ' +
        'agent and its ffmpeg processes. Applies only with at least one CPU left for the rest; false lets the kernel place every thread ' +
        '(docs/decisions.md, "A core for the inference").',
    ),
});

const evidenceSchema = z.strictObject({
  jpegQuality: wholeNumber().min(1).max(100).default(80).describe('JPEG quality of evidence images, 1..100.'),
  maxBytes: wholeNumber()
    .min(1_000_000)
    .default(2_000_000_000)
    .describe('Evidence images kept on disk at most, in bytes; the oldest go first (never those of undelivered events).'),
  maxAgeDays: z
    .number()
    .positive()
    .default(30)
    .describe('Evidence images older than this many days are deleted (never those of undelivered events).'),
  minFreeBytes: wholeNumber()
    .min(0)
    .default(256 * 1024 * 1024)
    .describe(
      "Free space floor of the data folder's disk, in bytes: below it evidence images are not written (events are still stored and sent, each image counted as a disk_floor drop; health says so). 0 turns it off.",
    ),
});

const sourceSchema = z
  .strictObject(
    {
      url: urlWithScheme(['rtsp', 'rtsps'], 'rtsp://user:password@192.0.2.10:554/stream1')
        .optional()
        .describe('RTSP stream of the camera: rtsp:// or rtsps://. With detectUrl: the main stream, grabbed for evidence.'),
      detectUrl: urlWithScheme(['rtsp', 'rtsps'], 'rtsp://user:password@192.0.2.10:554/stream2')
        .optional()
        .describe("The camera's sub-stream (lower resolution), decoded continuously for detection; url then only serves evidence images."),
      file: filePath.optional().describe('A video file instead of a camera (bench, demo, tests).'),
      loop: z.boolean().optional().describe('With file: start again at the end (default false).'),
    },
    { error: (iss) => (iss.input === undefined ? 'missing; every camera needs a source: { url: rtsp://… } or { file: path }' : undefined) },
  )
  .transform((src, ctx) => {
    if (src.url !== undefined && src.file !== undefined) {
      ctx.issues.push({ code: 'custom', input: src, message: 'has both url and file; expected exactly one of them' });
      return z.NEVER;
    }
    if (src.url !== undefined) {
      if (src.loop !== undefined)
        ctx.issues.push({ code: 'custom', input: src, path: ['loop'], message: 'loop applies only to a file source; remove it' });
      return src.detectUrl === undefined ? { url: src.url } : { url: src.url, detectUrl: src.detectUrl };
    }
    if (src.detectUrl !== undefined)
      ctx.issues.push({
        code: 'custom',
        input: src,
        path: ['detectUrl'],
        message: 'detectUrl is the sub-stream of a camera url; it needs url, not file',
      });
    if (src.file !== undefined) return { file: src.file, loop: src.loop ?? false };
    ctx.issues.push({ code: 'custom', input: src, message: 'has neither url nor file; expected { url: rtsp://… } or { file: path }' });
    return z.NEVER;
  });

const detectSchema = z.strictObject({
  fps: z
    .number()
    .positive()
    .max(30)
    .default(2)
    .describe('Frames per second handed to the detector, at most; a slower camera is taken at its own rate, no frame twice.'),
  width: evenNumber('width')
    .min(64)
    .max(4096)
    .default(640)
    .describe('Frames are scaled to this width before detection and evidence; even (YUV 4:2:0 frames).'),
  height: evenNumber('height')
    .min(64)
    .max(4096)
    .default(480)
    .describe('Frames are scaled to this height before detection and evidence; even (YUV 4:2:0 frames).'),
});

const locationSchema = z
  .strictObject({
    lat: z.number().min(-90).max(90).optional().describe('WGS84 latitude of the scene.'),
    lon: z.number().min(-180).max(180).optional().describe('WGS84 longitude of the scene.'),
    address: z.string().optional().describe('Street address, as the dispatchers know it.'),
    grid: z.string().optional().describe('Grid cell id used by the district for dispatch.'),
  })
  .superRefine((loc, ctx) => {
    if ((loc.lat === undefined) !== (loc.lon === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [loc.lat === undefined ? 'lat' : 'lon'],
        message: 'lat and lon go together; set both or neither',
      });
    }
  });

const point = z.tuple([fraction('x'), fraction('y')], {
  error: 'expected a point [x, y] of two numbers between 0 and 1 ([0,0] is the top-left corner of the frame, [1,1] the bottom-right)',
});

export const polygonSchema = z
  .array(point)
  .min(3, { error: 'a zone polygon needs at least 3 points' })
  .superRefine((polygon, ctx) => {
    if (polygon.length < 3) return; // reported by min(3) above
    const problem = polygonProblem(polygon);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

const HHMM = /^([01][0-9]|2[0-3]):[0-5][0-9]$/;
const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;

const scheduleWindow = z
  .strictObject({
    days: z
      .array(z.enum(WEEKDAYS))
      .min(1)
      .optional()
      .describe('Days the window opens on (default every day): mon, tue, wed, thu, fri, sat, sun.'),
    from: z.string().regex(HHMM, { error: 'expected a local time HH:MM, e.g. 07:00' }).describe('Local time the window opens, HH:MM.'),
    to: z
      .string()
      .regex(HHMM, { error: 'expected a local time HH:MM, e.g. 22:00' })
      .describe('Local time the window closes, HH:MM; earlier than from means the next day (22:00 to 06:00).'),
  })
  .superRefine((w, ctx) => {
    if (w.from === w.to)
      ctx.addIssue({
        code: 'custom',
        path: ['to'],
        message: 'from and to are the same; a window needs a length (for all day, leave schedule out)',
      });
  });

const lineSchema = z
  .tuple([point, point], { error: 'expected a line [[x1, y1], [x2, y2]] of two points between 0 and 1' })
  .refine(([a, b]) => a[0] !== b[0] || a[1] !== b[1], { error: 'the two points of the line are the same' });

const ruleBase = {
  id: identifier('rule id').optional().describe('Rule id, unique in its zone (default: the event type).'),
  type: z
    .string()
    .regex(EVENT_TYPE, {
      error:
        "event type must be snake_case: a lowercase letter, then lowercase letters, digits or '_' (e.g. street_vending); it becomes the " +
        'topic level …/event/{type}',
    })
    .describe('Event type reported when the rule fires, e.g. street_vending, fire_lane_parking (default: the preset name).'),
  preset: z.enum(PRESET_NAMES).optional().describe('Governance preset whose kind and defaults the rule starts from (docs/rules.md).'),
  schedule: z
    .array(scheduleWindow)
    .min(1)
    .optional()
    .describe('Local-time windows (gateway.timezone) in which the rule may fire (default: always).'),
  priority: z
    .enum(['high', 'normal', 'low'])
    .default('normal')
    .describe('Delivery priority of its events: when the outbox is full, low goes first; each has its own time-to-live.'),
  cooldownSeconds: z.number().min(0).default(60).describe('After an event of this rule ends, no new one starts for this many seconds.'),
  updateMinutes: z
    .number()
    .positive()
    .default(10)
    .describe('While an event lasts, an update with fresh evidence at most every this many minutes.'),
  endSeconds: z.number().min(0).default(10).describe('The event ends when the rule has not held for this many seconds.'),
};

const objectFilter = {
  classes: z
    .array(z.string().min(1))
    .min(1, { error: 'list at least one object class, e.g. [person]' })
    .describe('Detector classes the rule looks at.'),
  minScore: fraction('minScore').default(0.5).describe('Ignore detections scoring below this.'),
  minBoxArea: fraction('minBoxArea').default(0).describe('Ignore boxes smaller than this fraction of the frame area.'),
};

const presenceRule = z.strictObject({
  kind: z.literal('presence'),
  ...ruleBase,
  ...objectFilter,
});

const dwellRule = z.strictObject({
  kind: z.literal('dwell'),
  ...ruleBase,
  ...objectFilter,
  seconds: z.number().positive().describe('How long an object must stay still in the zone before the rule fires.'),
  maxMovement: fraction('maxMovement')
    .default(0.05)
    .describe('Still means the ground point moved less than this (fraction of the frame) from where dwelling started.'),
  cooldownSeconds: z.number().min(0).default(300).describe('After an event of this rule ends, no new one starts for this many seconds.'),
});

const countRule = z.strictObject({
  kind: z.literal('count'),
  ...ruleBase,
  ...objectFilter,
  min: wholeNumber().min(1).describe('The rule holds while at least this many matching objects are in the zone.'),
  seconds: z.number().min(0).default(0).describe('… for at least this many seconds.'),
});

const lineCrossRule = z.strictObject({
  kind: z.literal('line_cross'),
  ...ruleBase,
  ...objectFilter,
  line: lineSchema.describe('Directed line from its first point to its second; crossings count where the zone is.'),
  direction: z
    .enum(['forward', 'backward', 'both'])
    .default('both')
    .describe('Crossings that make events: forward is the first point→second point direction turned 90° clockwise on screen.'),
  cooldownSeconds: z
    .number()
    .min(0)
    .default(0)
    .describe('At least this many seconds between two crossing events (crossings are still counted).'),
});

const leftObjectRule = z.strictObject({
  kind: z.literal('left_object'),
  ...ruleBase,
  ...objectFilter,
  seconds: z.number().positive().describe('How long the object must stand still in the zone.'),
  maxMovement: fraction('maxMovement').default(0.02).describe('Still means its ground point moved less than this (fraction of the frame).'),
  ownerAbsentSeconds: z.number().min(0).default(60).describe('… and no person was near it for this many seconds.'),
  nearDistance: fraction('nearDistance')
    .default(0.1)
    .describe("A person is near when their ground point is within this distance (fraction of the frame) of the object's box."),
  personClasses: z.array(z.string().min(1)).default(['person']).describe('Classes that count as a person staying near.'),
});

const sceneChangeRule = z.strictObject({
  kind: z.literal('scene_change'),
  ...ruleBase,
  reference: filePath.describe(
    'Image of the zone as it should look (JPEG or PNG of the whole camera view, e.g. from `edgepatrol camera snapshot`).',
  ),
  threshold: fraction('threshold')
    .default(0.25)
    .describe('The rule holds when more than this fraction of the zone differs from the reference.'),
  pixelThreshold: fraction('pixelThreshold')
    .default(0.12)
    .describe('A pixel differs when its brightness differs by more than this (0..1), after matching the overall brightness.'),
  seconds: z.number().min(0).default(600).describe('… for at least this many seconds.'),
  ignoreClasses: z
    .array(z.string().min(1))
    .default(['person', 'bicycle', 'car', 'motorcycle', 'bus', 'truck'])
    .describe('Pixels under boxes of these classes are left out of the comparison (passers-by).'),
});

const RULE_KIND_SCHEMAS = [presenceRule, dwellRule, countRule, lineCrossRule, leftObjectRule, sceneChangeRule] as const;

const ruleSchema = z
  .preprocess(
    (raw, ctx) => {
      if (!isRecord(raw) || raw.preset === undefined) return raw;
      const applied = applyPreset(raw);
      if ('rule' in applied) return applied.rule;
      ctx.issues.push({ code: 'custom', input: raw, path: [applied.path], message: applied.message });
      return { ...raw, kind: raw.kind ?? 'presence' };
    },
    z.discriminatedUnion('kind', RULE_KIND_SCHEMAS),
  )
  .transform((rule) => ({ ...rule, id: rule.id ?? rule.type }));

const motionSchema = z.strictObject({
  enabled: z
    .boolean()
    .default(true)
    .describe('Run the detector only on frames with motion, plus refreshes while objects are tracked; false runs it on every frame.'),
  threshold: wholeNumber()
    .min(1)
    .max(255)
    .default(25)
    .describe('A pixel of the small grey image moved when it differs from the background by more than this many grey levels (0..255).'),
  minArea: fraction('minArea').default(0.002).describe('Motion when the moved pixels cover at least this fraction of the unmasked frame.'),
  backgroundSeconds: z
    .number()
    .positive()
    .default(10)
    .describe('Time constant of the background: a change that stays about this long stops counting as motion.'),
  refreshSeconds: z
    .number()
    .positive()
    .default(5)
    .describe(
      "While objects are tracked and nothing moves, detect anyway once per this many seconds (a parked car's dwell keeps counting).",
    ),
  masks: z
    .array(polygonSchema)
    .default([])
    .describe('Areas where motion is ignored (trees, a clock overlay): outlines like a zone polygon.'),
});

export const zoneSchema = z.strictObject({
  id: identifier('zone id').describe('Zone id, unique per camera.'),
  polygon: polygonSchema.describe('Zone outline, [x, y] points as fractions of the frame (0..1), at least 3, edges not crossing.'),
  masks: z
    .array(polygonSchema)
    .default([])
    .describe('Areas inside the zone that do not count (a tree, a bus stop): outlines like polygon.'),
  rules: z.array(ruleSchema).default([]).describe('What turns objects in this zone into events.'),
});

/** Checks inside one view (a camera's own zones, or a preset's): zone ids unique, rule ids unique per zone. */
function viewChecks(view: unknown, ctx: Ctx): void {
  const zones = listAt(view, 'zones');
  checkUnique(
    zones,
    (zone) => zone.id,
    (zi) => ['zones', zi, 'id'],
    'zone id',
    ctx,
  );
  zones.forEach((zone, zi) => {
    checkUnique(
      listAt(zone, 'rules'),
      (rule) => rule.id ?? rule.type,
      (ri) => ['zones', zi, 'rules', ri, 'id'],
      'rule id',
      ctx,
    );
  });
}

function listAt(parent: unknown, key: string): unknown[] {
  return isRecord(parent) ? asList(parent[key]) : [];
}

const viewFields = {
  zones: z.array(zoneSchema).default([]).describe("Zones and their rules, as in a camera's zones."),
  motionMasks: z.array(polygonSchema).default([]).describe("Areas where motion is ignored, as in a camera's motion.masks."),
};

/**
 * A view: what depends on where the camera looks (its zones with their rules, its motion masks), written as a
 * camera's `zones` and `motion.masks` are and checked by the same pieces with the same messages. A PTZ preset
 * carries one; src/rules/view.ts turns it into what the rules run on.
 */
export const viewSchema = z
  .strictObject({
    id: z
      .string()
      .min(1)
      .max(64)
      .default('config')
      .describe("Names the view in errors and logs: a PTZ preset's name; `config` for the camera's own zones."),
    ...viewFields,
  })
  // Runs even when parts are invalid, as the config's cross-checks do, so every problem shows in one pass.
  .superRefine(viewChecks, { when: () => true });

const presetSchema = z
  .strictObject({
    id: identifier('preset id').describe('Preset id, unique per camera; names the view in events, errors and logs.'),
    token: z
      .string()
      .min(1)
      .optional()
      .describe("The camera's ONVIF PTZ preset token (default: the id); what the camera is told to move to."),
    ...viewFields,
  })
  .superRefine(viewChecks, { when: () => true });

const ptzSchema = z.strictObject({
  profile: z
    .string()
    .min(1)
    .optional()
    .describe('Token of the media profile the camera is moved through (default: onvif.profile, else the first profile with PTZ).'),
  moveTimeoutSeconds: z
    .number()
    .positive()
    .max(120)
    .default(20)
    .describe('A move that has not arrived (MoveStatus IDLE, or Position at the preset) after this long has failed.'),
  settleSeconds: z
    .number()
    .min(0)
    .max(60)
    .default(1.5)
    .describe('Least time between the move command and detection: cameras report IDLE a moment before they start moving.'),
  tolerance: z
    .number()
    .positive()
    .max(0.5)
    .default(0.02)
    .describe("Largest difference per axis (ONVIF's -1..1 space) between a preset and the camera's position counted as there."),
  stableDifference: z
    .number()
    .positive()
    .max(100)
    .default(6)
    .describe(
      'After arrival, the picture counts as still once three frame pairs in a row each differ by less than this (mean grey level, 0-255).',
    ),
  stableTimeoutSeconds: z
    .number()
    .positive()
    .max(60)
    .default(8)
    .describe('Longest wait for a stable picture after arrival; a view that never steadies is evaluated anyway (logged).'),
  maxMovesPerHour: z
    .number()
    .int()
    .positive()
    .max(3600)
    .default(120)
    .describe(
      'Moves (presets and home) in any hour, to spare the motors; a patrol or verify that would exceed it fails moves_capped. Going home is never refused.',
    ),
  driftCheckSeconds: z
    .number()
    .positive()
    .max(600)
    .default(5)
    .describe(
      "How often the camera's position is read while it should stand still: a position the agent did not set means a person is steering it.",
    ),
  manualHoldSeconds: z
    .number()
    .min(0)
    .max(86_400)
    .default(300)
    .describe('After manual control is noticed, patrols and verifications leave the camera alone this long.'),
});

const patrolSchema = z.strictObject({
  id: identifier('patrol id').describe('Names the round in tasks (round), logs and `edgepatrol patrol run --round`.'),
  schedule: z
    .string()
    .min(1)
    .optional()
    .describe(
      "When the round runs by itself: a cron expression (5 fields, the camera's time zone), e.g. '*/30 7-22 * * *'. Absent: only when asked (a patrol task, patrol run).",
    ),
  stops: z
    .array(
      z.strictObject({
        preset: identifier('preset id').describe('A preset of this camera (cameras[].presets[].id).'),
        dwellSeconds: z
          .number()
          .positive()
          .max(3600)
          .default(30)
          .describe(
            "How long the preset's rules run once the picture is stable; at least the longest dwell of its rules to see a violation start.",
          ),
      }),
    )
    .min(1, { error: 'a patrol needs at least one stop' })
    .describe('The presets visited, in order; the camera goes home after the last.'),
});

const onvifSchema = z
  .strictObject({
    url: urlWithScheme(['http', 'https'], 'http://192.0.2.10/onvif/device_service').describe(
      "The camera's ONVIF device service: http(s)://host[:port]/onvif/device_service.",
    ),
    user: z.string().min(1).optional().describe('ONVIF user name.'),
    password: z.string().optional().describe('ONVIF password. A config file holding it must have mode 600.'),
    profile: z
      .string()
      .min(1)
      .optional()
      .describe('Token of the media profile whose stream is used for detection (default: as source.url/detectUrl say).'),
    evidenceProfile: z
      .string()
      .min(1)
      .optional()
      .describe('Token of the media profile grabbed for evidence images (default: as source.url says).'),
  })
  .superRefine((onvif, ctx) => {
    if (onvif.password !== undefined && onvif.user === undefined)
      ctx.addIssue({ code: 'custom', path: ['user'], message: 'password is set but user is not; set both or neither' });
  });

const cameraSchema = z
  .strictObject({
    id: identifier('camera id').describe('Unique camera id. [A-Za-z0-9_-]+'),
    name: z.string().min(1).optional().describe('Name people know the camera by (default: the id).'),
    source: sourceSchema.describe('Where frames come from: { url } for a camera, { file, loop } for a video file.'),
    detect: detectSchema.prefault({}).describe('Frame rate and size for detection.'),
    stallSeconds: z.number().positive().default(10).describe('Restart the stream when no frame arrived for this long.'),
    motion: motionSchema.prefault({}).describe('Motion gating: which frames the detector runs on.'),
    location: locationSchema.optional().describe('Where the camera looks; copied into every event.'),
    timezone: z
      .string()
      .refine(isTimeZone, { error: 'unknown time zone; expected an IANA name such as Asia/Shanghai or UTC' })
      .optional()
      .describe("IANA time zone of the rules' schedules and evidence captions (default: gateway.timezone)."),
    zones: z.array(zoneSchema).default([]).describe('Zones and their rules.'),
    model: z
      .string()
      .min(1)
      .optional()
      .describe("Model from models/manifest.json for this camera (default: model.name, else the manifest's default)."),
    classMap: z
      .record(z.string().min(1), z.string().min(1))
      .optional()
      .describe(
        'Renames detector classes for this camera before tracking and rules, e.g. { motorcycle: ebike_candidate, bicycle: ebike_candidate }.',
      ),
    onvif: onvifSchema.optional().describe('ONVIF control of the camera (PTZ presets, media profiles).'),
    presets: z
      .array(presetSchema)
      .optional()
      .describe('PTZ presets, each with its own view (zones, rules, motion masks) used while the camera is at it; needs onvif.'),
    ptz: ptzSchema.prefault({}).describe('How the camera is moved to its presets (patrols, verification): arrival, settling, move caps.'),
    patrols: z
      .array(patrolSchema)
      .optional()
      .describe("Patrol rounds over the camera's presets, by schedule or on request; needs presets."),
  })
  .transform((cam) => ({ ...cam, name: cam.name ?? cam.id }));

type Ctx = z.core.$RefinementCtx<unknown>;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function asList(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** Reports every id that repeats an earlier one in the same list; `idOf` may return undefined for unusable entries. */
export function checkUnique(
  items: unknown[],
  idOf: (item: Record<string, unknown>) => unknown,
  path: (i: number) => (string | number)[],
  what: string,
  ctx: Ctx,
): void {
  const first = new Map<string, number>();
  items.forEach((item, i) => {
    if (!isRecord(item)) return;
    const id = idOf(item);
    if (typeof id !== 'string') return;
    const earlier = first.get(id);
    if (earlier === undefined) first.set(id, i);
    else
      ctx.addIssue({
        code: 'custom',
        path: path(i),
        message: `duplicate ${what} '${id}' (first used at index ${earlier}); ${what}s must be unique`,
      });
  });
}

/** Cross-checks on the partly parsed file; written defensively because the parts may themselves be invalid. */
function crossChecks(root: unknown, ctx: Ctx): void {
  if (!isRecord(root)) return;
  const cameras = asList(root.cameras);
  checkUnique(
    cameras,
    (c) => c.id,
    (i) => ['cameras', i, 'id'],
    'camera id',
    ctx,
  );
  cameras.forEach((cam, ci) => {
    if (!isRecord(cam)) return;
    const zones = asList(cam.zones);
    checkUnique(
      zones,
      (z) => z.id,
      (zi) => ['cameras', ci, 'zones', zi, 'id'],
      'zone id',
      ctx,
    );
    zones.forEach((zone, zi) => {
      if (!isRecord(zone)) return;
      checkUnique(
        asList(zone.rules),
        (r) => r.id ?? r.type,
        (ri) => ['cameras', ci, 'zones', zi, 'rules', ri, 'id'],
        'rule id',
        ctx,
      );
    });
    const presetIds = new Set(asList(cam.presets).flatMap((pr) => (isRecord(pr) && typeof pr.id === 'string' ? [pr.id] : [])));
    checkUnique(
      asList(cam.patrols),
      (p) => p.id,
      (pi) => ['cameras', ci, 'patrols', pi, 'id'],
      'patrol id',
      ctx,
    );
    asList(cam.patrols).forEach((round, pi) => {
      if (!isRecord(round)) return;
      if (typeof round.schedule === 'string') {
        const problem = cronProblem(round.schedule);
        if (problem)
          ctx.addIssue({ code: 'custom', path: ['cameras', ci, 'patrols', pi, 'schedule'], message: `not a cron expression: ${problem}` });
      }
      asList(round.stops).forEach((stop, si) => {
        if (isRecord(stop) && typeof stop.preset === 'string' && !presetIds.has(stop.preset))
          ctx.addIssue({
            code: 'custom',
            path: ['cameras', ci, 'patrols', pi, 'stops', si, 'preset'],
            message: `no preset ${stop.preset} on this camera; its presets: ${[...presetIds].join(', ') || 'none (add presets first)'}`,
          });
      });
    });
    if (cam.presets === undefined) return;
    checkUnique(
      asList(cam.presets),
      (p) => p.id,
      (pi) => ['cameras', ci, 'presets', pi, 'id'],
      'preset id',
      ctx,
    );
    if (cam.onvif === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['cameras', ci, 'presets'],
        message: 'presets need onvif (the camera is moved to a preset over ONVIF); add onvif: { url, user, password } or remove presets',
      });
  });

  const mqtt = root.mqtt;
  if (!isRecord(mqtt)) return;
  if (mqtt.password !== undefined && mqtt.username === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['mqtt', 'username'],
      message: 'password is set but username is not; MQTT sends a password only with a user name',
    });
  }
  const scheme = typeof mqtt.url === 'string' ? urlScheme(mqtt.url) : null;
  if (mqtt.tls !== undefined && scheme !== null && !MQTT_TLS_SCHEMES.includes(scheme)) {
    ctx.addIssue({
      code: 'custom',
      path: ['mqtt', 'url'],
      message: `tls is configured but the url uses ${scheme}://; use mqtts:// or wss://`,
    });
  }
}

export const configSchema = z
  .strictObject({
    gateway: gatewaySchema.describe('This gateway.'),
    mqtt: mqttSchema.describe('The central broker.'),
    model: modelSchema.prefault({}).describe('The on-device detector.'),
    evidence: evidenceSchema.prefault({}).describe('Evidence images.'),
    outbox: outboxSchema.prefault({}).describe('The durable event store on this gateway.'),
    health: healthSchema.prefault({}).describe('The health message.'),
    metrics: metricsSchema.prefault({}).describe('Prometheus metrics over HTTP (off unless listen is set).'),
    tasks: tasksSchema.prefault({}).describe('Tasks the task service sends down ({prefix}/{gateway.id}/task/{taskId}): who may send them.'),
    cameras: z
      .array(cameraSchema)
      .describe(
        'The cameras this gateway watches. Empty on a gateway being provisioned: the agent then runs (availability, health) and watches nothing until cameras are added (edgepatrol camera add) and it is reloaded.',
      ),
  })
  .superRefine(crossChecks, { when: () => true })
  .transform((cfg) => ({
    ...cfg,
    mqtt: { ...cfg.mqtt, clientId: cfg.mqtt.clientId ?? `edgepatrol-${cfg.gateway.id}` },
    cameras: cfg.cameras.map((cam) => ({ ...cam, timezone: cam.timezone ?? cfg.gateway.timezone })),
  }));

/** A validated config with every default filled in and every path absolute. */
export type Config = z.output<typeof configSchema>;
export type GatewayConfig = Config['gateway'];
export type MqttConfig = Config['mqtt'];
export type ModelConfig = Config['model'];
export type MetricsConfig = Config['metrics'];
export type TasksConfig = Config['tasks'];
export type CameraConfig = Config['cameras'][number];
export type SourceConfig = CameraConfig['source'];
export type LocationConfig = NonNullable<CameraConfig['location']>;
export type ZoneConfig = CameraConfig['zones'][number];
export type OnvifConfig = NonNullable<CameraConfig['onvif']>;
export type PresetConfig = NonNullable<CameraConfig['presets']>[number];
export type PtzConfig = CameraConfig['ptz'];
export type PatrolConfig = NonNullable<CameraConfig['patrols']>[number];
export type RuleConfig = ZoneConfig['rules'][number];
export type PresenceRuleConfig = Extract<RuleConfig, { kind: 'presence' }>;
export type DwellRuleConfig = Extract<RuleConfig, { kind: 'dwell' }>;
export type CountRuleConfig = Extract<RuleConfig, { kind: 'count' }>;
export type LineCrossRuleConfig = Extract<RuleConfig, { kind: 'line_cross' }>;
export type LeftObjectRuleConfig = Extract<RuleConfig, { kind: 'left_object' }>;
export type SceneChangeRuleConfig = Extract<RuleConfig, { kind: 'scene_change' }>;
/** A rule that looks at tracked objects (every kind but scene_change). */
export type ObjectRuleConfig = Exclude<RuleConfig, { kind: 'scene_change' }>;
export type ScheduleWindow = NonNullable<RuleConfig['schedule']>[number];
/** What a person writes: defaults and derived values may be left out. */
export type ConfigInput = z.input<typeof configSchema>;

/** Why `expr` is not a cron expression croner accepts (5 or 6 fields), or null. */
function cronProblem(expr: string): string | null {
  try {
    new Cron(expr, { paused: true }).stop();
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}
