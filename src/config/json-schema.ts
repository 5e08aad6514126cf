import { z } from 'zod';
import { configSchema } from './schema.js';

/**
 * JSON Schema of the config file as a person writes it (defaults optional), derived from the zod schema.
 * docs/config.schema.json holds its rendering; editors with a YAML language server use it for completion.
 */
export function configJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(configSchema, { io: 'input', target: 'draft-2020-12' }),
    $id: 'https://edgepatrol.dev/schemas/config.schema.json',
    title: 'edgepatrol gateway config',
    description:
      'Config file of an edgepatrol gateway (YAML). Generated from src/config/schema.ts; see docs/config.md. ' +
      'Checks across keys (unique ids, non-crossing polygons, url vs tls) are made by the agent, not by this schema.',
  };
}

/** The exact text of docs/config.schema.json. */
export function renderConfigJsonSchema(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
}
