export { Uplink } from './uplink.js';
export type { UplinkEvents, UplinkOptions, UplinkStatus } from './uplink.js';
export type { UplinkTls } from './session.js';
export type { InboundCounts, InboundHandler, InboundStatus } from './inbound.js';
export { ACK_SCHEMA_ID, ackPayloadSchema, availabilityPayloadSchema, evidencePropertiesSchema } from './contract.js';
export type { AckPayload, AvailabilityPayload, EvidenceProperties } from './contract.js';
