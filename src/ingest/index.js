export { FrameSource } from './frame-source.js';
export { grabFrame } from './snapshot.js';
