export { Uplink } from './uplink.js';
export type { UplinkEvents, UplinkOptions, UplinkStatus, UplinkTls } from './uplink.js';
