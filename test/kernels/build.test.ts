import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function has(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

const toolchain = (has('clang-14') || has('clang')) && has('wasm-ld');
const distKernel = join(root, 'dist', 'src', 'work', 'kernels', 'sha256d-kernel.js');

describe('built kernels', () => {
  it.skipIf(!toolchain)(
    'wasm/build.sh --check: the committed .wasm files are what their C sources build to (skipped without clang and wasm-ld: install the Debian packages clang and lld)',
    () => {
      const result = spawnSync('bash', [join(root, 'wasm', 'build.sh'), '--check'], {
        encoding: 'utf8',
      });
      expect(result.stderr).not.toMatch(/differs|missing/);
      expect(result.status).toBe(0);
    },
    120_000,
  );

  it.skipIf(!existsSync(distKernel))(
    'load from the compiled dist/ tree too (skipped until npm run build)',
    () => {
      const script = `import(${JSON.stringify(distKernel)}).then((m) => process.stdout.write(Buffer.from(m.hashSha256d(new Uint8Array(80))).toString('hex')))`;
      const out = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' });
      // sha256d of 80 zero bytes
      expect(out).toBe('4be7570e8f70eb093640c8468274ba759745a7aa2b7d25ab1e0421b259845014');
    },
  );
});
