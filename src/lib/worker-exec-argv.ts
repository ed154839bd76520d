/**
 * Node options for our worker threads (the piscina pools: share checks, ticket checks, RSA
 * signing, mining): the main thread's, plus require(esm) switched off where Node has it.
 *
 * Why: piscina loads a task file with `require()` first and falls back to `import()`. Our task
 * files are ES modules, so on Node 20.19+ that `require()` loads them through require(esm),
 * which in Node 20 can abort the whole process ("FATAL ERROR: v8::Module::IsGraphAsync must be
 * used on an instantiated module"): seen in CI, where it killed a vitest test process while
 * relays started their pools. With require(esm) off, `require()` refuses at once
 * (ERR_REQUIRE_ESM) and piscina takes its `import()` path, the standard way to load an ES module.
 */
const NO_REQUIRE_ESM = '--no-experimental-require-module';

export function workerExecArgv(): string[] {
  const supported = process.allowedNodeEnvironmentFlags.has('--experimental-require-module');
  return supported ? [...process.execArgv, NO_REQUIRE_ESM] : [...process.execArgv];
}
