import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Loading the hashing kernels (wasm/*.wasm, built from C by wasm/build.sh). Each thread
 * compiles a kernel once and instantiates it synchronously, so a worker thread that imports
 * a kernel module gets its own instance and linear memory.
 */

export type KernelName = 'sha256d' | 'scrypt';

/** The part of the WebAssembly JS API we use (the project's lib settings do not declare it). */
interface WebAssemblyApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: Record<string, unknown> };
}

/** The global Node provides; declared here rather than pulling in the DOM lib. */
declare const WebAssembly: WebAssemblyApi;
const webAssembly = WebAssembly;

type ExportedFunction = (...args: number[]) => number;

/** An instantiated kernel: its exported functions and a view of its linear memory. */
export interface KernelInstance {
  /** An exported function by name (throws when the kernel does not export it). */
  fn(name: string): ExportedFunction;
  /** The kernel's linear memory. The kernels never grow it, so views stay valid. */
  readonly memory: Uint8Array;
}

const compiled = new Map<KernelName, object>();

/**
 * The folder holding the built kernels: `wasm/` beside the package.json found walking up
 * from this file. Works from the sources (src/work/kernels) and from the build output
 * (dist/src/work/kernels), which has no package.json of its own.
 */
export function kernelFolder(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'wasm'))) {
      return join(dir, 'wasm');
    }
    const parent = dirname(dir);
    if (parent === dir) {
      throw new Error('hashing kernels: no package folder with wasm/ above ' + import.meta.url);
    }
    dir = parent;
  }
}

function compile(name: KernelName): object {
  let module = compiled.get(name);
  if (module === undefined) {
    const file = join(kernelFolder(), `${name}.wasm`);
    module = new webAssembly.Module(readFileSync(file));
    compiled.set(name, module);
  }
  return module;
}

/** A fresh instance of a kernel (compiled once per thread). */
export function instantiateKernel(name: KernelName): KernelInstance {
  const { exports } = new webAssembly.Instance(compile(name), {});
  const memory = exports.memory as { buffer?: unknown } | undefined;
  if (!(memory?.buffer instanceof ArrayBuffer)) {
    throw new Error(`${name}.wasm: does not export its memory`);
  }
  return {
    memory: new Uint8Array(memory.buffer),
    fn(fnName: string): ExportedFunction {
      const f = exports[fnName];
      if (typeof f !== 'function') throw new Error(`${name}.wasm: no export ${fnName}`);
      return f as ExportedFunction;
    },
  };
}
