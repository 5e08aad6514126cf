export { ModelError, loadManifest, resolveModel, readVerifiedModel, defaultModelsDir, expectedOutput, outputFits, ManifestSchema, ModelSpecSchema, PreprocessSchema, DecoderSchema, DECODER_KINDS, } from './manifest.js';
export { Preprocessor } from './preprocess.js';
export { decodeNanodet, nanodetCellCount } from './nanodet.js';
export { decodeYolov5, decodeYolov8 } from './yolo.js';
export { createDecoder } from './decoders.js';
export { Candidates, nms, iou } from './nms.js';
export { remapClasses } from './classes.js';
export { openDetector, openModelSession, loadModelSession, } from './detector.js';
