export { discover, parseProbeMatches, type DiscoveredCamera, type DiscoverOptions } from './discovery.js';
export {
  OnvifDevice,
  type Arrival,
  type ArriveOptions,
  type DeviceInformation,
  type MoveState,
  type OnvifDeviceOptions,
  type Preset,
  type Profile,
  type PtzStatus,
  type PtzVector,
  type ServiceAddresses,
} from './device.js';
export { OnvifError, type OnvifErrorKind, type SoapFault } from './errors.js';
export { chooseStreams, type StreamChoice } from './streams.js';
