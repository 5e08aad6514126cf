/** The options of `edgepatrol model` and the parsing of their values, shared by its sub-commands. */
import type { FrameSet } from '../model/frames.js';
import { type parseCommandArgs, UsageError } from './io.js';

export const options = {
  'models-dir': { type: 'string' },
  threads: { type: 'string' },
  runs: { type: 'string' },
  decoder: { type: 'string' },
  name: { type: 'string' },
  labels: { type: 'string' },
  resize: { type: 'string' },
  channels: { type: 'string' },
  mean: { type: 'string' },
  std: { type: 'string' },
  strides: { type: 'string' },
  'reg-max': { type: 'string' },
  default: { type: 'boolean' },
  calib: { type: 'string' },
  frames: { type: 'string' },
  count: { type: 'string' },
  start: { type: 'string' },
  end: { type: 'string' },
  method: { type: 'string' },
  'keep-float': { type: 'string', multiple: true },
  'quantize-head': { type: 'boolean' },
  'weight-bits': { type: 'string' },
  percentile: { type: 'string' },
  out: { type: 'string' },
  threshold: { type: 'string' },
  images: { type: 'string' },
  classes: { type: 'string' },
  iou: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export type Values = ReturnType<typeof parseCommandArgs<typeof options>>['values'];

export function number(name: string, value: string | undefined, opts: { integer?: boolean; min?: number } = {}): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || (opts.integer && !Number.isInteger(n)) || n < (opts.min ?? -Infinity)) {
    throw new UsageError(
      `--${name} must be ${opts.integer ? 'an integer' : 'a number'}${opts.min !== undefined ? ` >= ${opts.min}` : ''}, got '${value}'`,
    );
  }
  return n;
}

export function triple(name: string, value: string | undefined): [number, number, number] | undefined {
  if (value === undefined) return undefined;
  const parts = value.split(',').map(Number);
  if (parts.length !== 3 || parts.some((p) => !Number.isFinite(p)))
    throw new UsageError(`--${name} takes three numbers R,G,B, got '${value}'`);
  return parts as [number, number, number];
}

export function frameSet(path: string | undefined, count: number, values: Values, what: string): FrameSet {
  if (!path) throw new UsageError(`${what} is required: a folder of images or a video file`);
  const start = number('start', values.start, { min: 0 });
  const end = number('end', values.end, { min: 0 });
  return { path, frames: count, ...(start !== undefined ? { start } : {}), ...(end !== undefined ? { end } : {}) };
}
