export { HEALTH_SCHEMA_ID, healthPayloadSchema } from '../uplink/health-payload.js';
export type { HealthPayload } from '../uplink/health-payload.js';
export { HealthSampler, hottestZone } from './sampler.js';
export type { HealthInputs, HealthSamplerOptions } from './sampler.js';
