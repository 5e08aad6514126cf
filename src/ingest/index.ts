export { FrameSource } from './frame-source.js';
export type { FrameSourceOptions, FrameSourceStats, SourceState, StreamState } from './frame-source.js';
export type { BackoffOptions } from '../common/backoff.js';
export { grabFrame, type GrabOptions } from './snapshot.js';
