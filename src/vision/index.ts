export type { RgbFrame, Detection } from './types.js';
export {
  ModelError, loadManifest, resolveModel, readVerifiedModel, defaultModelsDir,
  ManifestSchema, ModelSpecSchema, PreprocessSchema,
  type Manifest, type LoadedManifest, type ModelSpec, type Preprocess, type ResolvedModel,
} from './manifest.js';
export { Preprocessor, type RgbImage } from './preprocess.js';
export { decodeNanodet, nanodetCellCount, type NanodetLayout } from './nanodet.js';
export { Candidates, nms, iou } from './nms.js';
export { openDetector, openModelSession, type Detector, type DetectorOptions, type ModelSession } from './detector.js';
