import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';
import { root } from './agent.js';

/**
 * Validators built from the JSON Schema files an integrator reads in docs/schemas/ — not from the code's zod
 * schemas they are generated from — so a test proves the published documents describe what the agent sends.
 */
const ajv = new Ajv2020.default({ strict: false, allErrors: true, validateFormats: false });
const cache = new Map<string, ReturnType<typeof ajv.compile>>();

export function docSchemaProblems(
  name: 'event' | 'health' | 'availability' | 'alert' | 'ack' | 'request' | 'response',
  payload: unknown,
): string | null {
  let validate = cache.get(name);
  if (!validate) {
    validate = ajv.compile(JSON.parse(readFileSync(join(root, 'docs', 'schemas', `${name}.schema.json`), 'utf8')) as object);
    cache.set(name, validate);
  }
  return validate(payload) ? null : ajv.errorsText(validate.errors);
}
