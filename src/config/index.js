export { configSchema, } from './schema.js';
export { loadConfig, parseConfig, ConfigError, formatConfigError, formatPath } from './load.js';
export { checkClasses } from './classes.js';
export { configJsonSchema, renderConfigJsonSchema } from './json-schema.js';
