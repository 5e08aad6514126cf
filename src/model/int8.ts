import { readFile, rename, writeFile } from 'node:fs/promises';
import type { ModelSpec } from '../vision/manifest.js';
import { Preprocessor } from '../vision/preprocess.js';
import { calibrate, type CalibrationMethod } from './calibrate.js';
import { describeFrameSet, readFrameSet, type FrameSet } from './frames.js';
import { encodeModel, type onnx } from './onnx.js';
import { inputQuantization, planQuantization, quantizeModel, type QuantizationPlan, type Ranges, type WeightBits } from './quantize.js';

/**
 * Everything an INT8 model is built from besides its fp32 source: kept as `<name>.calib.json` next to the
 * model, so the QDQ model can be rebuilt byte for byte on any machine without running calibration again.
 */
export interface CalibrationRecord {
  schema: 1;
  /** The fp32 source model (manifest name and the sha256 of its file). */
  from: { name: string; sha256: string };
  method: CalibrationMethod;
  calibration: Record<string, unknown>;
  keepFloat: string[];
  quantizeHeadConvs: boolean;
  /**
   * The model takes its input as uint8, quantized by the caller's preprocessing, instead of float32 quantized by
   * its first node (a quarter of the bytes per frame; docs/decisions/0030-int8-uint8-input.md). Records written
   * before it lack it.
   */
  uint8Input?: boolean;
  /** Conv weight bits (default 8, what records written before the field meant). */
  weightBits?: WeightBits;
  ranges: Ranges;
}

export interface CalibrateOptions {
  from: { name: string; spec: ModelSpec };
  frames: FrameSet;
  method: CalibrationMethod;
  keepFloat?: string[];
  quantizeHeadConvs?: boolean;
  weightBits?: WeightBits;
  /** Kept share of |x| for the percentile method (default: calibrate.ts's). */
  percentile?: number;
  threads?: number;
}

/** Plans the quantization of `fp32` and calibrates its activation ranges on the frame set. */
export async function calibrateModel(
  fp32: onnx.IModelProto,
  opts: CalibrateOptions,
): Promise<{ record: CalibrationRecord; plan: QuantizationPlan }> {
  const keepFloat = opts.keepFloat ?? [];
  const quantizeHeadConvs = opts.quantizeHeadConvs ?? false;
  const plan = planQuantization(fp32, { keepFloat, quantizeHeadConvs });
  const { spec } = opts.from;
  const [, , height, width] = spec.input.shape;
  const pre = new Preprocessor(width, height, spec.preprocess);
  const ranges = await calibrate(fp32, plan.calibrate, {
    method: opts.method,
    percentile: opts.percentile,
    threads: opts.threads,
    async *inputs() {
      for await (const img of readFrameSet(opts.frames)) {
        // The float source model's input, never quantized (no quantization given above).
        const x = pre.run(img);
        if (!(x instanceof Float32Array)) throw new TypeError(`calibration needs the float input of ${opts.from.name}`);
        yield x.slice();
      }
    },
  });
  const record: CalibrationRecord = {
    schema: 1,
    from: { name: opts.from.name, sha256: spec.sha256 },
    method: opts.method,
    calibration: {
      ...describeFrameSet(opts.frames),
      ...(opts.method === 'percentile' && opts.percentile !== undefined ? { percentile: opts.percentile } : {}),
    },
    keepFloat,
    quantizeHeadConvs,
    uint8Input: true,
    weightBits: opts.weightBits ?? 7,
    ranges,
  };
  return { record, plan };
}

/** The QDQ model's bytes: deterministic for a given fp32 model and record (no dates or paths go in). */
export function buildInt8(fp32: onnx.IModelProto, record: CalibrationRecord): Uint8Array {
  const plan = planQuantization(fp32, { keepFloat: record.keepFloat, quantizeHeadConvs: record.quantizeHeadConvs });
  const doc = `${record.from.name} (sha256 ${record.from.sha256}) quantized to INT8 QDQ by edgepatrol, ${record.method} calibration`;
  return encodeModel(
    quantizeModel(fp32, plan, record.ranges, doc, { uint8Input: record.uint8Input ?? false, weightBits: record.weightBits ?? 8 }),
  );
}

/**
 * The manifest entry of an INT8 model (without file and sha256): its source's, with the quantization recorded,
 * and for a uint8 input how the preprocessing quantizes it.
 */
export function int8Entry(
  from: ModelSpec,
  record: CalibrationRecord,
  calibFile: string,
  plan: QuantizationPlan,
  fp32: onnx.IModelProto,
): Omit<ModelSpec, 'file' | 'sha256'> {
  const { file: _file, sha256: _sha, quantization: _q, ...rest } = from;
  const q = record.uint8Input ? inputQuantization(fp32, plan, record.ranges) : undefined;
  if (record.uint8Input && !q)
    throw new Error(`${record.from.name}: its input '${from.input.name}' is not quantized, so it cannot be taken as uint8`);
  return {
    ...rest,
    input: q ? { ...from.input, type: 'uint8', quantization: { scale: q.scale, zeroPoint: q.zeroPoint } } : from.input,
    precision: 'int8',
    quantization: {
      format: `QDQ: weights int8 per channel symmetric${record.weightBits === 7 ? ' within ±63 (7 bits)' : ''}, activations uint8 per tensor, bias int32`,
      ...(record.weightBits ? { weightBits: record.weightBits } : {}),
      from: record.from.name,
      fromSha256: record.from.sha256,
      method: record.method,
      calibration: record.calibration,
      keepFloat: record.keepFloat,
      floatHead: plan.head,
      quantizedNodes: plan.quantized.length,
      ranges: calibFile,
    },
  };
}

export async function readCalibrationRecord(file: string): Promise<CalibrationRecord> {
  let rec: CalibrationRecord;
  try {
    rec = JSON.parse(await readFile(file, 'utf8')) as CalibrationRecord;
  } catch (err) {
    throw new Error(`cannot read calibration record ${file}: ${(err as Error).message}`);
  }
  if (rec.schema !== 1 || typeof rec.ranges !== 'object' || !rec.from?.sha256)
    throw new Error(`${file} is not a calibration record (schema 1 with from and ranges)`);
  return rec;
}

export async function writeCalibrationRecord(file: string, rec: CalibrationRecord): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  // One range per line keeps a diff of two calibrations readable.
  const ranges = Object.entries(rec.ranges)
    .map(([k, v]) => `    ${JSON.stringify(k)}: [${v[0]}, ${v[1]}]`)
    .join(',\n');
  const { ranges: _r, ...head } = rec;
  const text = JSON.stringify(head, null, 2).replace(/\n}$/, `,\n  "ranges": {\n${ranges}\n  }\n}\n`);
  await writeFile(tmp, text);
  await rename(tmp, file);
}
