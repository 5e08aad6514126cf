export type { RgbFrame, YuvFrame, Frame, Detection } from './types.js';
export { frameBytes, i420Layout, toRgb } from './yuv.js';
export {
  ModelError,
  loadManifest,
  resolveModel,
  readVerifiedModel,
  defaultModelsDir,
  expectedOutput,
  outputFits,
  ManifestSchema,
  ModelSpecSchema,
  PreprocessSchema,
  DecoderSchema,
  DECODER_KINDS,
  type Manifest,
  type LoadedManifest,
  type ModelSpec,
  type InputQuantization,
  type Preprocess,
  type ResolvedModel,
  type DecoderSpec,
} from './manifest.js';
export { Preprocessor, type RgbImage, type InputMapping, type ModelInput } from './preprocess.js';
export { nativeVision, type VisionAddon } from './native.js';
export { decodeNanodet, nanodetCellCount, type NanodetLayout } from './nanodet.js';
export { decodeYolov5, decodeYolov8, type YoloLayout } from './yolo.js';
export { createDecoder, type OutputDecoder } from './decoders.js';
export { Candidates, nms, iou } from './nms.js';
export { remapClasses, type ClassMap } from './classes.js';
export { openDetector } from './detector.js';
export {
  openModelSession,
  loadModelSession,
  inputTensor,
  emptyInput,
  type Detector,
  type DetectorOptions,
  type ModelSession,
} from './inference.js';
export { tuneMalloc, mallocAddon, MALLOC_THRESHOLD_BYTES, MALLOC_TOP_PAD_BYTES, type MallocTuning } from './malloc.js';
