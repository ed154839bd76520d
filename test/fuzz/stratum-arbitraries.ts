import fc from 'fast-check';
import { type Call, encodeRequest } from '../../src/stratum/index.js';
import type { Job } from '../../src/work/job.js';
import { anyCodePoint, anyJson, hexBetween, hexOf } from '../helpers/fuzz.js';

/**
 * Stratum V1 calls in their canonical form (what parseMessage returns, so encode → parse gives
 * them back exactly), and lines one step away from valid, for the Stratum fuzz files.
 */

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const hex8 = hexOf(4);
/** Names: 1..256 characters, any code points (JSON escapes what needs escaping). */
const name = fc.string({ unit: anyCodePoint, minLength: 1, maxLength: 40 });
const difficulty = fc.double({ min: Number.MIN_VALUE, noNaN: true, noDefaultInfinity: true });

export const jobArbitrary: fc.Arbitrary<Job> = fc.record({
  jobId: name,
  prevhash: hexOf(32),
  coinb1: hexBetween(0, 80),
  coinb2: hexBetween(0, 80),
  merkleBranch: fc.array(hexOf(32), { maxLength: 6 }),
  version: hex8,
  nbits: hex8,
  ntime: hex8,
  clean: fc.boolean(),
});

/** Keys of mining.configure's parameters that are not version-rolling's own. */
const otherParameters = fc
  .dictionary(
    fc.string().filter((k) => !k.startsWith('version-rolling.') && k !== '__proto__'),
    fc.jsonValue({ maxDepth: 2 }),
    { maxKeys: 3 },
  )
  // JSON has no -0: compare what survives the wire.
  .map((o) => JSON.parse(JSON.stringify(o)) as Record<string, unknown>);

const configure: fc.Arbitrary<Call> = fc
  .tuple(
    fc.array(name, { maxLength: 4 }),
    fc.option(fc.record({ mask: u32, minBitCount: fc.integer({ min: 0, max: 32 }) })),
    otherParameters,
  )
  .map(([names, versionRolling, other]) => ({
    method: 'mining.configure',
    params:
      versionRolling === null
        ? { extensions: names.filter((n) => n !== 'version-rolling'), versionRolling, other }
        : { extensions: [...names, 'version-rolling'], versionRolling, other },
  }));

const subscribe: fc.Arbitrary<Call> = fc.oneof(
  fc.constant({ method: 'mining.subscribe', params: { agent: null, sessionId: null } } as const),
  fc.record({
    method: fc.constant('mining.subscribe' as const),
    params: fc.record({ agent: fc.string({ maxLength: 40 }), sessionId: fc.option(name) }),
  }),
);

export const callArbitrary: fc.Arbitrary<Call> = fc.oneof(
  configure,
  subscribe,
  fc.record({
    method: fc.constant('mining.authorize' as const),
    params: fc.record({ user: name, password: fc.string({ maxLength: 40 }) }),
  }),
  fc.constant({ method: 'mining.extranonce.subscribe', params: {} } as const),
  fc.record({ method: fc.constant('mining.notify' as const), params: jobArbitrary }),
  fc.record({
    method: fc.constantFrom('mining.set_difficulty' as const, 'mining.suggest_difficulty' as const),
    params: fc.record({ difficulty }),
  }),
  fc.record({
    method: fc.constant('mining.set_extranonce' as const),
    params: fc.record({
      extranonce1: hexBetween(0, 32),
      extranonce2Size: fc.integer({ min: 0, max: 16 }),
    }),
  }),
  fc.record({
    method: fc.constant('mining.set_version_mask' as const),
    params: fc.record({ mask: u32 }),
  }),
  fc.record({
    method: fc.constant('client.reconnect' as const),
    params: fc.record({
      host: fc.option(fc.string({ minLength: 1, maxLength: 255 })),
      port: fc.option(fc.integer({ min: 1, max: 65535 })),
      waitSeconds: fc.integer({ min: 0, max: 86_400 }),
    }),
  }),
  fc.record({
    method: fc.constant('client.show_message' as const),
    params: fc.record({ message: fc.string({ unit: anyCodePoint, maxLength: 100 }) }),
  }),
  fc.constant({ method: 'client.get_version', params: {} } as const),
  fc.constant({ method: 'mining.ping', params: {} } as const),
  fc.record({
    method: fc.constant('mining.submit' as const),
    params: fc.record(
      {
        user: name,
        jobId: name,
        extranonce2: hexBetween(0, 16),
        ntime: hex8,
        nonce: hex8,
        versionBits: hex8,
      },
      { requiredKeys: ['user', 'jobId', 'extranonce2', 'ntime', 'nonce'] },
    ),
  }),
);

/** Ids as senders choose them: integers, strings, floats; never -0 (JSON has none). */
export const idArbitrary: fc.Arbitrary<number | string> = fc.oneof(
  fc.integer(),
  fc.string({ maxLength: 20 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }).filter((d) => !Object.is(d, -0)),
);

/** Methods a miner or a pool may send, known or not. */
const methodName = fc.oneof(
  fc.constantFrom(
    'mining.configure',
    'mining.subscribe',
    'mining.authorize',
    'mining.extranonce.subscribe',
    'mining.notify',
    'mining.set_difficulty',
    'mining.set_extranonce',
    'mining.set_version_mask',
    'client.reconnect',
    'client.show_message',
    'client.get_version',
    'mining.ping',
    'mining.submit',
    'mining.suggest_difficulty',
    'mining.get_transactions',
    'toString',
    '__proto__',
    'hasOwnProperty',
    '',
  ),
  fc.string({ maxLength: 30 }),
);

/** A params array with one element broken (dropped, replaced, appended) or any JSON. */
function brokenParams(params: unknown[]): fc.Arbitrary<unknown> {
  return fc.oneof(
    fc.tuple(fc.nat(), anyJson).map(([i, value]) => {
      const copy = [...params];
      if (copy.length > 0) copy[i % copy.length] = value;
      else copy.push(value);
      return copy;
    }),
    fc.nat().map((i) => params.filter((_, j) => j !== i % Math.max(1, params.length))),
    anyJson.map((value) => [...params, value]),
    anyJson,
  );
}

/**
 * One JSON line (without the newline) from anywhere around the valid messages: valid calls,
 * calls with a broken param or envelope field, responses with any result and error, any JSON.
 */
export const stratumObject: fc.Arbitrary<unknown> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc
      .tuple(callArbitrary, fc.option(idArbitrary))
      .map(([call, id]) => ({ id, method: call.method, params: wireParams(call) })),
  },
  {
    weight: 4,
    arbitrary: fc
      .tuple(callArbitrary, fc.option(idArbitrary))
      .chain(([call, id]) =>
        brokenParams(wireParams(call)).map((params) => ({ id, method: call.method, params })),
      ),
  },
  {
    // Valid params of one method under another method's name.
    weight: 1,
    arbitrary: fc
      .tuple(callArbitrary, fc.option(idArbitrary), methodName)
      .map(([call, id, method]) => ({ id, method, params: wireParams(call) })),
  },
  {
    weight: 2,
    arbitrary: fc.record(
      {
        id: fc.oneof(idArbitrary, anyJson),
        method: fc.oneof(methodName, anyJson),
        params: anyJson,
      },
      { requiredKeys: [] },
    ),
  },
  {
    weight: 2,
    arbitrary: fc.record(
      {
        id: fc.option(idArbitrary),
        result: anyJson,
        error: fc.oneof(
          fc.constant(null),
          fc.tuple(fc.integer({ min: -40_000, max: 40 }), fc.string(), anyJson),
          anyJson,
        ),
        'reject-reason': anyJson,
      },
      { requiredKeys: ['id'] },
    ),
  },
  { weight: 1, arbitrary: anyJson },
);

/** The positional params a call goes out with (what encodeRequest writes). */
export function wireParams(call: Call): unknown[] {
  const line = JSON.parse(encodeRequest(0, call)) as { params: unknown[] };
  return line.params;
}
