import type { CameraConfig, Config } from './schema.js';
import type { ConfigIssue } from './load.js';

/** Rule keys that hold class names. */
const CLASS_LISTS = new Set(['classes', 'personClasses', 'ignoreClasses']);

/**
 * Issues for rule classes the model does not know, e.g. `cameras[0].zones[1].rules[0].classes[2]`.
 * Kept apart from parsing so the config can be validated without loading a model. `classes` is one list for
 * every camera, or the list a camera's rules see (its model's classes after its classMap).
 */
export function checkClasses(config: Config, classes: readonly string[] | ((cam: CameraConfig) => readonly string[])): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  config.cameras.forEach((cam, ci) => {
    const classNames = typeof classes === 'function' ? classes(cam) : classes;
    const known = new Set(classNames);
    cam.zones.forEach((zone, zi) => {
      zone.rules.forEach((rule, ri) => {
        const lists: [string, readonly string[]][] = Object.entries(rule).filter(
          (e): e is [string, string[]] => CLASS_LISTS.has(e[0]) && Array.isArray(e[1]),
        );
        for (const [key, names] of lists)
          names.forEach((name, k) => {
            if (known.has(name)) return;
            const lower = classNames.find((c) => c.toLowerCase() === name.toLowerCase());
            issues.push({
              path: `cameras[${ci}].zones[${zi}].rules[${ri}].${key}[${k}]`,
              message:
                `the model has no class '${name}'${lower ? ` (did you mean '${lower}'?)` : ''}; its classes are listed in ` +
                `models/manifest.json, e.g. ${classNames.slice(0, 4).join(', ')}`,
            });
          });
      });
    });
  });
  return issues;
}
