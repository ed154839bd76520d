import type { KernelInstance, KernelName } from '../../work/kernels/load-wasm.js';

/**
 * The browser's src/work/kernels/load-wasm.ts (the bundler swaps it in,
 * scripts/build-browser.mjs). A worker cannot read wasm/ from a disk: it fetches and compiles
 * the very files the relay serves from there (`useKernelModule`), before the kernel wrappers
 * (scrypt-kernel.ts, sha256d-kernel.ts, unchanged) instantiate them synchronously.
 */

export type { KernelInstance, KernelName };

const modules = new Map<KernelName, WebAssembly.Module>();

export function useKernelModule(name: KernelName, module: WebAssembly.Module): void {
  modules.set(name, module);
}

export function kernelFolder(): string {
  throw new Error('hashing kernels: the browser has no kernel folder');
}

export function instantiateKernel(name: KernelName): KernelInstance {
  const module = modules.get(name);
  if (module === undefined) throw new Error(`${name}.wasm: not loaded in this worker`);
  const { exports } = new WebAssembly.Instance(module, {});
  const memory = exports['memory'];
  if (!(memory instanceof WebAssembly.Memory)) {
    throw new Error(`${name}.wasm: does not export its memory`);
  }
  return {
    memory: new Uint8Array(memory.buffer),
    fn(fnName: string) {
      const f = exports[fnName];
      if (typeof f !== 'function') throw new Error(`${name}.wasm: no export ${fnName}`);
      return f as (...args: number[]) => number;
    },
  };
}
