/**
 * The governance types of the district as presets: each names the rule kind that detects it and that kind's
 * defaults. A rule written `{ preset: fire_lane_parking }` becomes a full rule of the preset's default kind;
 * every key the person writes overrides the preset's value. docs/rules.md explains each one, including what it
 * can and cannot see with the default COCO model. Pure data, read by the config schema.
 */

export const RULE_KINDS = ['presence', 'dwell', 'count', 'line_cross', 'left_object', 'scene_change'] as const;
export type RuleKind = (typeof RULE_KINDS)[number];

/** Vehicles the default COCO model knows. */
const VEHICLES = ['car', 'truck', 'bus', 'motorcycle'];

export interface Preset {
  /** 中文 name used by the district. */
  zh: string;
  /** The kind used when the rule does not name one. */
  kind: RuleKind;
  /** Defaults per kind the preset supports; a rule of another kind with this preset is a config error. */
  defaults: Partial<Record<RuleKind, Record<string, unknown>>>;
  /** Whether the default COCO model alone can do it, in one line for docs and `rules test`. */
  needs: string;
}

export const PRESETS = {
  street_vending: {
    zh: '占道经营',
    kind: 'dwell',
    defaults: {
      // A stall is people and their gear staying put; COCO has no "stall", but umbrellas, chairs and tables are its parts.
      dwell: {
        classes: ['person', 'umbrella', 'chair', 'dining table'],
        seconds: 300,
        maxMovement: 0.06,
        minScore: 0.45,
        cooldownSeconds: 600,
      },
      count: { classes: ['person', 'umbrella', 'chair', 'dining table'], min: 3, seconds: 300, minScore: 0.45, cooldownSeconds: 600 },
    },
    needs:
      'default model: people, umbrellas, chairs and tables staying 5 min; it cannot tell a vendor from someone waiting, so draw the zone ' +
      'where nobody should stay',
  },
  illegal_dumping: {
    zh: '偷倒垃圾',
    kind: 'left_object',
    defaults: {
      left_object: {
        classes: ['suitcase', 'backpack', 'handbag', 'chair', 'couch', 'bed', 'tv', 'refrigerator', 'toilet', 'microwave', 'oven', 'sink'],
        seconds: 120,
        ownerAbsentSeconds: 60,
        minScore: 0.4,
        cooldownSeconds: 600,
      },
      scene_change: { threshold: 0.2, seconds: 600, cooldownSeconds: 3600 },
    },
    needs:
      'default model: dumped furniture, appliances and luggage (left_object); bags of rubbish and rubble are no COCO class: use ' +
      'scene_change against a reference of the clean spot, or a custom model',
  },
  bin_overflow: {
    zh: '垃圾桶满溢',
    kind: 'scene_change',
    defaults: {
      scene_change: { threshold: 0.2, seconds: 900, cooldownSeconds: 3600 },
      presence: { minScore: 0.5, cooldownSeconds: 3600 },
      dwell: { seconds: 300, minScore: 0.5, cooldownSeconds: 3600 },
    },
    needs:
      'default model: scene_change against a reference photo of the clean bin area; with a custom model that has an overflowing-bin ' +
      'class: presence or dwell of that class',
  },
  fire_lane_parking: {
    zh: '违停消防通道',
    kind: 'dwell',
    defaults: {
      dwell: { classes: VEHICLES, seconds: 120, maxMovement: 0.03, minScore: 0.4, cooldownSeconds: 300 },
    },
    needs: 'default model: cars, trucks, buses and motorcycles standing still in the lane for 2 min',
  },
  ebike_entry: {
    zh: '电动车入楼栋',
    kind: 'line_cross',
    defaults: {
      line_cross: { classes: ['bicycle', 'motorcycle'], direction: 'forward', minScore: 0.4, cooldownSeconds: 0 },
      presence: { classes: ['bicycle', 'motorcycle'], minScore: 0.4, cooldownSeconds: 300 },
    },
    needs:
      'default model: any bicycle or motorcycle crossing the doorway line inwards; COCO cannot tell an e-bike from a pedal bicycle, a ' +
      'custom model with an e-bike class can',
  },
  illegal_construction: {
    zh: '违法建筑',
    kind: 'scene_change',
    defaults: {
      scene_change: { threshold: 0.25, seconds: 1800, cooldownSeconds: 86400 },
    },
    needs:
      'default model: scene_change against a reference photo of the approved state (a fixed view or a PTZ preset); renew the reference ' +
      'after each verified case and with the seasons',
  },
  reserve_land_intrusion: {
    zh: '储备用地',
    kind: 'dwell',
    defaults: {
      dwell: { classes: ['person', ...VEHICLES, 'bicycle'], seconds: 60, maxMovement: 0.2, minScore: 0.5, cooldownSeconds: 1800 },
      presence: { classes: ['person', ...VEHICLES, 'bicycle'], minScore: 0.5, cooldownSeconds: 1800 },
      scene_change: { threshold: 0.2, seconds: 1800, cooldownSeconds: 86400 },
    },
    needs:
      'default model: people and vehicles staying on the land 1 min (dwell); new structures or dumping on it: scene_change with a reference',
  },
} as const satisfies Record<string, Preset>;

export type PresetName = keyof typeof PRESETS;
export const PRESET_NAMES = Object.keys(PRESETS) as PresetName[];

export function isPresetName(name: unknown): name is PresetName {
  return typeof name === 'string' && Object.hasOwn(PRESETS, name);
}

/**
 * The rule as written, with the preset's kind, type and defaults filled in under it; or a message for the person
 * who wrote it. Keys the person wrote always win.
 */
export function applyPreset(rule: Record<string, unknown>): { rule: Record<string, unknown> } | { path: string; message: string } {
  const name = rule.preset;
  if (!isPresetName(name)) {
    return { path: 'preset', message: `unknown preset '${String(name)}'; expected one of: ${PRESET_NAMES.join(', ')}` };
  }
  const preset: Preset = PRESETS[name];
  const kind = (rule.kind ?? preset.kind) as RuleKind;
  const defaults = preset.defaults[kind];
  if (!defaults) {
    return { path: 'kind', message: `preset ${name} works with kind ${Object.keys(preset.defaults).join(' or ')}, not '${String(kind)}'` };
  }
  return { rule: { kind, type: name, ...defaults, ...rule } };
}
