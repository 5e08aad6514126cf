export { HEALTH_SCHEMA_ID, healthPayloadSchema } from './payload.js';
export type { HealthPayload } from './payload.js';
export { HealthSampler, hottestZone } from './sampler.js';
export type { HealthInputs, HealthSamplerOptions } from './sampler.js';
