export { Uplink } from './uplink.js';
export { ACK_SCHEMA_ID, ackPayloadSchema, availabilityPayloadSchema, evidencePropertiesSchema } from './contract.js';
