import { ConfigError, checkClasses, type CameraConfig, type Config, type ConfigIssue } from '../config/index.js';
import { resolveModel, type LoadedManifest } from '../vision/index.js';

/** The model a camera runs: its own `model`, else the gateway's `model.name`, else the manifest's default. */
export function cameraModelName(config: Config, cam: CameraConfig): string | undefined {
  return cam.model ?? config.model.name;
}

/**
 * The config checked against the models it names, as every command that runs cameras needs it: each camera's
 * `model` exists in the manifest, and each rule's classes are ones that camera's rules will see (its model's
 * classes after its `classMap`). Throws ConfigError listing every problem with its path.
 */
export function checkConfigAgainstModels(configFile: string, config: Config, manifest: LoadedManifest): void {
  const known = Object.keys(manifest.models);
  const modelIssues: ConfigIssue[] = config.cameras.flatMap((cam, i) =>
    cam.model === undefined || known.includes(cam.model)
      ? []
      : [
          {
            path: `cameras[${i}].model`,
            message: `camera ${cam.id}: no model '${cam.model}' in ${manifest.file}; known models: ${known.join(', ')} (edgepatrol model list)`,
          },
        ],
  );
  if (modelIssues.length) throw new ConfigError(configFile, modelIssues);
  const issues = checkClasses(config, (cam) => {
    const map = cam.classMap ?? {};
    return resolveModel(manifest, cameraModelName(config, cam)).classes.map((c) => map[c] ?? c);
  });
  if (issues.length) throw new ConfigError(configFile, issues);
}
