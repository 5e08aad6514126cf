/** A tensor held in JS memory: constants read from a model file, folded, or about to be written. */
export type HostTensor =
  | { dtype: 'float32'; shape: number[]; data: Float32Array }
  | { dtype: 'int32'; shape: number[]; data: Int32Array }
  /** Integer values that ONNX wants as int64 (shapes, split sizes); every value here fits a JS number. */
  | { dtype: 'int64'; shape: number[]; data: number[] }
  /** Quantized weights (int8, symmetric) and activation zero points (uint8). */
  | { dtype: 'int8'; shape: number[]; data: Int8Array }
  | { dtype: 'uint8'; shape: number[]; data: Uint8Array };

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Row-major strides of a shape. */
export function stridesOf(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) strides[i] = strides[i + 1]! * shape[i + 1]!;
  return strides;
}

/** Output axis i takes input axis perm[i], as numpy.transpose and ONNX Transpose do. */
export function transposeTensor(t: HostTensor, perm: readonly number[]): HostTensor {
  if (perm.length !== t.shape.length) throw new Error(`transpose: perm [${perm}] does not fit shape [${t.shape}]`);
  const outShape = perm.map((p) => t.shape[p]!);
  const inStrides = stridesOf(t.shape);
  const n = numel(t.shape);
  const src = t.data;
  const dst: number[] = new Array<number>(n);
  const idx = new Array<number>(perm.length).fill(0);
  for (let o = 0; o < n; o++) {
    let off = 0;
    for (let a = 0; a < perm.length; a++) off += idx[a]! * inStrides[perm[a]!]!;
    dst[o] = src[off]!;
    for (let a = perm.length - 1; a >= 0; a--) {
      if (++idx[a]! < outShape[a]!) break;
      idx[a] = 0;
    }
  }
  return withData(t, outShape, dst);
}

export function reshapeTensor(t: HostTensor, shape: number[]): HostTensor {
  if (numel(shape) !== numel(t.shape)) throw new Error(`reshape: [${t.shape}] cannot become [${shape}]`);
  return { ...t, shape } as HostTensor;
}

/** A tensor of t's dtype with new shape and values. */
export function withData(t: HostTensor, shape: number[], values: ArrayLike<number>): HostTensor {
  switch (t.dtype) {
    case 'float32':
      return { dtype: 'float32', shape, data: Float32Array.from(values) };
    case 'int32':
      return { dtype: 'int32', shape, data: Int32Array.from(values) };
    case 'int64':
      return { dtype: 'int64', shape, data: Array.from(values) };
    case 'int8':
      return { dtype: 'int8', shape, data: Int8Array.from(values) };
    case 'uint8':
      return { dtype: 'uint8', shape, data: Uint8Array.from(values) };
  }
}
