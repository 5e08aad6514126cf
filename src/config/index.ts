export {
  configSchema,
  polygonSchema,
  viewSchema,
  type Config,
  type ConfigInput,
  type GatewayConfig,
  type MqttConfig,
  type ModelConfig,
  type CameraConfig,
  type SourceConfig,
  type LocationConfig,
  type ZoneConfig,
  type OnvifConfig,
  type PresetConfig,
  type PtzConfig,
  type PatrolConfig,
  type RuleConfig,
  type PresenceRuleConfig,
  type DwellRuleConfig,
  type CountRuleConfig,
  type LineCrossRuleConfig,
  type LeftObjectRuleConfig,
  type SceneChangeRuleConfig,
  type ObjectRuleConfig,
  type ScheduleWindow,
} from './schema.js';
export { loadConfig, parseConfig, secretsIn, ConfigError, formatConfigError, formatPath, type ConfigIssue } from './load.js';
export { checkClasses } from './classes.js';
export { configJsonSchema, renderConfigJsonSchema } from './json-schema.js';
export { addCamera, addZoneRule, setZone, writeFileAtomic, ConfigEditError, type SetZoneOptions } from './edit.js';
export { keepRedacted, redact, redactedLeft } from './redact.js';
export { StagedConfig } from './replace.js';
