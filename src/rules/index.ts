export { CameraRules, OCCLUSION_SECONDS, type CameraRulesOptions, type PauseReason } from './camera.js';
export {
  SceneReferenceError,
  cameraWithView,
  configView,
  loadReferences,
  parseView,
  referenceKey,
  viewSchema,
  type CameraView,
  type ViewInput,
} from './view.js';
export { END_REASONS, type RuleHit, type RuleObject, type UnseenObject, type EventState, type EndReason } from './hit.js';
export { groundPoint, pointInPolygon, polygonProblem, sideOf, type Point, type Box } from '../common/geometry.js';
export { inSchedule, localTime } from './schedule.js';
export { PRESETS, PRESET_NAMES, RULE_KINDS, applyPreset, type PresetName, type RuleKind, type Preset } from '../config/presets.js';
export { greyThumb, sceneDifference, THUMB_WIDTH, THUMB_HEIGHT, type Thumb } from './scene.js';
