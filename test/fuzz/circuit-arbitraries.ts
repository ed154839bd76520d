import fc from 'fast-check';
import type { z } from 'zod';
import {
  AO_SCHEME,
  clientRequests,
  relayNotifications,
  RSA_SCHEME,
} from '../../src/protocol/messages.js';
import { ALGORITHMS } from '../../src/work/algorithm.js';
import { MIN_DIFFICULTY } from '../../src/work/target.js';
import { hexBetween, hexOf } from '../helpers/fuzz.js';

/**
 * Valid bodies of every circuit message (docs/design.md §5), one arbitrary per schema of
 * src/protocol/messages.ts, for the circuit fuzz files. Hex comes in either case: the schemas
 * lowercase it.
 */

/** Hex of `min`..`max` bytes, some of it uppercase. */
function hex(min: number, max = min): fc.Arbitrary<string> {
  return fc
    .tuple(min === max ? hexOf(min) : hexBetween(min, max), fc.boolean())
    .map(([text, upper]) => (upper ? text.toUpperCase() : text));
}

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const difficulty = fc.double({ min: MIN_DIFFICULTY, noNaN: true, noDefaultInfinity: true });
const jobId = fc.string({ minLength: 1, maxLength: 64 });
const positive = fc.double({ min: Number.MIN_VALUE, noNaN: true, noDefaultInfinity: true });
const positiveInt = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER });

const ticketTerms = fc.oneof(
  fc.record({
    scheme: fc.constant(AO_SCHEME),
    keyId: hex(8),
    day: fc.nat(),
    price: positive,
    windowSeconds: positiveInt,
    publicKey: hex(32),
  }),
  fc.record({
    scheme: fc.constant(RSA_SCHEME),
    keyId: hex(8),
    day: fc.nat(),
    price: positive,
    windowSeconds: positiveInt,
    publicKey: hex(64, 600),
  }),
);

const grantToken = fc.stringMatching(/^[A-Za-z0-9_-]{16,128}$/);

type Bodies<T extends Record<string, unknown>> = { [K in keyof T]: fc.Arbitrary<object> };

/** Valid params of each client request. */
export const validParams: Bodies<typeof clientRequests> = {
  'mining.register': fc.record({
    agent: fc.string({ maxLength: 64 }),
    mode: fc.constantFrom('tickets', 'donate'),
  }),
  'mining.submit': fc.record(
    { jobId, extranonce2: hex(1, 16), ntime: hex(4), nonce: hex(4), versionBits: hex(4) },
    { requiredKeys: ['jobId', 'extranonce2', 'ntime', 'nonce'] },
  ),
  'ticket.open': fc.constant({}),
  'ticket.finish': fc.record({ session: hex(16), e: hex(32) }),
  'ticket.issue': fc.record({ keyId: hex(8), day: u32, blindedMsg: hex(256) }),
  'ticket.redeem': fc.record(
    { ticket: fc.string({ maxLength: 512 }), grant: grantToken },
    { requiredKeys: ['ticket'] },
  ),
};

/** Valid results the relay answers each client request with. */
export const validResults: Bodies<typeof clientRequests> = {
  'mining.register': fc.record({
    algorithm: fc.constantFrom(...ALGORITHMS),
    extranonce1: hex(1, 32),
    extranonce2Size: fc.integer({ min: 1, max: 16 }),
    difficulty,
    versionMask: fc.option(hex(4)),
    ticket: fc.option(ticketTerms),
  }),
  'mining.submit': fc.record({
    accepted: fc.constant(true),
    credit: fc.double({ min: 0, noNaN: true, noDefaultInfinity: true }),
  }),
  'ticket.open': fc.record({
    session: hex(16),
    keyId: hex(8),
    day: fc.nat(),
    a: hex(32),
    b: hex(32),
  }),
  'ticket.finish': fc.record({ r: hex(32), c: hex(32), s: hex(32), d: hex(32) }),
  'ticket.issue': fc.record({ blindSig: hex(256) }),
  'ticket.redeem': fc.record({
    token: fc.string({ minLength: 16, maxLength: 128 }),
    class: fc.string({ minLength: 1, maxLength: 32 }),
    expiresAt: positiveInt,
  }),
};

/** Valid params of each relay notification. */
export const validNotifications: Bodies<typeof relayNotifications> = {
  'mining.job': fc.record({
    jobId,
    prevhash: hex(32),
    coinb1: hex(0, 80),
    coinb2: hex(0, 80),
    merkleBranch: fc.array(hex(32), { maxLength: 32 }),
    version: hex(4),
    nbits: hex(4),
    ntime: hex(4),
    clean: fc.boolean(),
  }),
  'mining.set_difficulty': fc.record({ difficulty }),
  'mining.set_extranonce': fc.record({
    extranonce1: hex(1, 32),
    extranonce2Size: fc.integer({ min: 1, max: 16 }),
  }),
  'mining.set_version_mask': fc.record({ versionMask: fc.option(hex(4)) }),
  'relay.state': fc.record({
    upstream: fc.constantFrom('live', 'down'),
    message: fc.string({ maxLength: 256 }),
  }),
};

/** Every schema of the circuit protocol with a generator of its valid values. */
export const circuitSchemas: { name: string; schema: z.ZodType; valid: fc.Arbitrary<object> }[] = [
  ...Object.entries(clientRequests).flatMap(([method, { params, result }]) => [
    {
      name: `${method} params`,
      schema: params,
      valid: validParams[method as keyof typeof clientRequests],
    },
    {
      name: `${method} result`,
      schema: result,
      valid: validResults[method as keyof typeof clientRequests],
    },
  ]),
  ...Object.entries(relayNotifications).map(([method, schema]) => ({
    name: `${method} notification`,
    schema,
    valid: validNotifications[method as keyof typeof relayNotifications],
  })),
];
