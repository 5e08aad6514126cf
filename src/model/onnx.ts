import { readFile, rename, writeFile } from 'node:fs/promises';
import onnxProto from 'onnx-proto';
import type { onnx } from 'onnx-proto';
import type { HostTensor } from './tensor.js';

// onnx-proto is CommonJS with a single module.exports object, so its namespace only exists on the default import.
const pb = onnxProto.onnx;
export type { onnx };

const DataType = pb.TensorProto.DataType;
const AttrType = pb.AttributeProto.AttributeType;

const elemTypes: Record<HostTensor['dtype'], number> = {
  float32: DataType.FLOAT,
  int32: DataType.INT32,
  int64: DataType.INT64,
  int8: DataType.INT8,
  uint8: DataType.UINT8,
};

/** A node attribute before it gets its name; build with the `attr` helpers. */
export type Attr = Omit<onnx.IAttributeProto, 'name'>;

export const attr = {
  int: (i: number): Attr => ({ type: AttrType.INT, i }),
  ints: (ints: readonly number[]): Attr => ({ type: AttrType.INTS, ints: [...ints] }),
  float: (f: number): Attr => ({ type: AttrType.FLOAT, f }),
  string: (s: string): Attr => ({ type: AttrType.STRING, s: Buffer.from(s, 'utf8') }),
};

export function tensorToProto(name: string, t: HostTensor): onnx.ITensorProto {
  const raw = t.dtype === 'int64' ? BigInt64Array.from(t.data, (v) => BigInt(v)) : t.data;
  return {
    name,
    dataType: elemTypes[t.dtype],
    dims: [...t.shape],
    rawData: new Uint8Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)),
  };
}

export function tensorFromProto(p: onnx.ITensorProto): HostTensor {
  const shape = (p.dims ?? []).map(Number);
  const raw = p.rawData ?? new Uint8Array(0);
  const bytes = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
  switch (p.dataType) {
    case DataType.FLOAT:
      return { dtype: 'float32', shape, data: raw.byteLength ? new Float32Array(bytes) : Float32Array.from(p.floatData ?? []) };
    case DataType.INT32:
      return { dtype: 'int32', shape, data: raw.byteLength ? new Int32Array(bytes) : Int32Array.from(p.int32Data ?? []) };
    case DataType.INT64:
      return {
        dtype: 'int64',
        shape,
        data: raw.byteLength ? Array.from(new BigInt64Array(bytes), Number) : (p.int64Data ?? []).map(Number),
      };
    case DataType.INT8:
      return { dtype: 'int8', shape, data: raw.byteLength ? new Int8Array(bytes) : Int8Array.from(p.int32Data ?? []) };
    case DataType.UINT8:
      return { dtype: 'uint8', shape, data: raw.byteLength ? new Uint8Array(bytes) : Uint8Array.from(p.int32Data ?? []) };
    default:
      throw new Error(`ONNX initializer ${p.name ?? '?'}: data type ${p.dataType} is not supported`);
  }
}

function valueInfo(name: string, dtype: HostTensor['dtype'], shape: readonly number[]): onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType: elemTypes[dtype], shape: { dim: shape.map((d) => ({ dimValue: d })) } } },
  };
}

/**
 * Accumulates one ONNX graph. Nodes must be added in an order where every input already exists,
 * which is what ONNX requires of a graph (topological order).
 */
export class GraphBuilder {
  readonly nodes: onnx.INodeProto[] = [];
  readonly initializers: onnx.ITensorProto[] = [];
  private readonly inputs: onnx.IValueInfoProto[] = [];
  private readonly outputs: onnx.IValueInfoProto[] = [];
  private readonly names = new Set<string>();

  constructor(readonly name: string) {}

  /** `base` itself if no tensor or node has that name yet, else base_1, base_2, … */
  uniqueName(base: string): string {
    let name = base;
    for (let i = 1; this.names.has(name); i++) name = `${base}_${i}`;
    this.names.add(name);
    return name;
  }

  addInput(name: string, dtype: HostTensor['dtype'], shape: readonly number[]): string {
    this.names.add(name);
    this.inputs.push(valueInfo(name, dtype, shape));
    return name;
  }

  addOutput(name: string, dtype: HostTensor['dtype'], shape: readonly number[]): void {
    this.outputs.push(valueInfo(name, dtype, shape));
  }

  /** Adds a constant under a fresh name derived from `base` and returns that name. */
  addInitializer(base: string, t: HostTensor): string {
    const name = this.uniqueName(base);
    this.initializers.push(tensorToProto(name, t));
    return name;
  }

  addNode(opType: string, inputs: string[], outputs: string[], attrs: Record<string, Attr> = {}, name?: string): onnx.INodeProto {
    const node: onnx.INodeProto = {
      name: this.uniqueName(name ?? outputs[0] ?? opType),
      opType,
      input: inputs,
      output: outputs,
      attribute: Object.entries(attrs).map(([attrName, a]) => ({ name: attrName, ...a })),
    };
    this.nodes.push(node);
    return node;
  }

  toModel(opts: { opset: number; producer: string; docString?: string }): onnx.ModelProto {
    return pb.ModelProto.create({
      // IR version 7 is the one that goes with opset 13 (ONNX 1.8).
      irVersion: 7,
      opsetImport: [{ domain: '', version: opts.opset }],
      producerName: opts.producer,
      docString: opts.docString ?? '',
      graph: {
        name: this.name,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    });
  }
}

export function encodeModel(model: onnx.IModelProto): Uint8Array {
  return pb.ModelProto.encode(model).finish();
}

export function decodeModel(bytes: Uint8Array): onnx.ModelProto {
  return pb.ModelProto.decode(bytes);
}

export async function readModel(file: string): Promise<onnx.ModelProto> {
  return decodeModel(await readFile(file));
}

/** Writes through a temporary file so that a reader never sees half a model. */
export async function writeModel(file: string, model: onnx.IModelProto | Uint8Array): Promise<Uint8Array> {
  const bytes = model instanceof Uint8Array ? model : encodeModel(model);
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, bytes);
  await rename(tmp, file);
  return bytes;
}
