#!/usr/bin/env node
// Thin launcher: the CLI is compiled TypeScript in dist/ (built by `npm run build`, run by `npm ci`).
import('../dist/src/cli/main.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND') {
    console.error('powbridge: dist/ is missing; run `npm run build` first.');
    process.exit(1);
  }
  throw err;
});
