import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { packageRoot } from '../work/package-root.js';

/** This package's version, as package.json says; read once. */
let version: string | null = null;

export function relayVersion(): string {
  version ??= z
    .object({ version: z.string().max(64) })
    .parse(
      JSON.parse(readFileSync(join(packageRoot(import.meta.url), 'package.json'), 'utf8')),
    ).version;
  return version;
}
