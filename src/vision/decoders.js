import { decodeNanodet } from './nanodet.js';
import { decodeYolov5, decodeYolov8 } from './yolo.js';
/**
 * The decoder for a model's declared kind, bound to its input size and to the output dims the model really
 * produced (checked against the kind beforehand, see `expectedOutput`).
 */
export function createDecoder(spec, inputWidth, inputHeight, dims) {
    switch (spec.kind) {
        case 'nanodet': {
            const layout = { inputWidth, inputHeight, strides: spec.strides, regMax: spec.regMax, numClasses: spec.numClasses };
            return (out, thr, into) => decodeNanodet(out, layout, thr, into);
        }
        case 'yolov5': {
            const layout = { inputWidth, inputHeight, numClasses: spec.numClasses };
            const boxes = dims[1];
            return (out, thr, into) => decodeYolov5(out, boxes, layout, thr, into);
        }
        case 'yolov8': {
            const layout = { inputWidth, inputHeight, numClasses: spec.numClasses };
            const boxes = dims[2];
            return (out, thr, into) => decodeYolov8(out, boxes, layout, thr, into);
        }
    }
}
