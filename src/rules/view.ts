import { resolve } from 'node:path';
import type { z } from 'zod';
import type { CameraConfig, RuleConfig, SceneChangeRuleConfig, ZoneConfig } from '../config/index.js';
import { ConfigError, configMessage, formatPath, KEY_SEPARATOR, type ConfigIssue } from '../config/load.js';
import { viewSchema } from '../config/schema.js';
import { decodeImage } from '../common/jpeg.js';
import { greyThumb, type Thumb } from './scene.js';

/**
 * A view: what depends on where the camera looks. Its schema (src/config/schema.ts, `viewSchema`) checks it with
 * the config's own pieces and messages; a camera's PTZ preset carries one. The camera's own config is the view
 * `config` (configView).
 */
export { viewSchema };

/** A validated view: defaults filled in, presets applied, rule ids set. */
export type CameraView = z.output<typeof viewSchema>;
/** What a view is written as. */
export type ViewInput = z.input<typeof viewSchema>;

/** The view a camera's config describes. */
export function configView(camera: CameraConfig): CameraView {
  return { id: 'config', zones: camera.zones, motionMasks: camera.motion.masks };
}

/**
 * The camera's config as it is while `view` is on: what the evidence recorder draws an event's zone from and the
 * motion gate takes its masks from. The camera's settings that do not depend on where it looks stay as they are.
 */
export function cameraWithView(camera: CameraConfig, view: CameraView): CameraConfig {
  return { ...camera, zones: view.zones, motion: { ...camera.motion, masks: view.motionMasks } };
}

/**
 * Checks a view with the config's own schema pieces and messages; throws ConfigError whose `file` is `source`
 * (the file or task it came from) and whose issue paths start at the view (`zones[1].polygon`). Relative
 * scene_change reference paths count from `baseDir`, as the config file's count from its folder.
 */
export function parseView(raw: unknown, source: string, baseDir = '.'): CameraView {
  const result = viewSchema.safeParse(raw, { error: configMessage });
  if (!result.success) {
    // As the config file's: one issue per unknown key, at the key.
    throw new ConfigError(
      source,
      result.error.issues.flatMap((iss): ConfigIssue[] => {
        const path = iss.path.filter((k): k is string | number => typeof k !== 'symbol');
        if (iss.code !== 'unrecognized_keys') return [{ path: formatPath(path), message: iss.message }];
        const messages = iss.message.split(KEY_SEPARATOR);
        return iss.keys.map((key, i) => ({ path: formatPath([...path, key]), message: messages[i] ?? 'unknown key' }));
      }),
    );
  }
  const view = result.data;
  return {
    ...view,
    zones: view.zones.map((zone) => ({
      ...zone,
      rules: zone.rules.map((rule) => (rule.kind === 'scene_change' ? { ...rule, reference: resolve(baseDir, rule.reference) } : rule)),
    })),
  };
}

/** Key of a scene_change rule's reference in the map loadReferences returns. */
export function referenceKey(zone: ZoneConfig, rule: RuleConfig): string {
  return `${zone.id}/${rule.id}`;
}

/** A scene_change reference that cannot be used; the message names camera, view, zone, rule and file. */
export class SceneReferenceError extends Error {
  override name = 'SceneReferenceError';
}

/**
 * The grey thumbnails of the scene_change references of `view` on `camera`, by `referenceKey`; throws
 * SceneReferenceError for the first one that cannot be used.
 */
export async function loadReferences(camera: CameraConfig, view: CameraView): Promise<Map<string, Thumb>> {
  const references = new Map<string, Thumb>();
  for (const zone of view.zones) {
    for (const rule of zone.rules) {
      if (rule.kind === 'scene_change') references.set(referenceKey(zone, rule), await loadReference(camera, view, zone, rule));
    }
  }
  return references;
}

/** Aspect ratios further apart than this mean the reference shows another view (or a crop) of the camera. */
const ASPECT_TOLERANCE = 0.03;

/** Where a rule is, for messages: the view is named when it is not the camera's own. */
export function ruleWhere(camera: CameraConfig, view: CameraView, zone: ZoneConfig, rule: RuleConfig): string {
  return `camera ${camera.id}${view.id === 'config' ? '' : `, view ${view.id}`}, zone ${zone.id}, rule ${rule.id}`;
}

async function loadReference(camera: CameraConfig, view: CameraView, zone: ZoneConfig, rule: SceneChangeRuleConfig): Promise<Thumb> {
  const where = ruleWhere(camera, view, zone, rule);
  const fix = `take one with: edgepatrol camera snapshot ${camera.id} --out ${rule.reference}`;
  let img;
  try {
    img = await decodeImage(rule.reference);
  } catch (err) {
    throw new SceneReferenceError(`${where}: cannot read the scene_change reference ${rule.reference} (${(err as Error).message}); ${fix}`);
  }
  const want = camera.detect.width / camera.detect.height;
  if (Math.abs(img.width / img.height - want) / want > ASPECT_TOLERANCE) {
    throw new SceneReferenceError(
      `${where}: the reference ${rule.reference} is ${img.width}×${img.height}, not the camera's aspect ratio ` +
        `${camera.detect.width}:${camera.detect.height}; it must show the whole camera view; ${fix}`,
    );
  }
  return greyThumb(img);
}
