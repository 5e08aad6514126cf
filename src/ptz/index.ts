export { greySpread, meanDifference, PtzCamera, PtzError, type Arrived, type Lease, type LeaseKind, type PtzFailure } from './camera.js';
export { isPtzCamera, PtzHub } from './hub.js';
export { runRound, sleep, type RoundResult, type RoundStop, type StopResult } from './patrol.js';
export { runVerify, type InconclusiveWhy, type Verdict, type VerifyResult, type VerifyTarget } from './verify.js';
