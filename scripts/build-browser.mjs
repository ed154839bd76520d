// Bundles the miner page's scripts (src/browser) into dist/browser/, with its HTML and CSS, for the relay to serve at
// /mine (src/relay/mine-page.ts). Part of `npm run build`, after tsc.
//
// The page reuses the CLI's own modules (message schemas, block math, the miner's parts and
// its worker body, the descriptor check and key pin, the ticket codecs). Some reach Node where
// a browser has something else, and the bundle swaps in a browser twin of each, with the
// same exports: src/work/hash.ts (node:crypto), src/work/kernels/load-wasm.ts (reads wasm/
// from disk), src/tickets/rsa-scheme.ts (node:crypto; the twin has the public half only, in
// BigInt) and, for src/tickets/group.ts alone, node:crypto's randomBytes. Node's Buffer,
// which the block math uses, comes from the `buffer` package. Any other node: import is a
// build error: it would fail in the browser.
import { build } from 'esbuild';
import { copyFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const browser = join(root, 'src', 'browser');

/** Module (as imported, resolved against its importer) → its browser twin. */
const TWINS = new Map([
  [join(root, 'src', 'work', 'hash.js'), join(browser, 'shims', 'hash.ts')],
  [join(root, 'src', 'work', 'kernels', 'load-wasm.js'), join(browser, 'shims', 'load-wasm.ts')],
  [join(root, 'src', 'tickets', 'rsa-scheme.js'), join(browser, 'shims', 'rsa-scheme.ts')],
]);

/** Node modules a browser twin stands in for, only in the one importer named. */
const NODE_TWINS = new Map([
  [
    `${join(root, 'src', 'tickets', 'group.ts')}\0node:crypto`,
    join(browser, 'shims', 'node-random.ts'),
  ],
]);

const browserTwins = {
  name: 'browser-twins',
  setup(bundle) {
    bundle.onResolve({ filter: /^\.\.?\// }, (args) => {
      const twin = TWINS.get(resolve(args.resolveDir, args.path));
      return twin ? { path: twin } : undefined;
    });
    bundle.onResolve({ filter: /^node:/ }, (args) => {
      const twin = NODE_TWINS.get(`${args.importer}\0${args.path}`);
      if (twin) return { path: twin };
      return {
        errors: [{ text: `${args.path} imported by ${args.importer}: not available in a browser` }],
      };
    });
  },
};

const started = Date.now();
await build({
  absWorkingDir: root,
  entryPoints: {
    mine: join(browser, 'page.ts'),
    'mine-worker': join(browser, 'mine-worker.ts'),
  },
  outdir: join(root, 'dist', 'browser'),
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['es2022', 'chrome100', 'firefox115'],
  inject: [join(browser, 'shims', 'buffer.ts')],
  plugins: [browserTwins],
  minify: true,
  legalComments: 'none',
  logLevel: 'warning',
});
// The page and its style beside the bundles: the relay serves dist/browser/ as one folder.
for (const file of ['index.html', 'mine.css']) {
  copyFileSync(join(browser, 'public', file), join(root, 'dist', 'browser', file));
}
if (process.env.npm_lifecycle_event === 'build') {
  // stderr: `npm pack --json` runs the build (prepack) and its stdout must stay JSON.
  console.error(`browser bundles in dist/browser/ (${Date.now() - started} ms)`);
}
