export { CameraRules, OCCLUSION_SECONDS, type CameraRulesOptions } from './camera.js';
export type { RuleHit, RuleObject } from './hit.js';
export { groundPoint, pointInPolygon, polygonProblem, type Point, type Box } from './geometry.js';
