import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { constants, gzipSync } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { kernelFolder } from '../work/kernels/load-wasm.js';
import { packageRoot } from '../work/package-root.js';

/**
 * The miner page: `GET /mine` and its files under `/mine/`, for Tor Browser users who will not
 * install `powbridge mine` (issue 18). Its files are what `npm run build` writes to
 * dist/browser/ from src/browser/ (scripts/build-browser.mjs); its kernels are the very wasm/*.wasm files the CLI miner
 * loads (one build). Everything is read once into memory, so a URL can only ever name one of
 * these files.
 *
 * The policy lets the page load only its own files and talk only to its own origin (the
 * circuit's WebSocket included), with no eval and no inline script. WebAssembly compilation
 * needs 'wasm-unsafe-eval' in Chromium (97+) and Firefox (102+, so Tor Browser): without it a
 * policy without 'unsafe-eval' blocks WebAssembly.compile. COOP and COEP make the page
 * cross-origin isolated, which browsers require before they hand it a SharedArrayBuffer: the
 * miner's control block (src/client/miner-control.ts) is one, as in the CLI.
 */

export const MINE_PATH = '/mine';

interface MineAsset {
  contentType: string;
  body: Buffer;
  /**
   * The same bytes gzipped once at load: the page's script is ~560 KB, ~130 KB gzipped, which
   * over a Tor circuit is seconds of a visitor's wait. Static files, no secret in them: no
   * compression side channel to mind.
   */
  gzipped: Buffer;
}

const HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': [
    "default-src 'none'",
    "script-src 'self' 'wasm-unsafe-eval'",
    "worker-src 'self'",
    "connect-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
  'cross-origin-resource-policy': 'same-origin',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  // Revalidate each load, so a relay upgrade never pairs a new page with old scripts.
  'cache-control': 'no-cache',
};

const JS = 'text/javascript; charset=utf-8';

/** Where each file of the page comes from, under the package root. */
function sources(root: string): Record<string, { path: string; contentType: string }> {
  const kernels = kernelFolder();
  const page = join(root, 'dist', 'browser');
  return {
    'index.html': { path: join(page, 'index.html'), contentType: 'text/html; charset=utf-8' },
    'mine.css': { path: join(page, 'mine.css'), contentType: 'text/css; charset=utf-8' },
    'mine.js': { path: join(page, 'mine.js'), contentType: JS },
    'mine-worker.js': { path: join(page, 'mine-worker.js'), contentType: JS },
    'sha256d.wasm': { path: join(kernels, 'sha256d.wasm'), contentType: 'application/wasm' },
    'scrypt.wasm': { path: join(kernels, 'scrypt.wasm'), contentType: 'application/wasm' },
  };
}

/**
 * The page's files, or the reason there are none: a checkout that was never built has no
 * bundles, and a relay must still start (the page then says how to build it).
 */
export function loadMineAssets(
  root: string = packageRoot(import.meta.url),
): Map<string, MineAsset> | string {
  const assets = new Map<string, MineAsset>();
  for (const [name, { path, contentType }] of Object.entries(sources(root))) {
    if (!existsSync(path))
      return `the miner page is not built (${name} missing): run npm run build`;
    const body = readFileSync(path);
    assets.set(name, {
      contentType,
      body,
      gzipped: gzipSync(body, { level: constants.Z_BEST_COMPRESSION }),
    });
  }
  return assets;
}

let loaded: Map<string, MineAsset> | string | null = null;

export function registerMinePage(
  app: FastifyInstance,
  assets: Map<string, MineAsset> | string = (loaded ??= loadMineAssets()),
): void {
  const send = (request: FastifyRequest, reply: FastifyReply, asset: MineAsset) => {
    reply.headers(HEADERS).header('vary', 'accept-encoding').type(asset.contentType);
    return acceptsGzip(request.headers['accept-encoding'])
      ? reply.header('content-encoding', 'gzip').send(asset.gzipped)
      : reply.send(asset.body);
  };
  const unavailable = (reply: FastifyReply, why: string) =>
    reply.code(503).type('text/plain; charset=utf-8').send(`${why}\n`);

  app.get(MINE_PATH, (request, reply) => {
    if (typeof assets === 'string') return unavailable(reply, assets);
    const index = assets.get('index.html');
    return index ? send(request, reply, index) : reply.callNotFound();
  });
  // The name is only a key into the loaded files: nothing from the URL reaches the disk.
  app.get<{ Params: { file: string } }>(`${MINE_PATH}/:file`, (request, reply) => {
    if (typeof assets === 'string') return unavailable(reply, assets);
    const { file } = request.params;
    const asset = file === 'index.html' ? undefined : assets.get(file);
    return asset ? send(request, reply, asset) : reply.callNotFound();
  });
}

/** Whether an Accept-Encoding header takes gzip: listed, and not with q=0. */
export function acceptsGzip(header: string | string[] | undefined): boolean {
  const text = Array.isArray(header) ? header.join(',') : (header ?? '');
  return text.split(',').some((part) => {
    const [coding, ...params] = part.trim().toLowerCase().split(';');
    if (coding?.trim() !== 'gzip') return false;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}
