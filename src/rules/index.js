export { CameraRules, OCCLUSION_SECONDS, SceneReferenceError, referenceKey } from './camera.js';
export { END_REASONS } from './hit.js';
export { groundPoint, pointInPolygon, polygonProblem, sideOf } from './geometry.js';
export { inSchedule, localTime } from './schedule.js';
export { PRESETS, PRESET_NAMES, RULE_KINDS, applyPreset } from './presets.js';
export { greyThumb, sceneDifference, THUMB_WIDTH, THUMB_HEIGHT } from './scene.js';
