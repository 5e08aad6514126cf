export { Uplink } from './uplink.js';
export type { UplinkEvents, UplinkOptions, UplinkStatus } from './uplink.js';
export type { UplinkTls } from './session.js';
export type { InboundCounts, InboundHandler, InboundStatus, RefusedMessage, SubscribeOptions } from './inbound.js';
export { ACK_SCHEMA_ID, ackPayloadSchema, availabilityPayloadSchema, evidencePropertiesSchema } from './contract.js';
export type { AckPayload, AvailabilityPayload, EvidenceProperties } from './contract.js';
export {
  cameraSnapshotRequestSchema,
  errorResponseSchema,
  noArgumentsRequestSchema,
  REQUEST_ERROR_CODES,
  REQUEST_VERBS,
  requestPayloadSchema,
  requestSchemas,
  responseDataSchemas,
  responsePayloadSchema,
  responseSchemaFor,
  transactionSchema,
} from './requests-contract.js';
export type { ErrorResponse, RequestErrorCode, RequestVerb, ResponseData } from './requests-contract.js';
