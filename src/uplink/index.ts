export { Uplink } from './uplink.js';
export type { UplinkEvents, UplinkOptions, UplinkStatus, UplinkTls } from './uplink.js';
export { ACK_SCHEMA_ID, ackPayloadSchema, availabilityPayloadSchema, evidencePropertiesSchema } from './contract.js';
export type { AckPayload, AvailabilityPayload, EvidenceProperties } from './contract.js';
