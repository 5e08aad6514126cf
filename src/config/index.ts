export {
  configSchema,
  type Config,
  type ConfigInput,
  type GatewayConfig,
  type MqttConfig,
  type ModelConfig,
  type CameraConfig,
  type SourceConfig,
  type LocationConfig,
  type ZoneConfig,
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
export { loadConfig, parseConfig, ConfigError, formatConfigError, formatPath, type ConfigIssue } from './load.js';
export { checkClasses } from './classes.js';
export { configJsonSchema, renderConfigJsonSchema } from './json-schema.js';
