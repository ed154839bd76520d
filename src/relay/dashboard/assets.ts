import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { extname, join } from 'node:path';
import { packageRoot } from '../../work/package-root.js';

/**
 * The dashboard's static files, read once into memory: the page's own files from
 * src/relay/dashboard/public (tsc does not copy them to dist/, so they are found from the
 * package root, as the wasm kernels are) and the charting library from node_modules. Served
 * from memory, a request can only ever name one of these files: no path reaches the disk.
 */

export interface DashboardAsset {
  contentType: string;
  body: Buffer;
}

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** Vendored files under the names the page uses; minified builds (the page runs as is). */
const LIBRARIES: Readonly<Record<string, string>> = {
  'uplot.js': 'uplot/dist/uPlot.iife.min.js',
  'uplot.css': 'uplot/dist/uPlot.min.css',
};

export const PUBLIC_DIR = join(packageRoot(import.meta.url), 'src', 'relay', 'dashboard', 'public');

/** File name → asset. Throws when a file is missing: a relay without its page should not start. */
export function loadDashboardAssets(dir: string = PUBLIC_DIR): Map<string, DashboardAsset> {
  const assets = new Map<string, DashboardAsset>();
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const contentType = CONTENT_TYPES[extname(entry.name)];
    if (!entry.isFile() || contentType === undefined) continue;
    assets.set(entry.name, { contentType, body: readFileSync(join(dir, entry.name)) });
  }
  if (!assets.has('index.html')) throw new Error(`dashboard: no index.html in ${dir}`);
  // Resolved like an import, so a hoisted or nested node_modules both work.
  const require = createRequire(import.meta.url);
  for (const [name, specifier] of Object.entries(LIBRARIES)) {
    const contentType = CONTENT_TYPES[extname(name)] as string;
    assets.set(name, { contentType, body: readFileSync(require.resolve(specifier)) });
  }
  return assets;
}

let loaded: Map<string, DashboardAsset> | null = null;

/** This package's assets, read on first use and shared by every app in the process. */
export function dashboardAssets(): Map<string, DashboardAsset> {
  loaded ??= loadDashboardAssets();
  return loaded;
}
