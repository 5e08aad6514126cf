export { HEALTH_SCHEMA_ID, healthPayloadSchema } from './payload.js';
export { HealthSampler, hottestZone } from './sampler.js';
