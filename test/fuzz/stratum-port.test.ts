import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { RpcErrorCode } from '../../src/protocol/errors.js';
import type { Stratifier } from '../../src/relay/stratifier.js';
import { StratumConnector } from '../../src/relay/stratum-connector.js';
import {
  type Call,
  encodeRequest,
  parseMessage,
  StratumErrorCode,
} from '../../src/stratum/index.js';
import { anyCodePoint, chunked, fuzzAsync, hexOf } from '../helpers/fuzz.js';
import { expectReleased, type LiveStratifier, startLiveStratifier } from './live-stratifier.js';
import { callArbitrary, idArbitrary, stratumObject } from './stratum-arbitraries.js';

/**
 * The relay's Stratum port (src/relay/stratum-miner-connection.ts behind the connector) on
 * loopback, fed what a hostile or broken miner sends: handshakes, shares (good, duplicate,
 * stale, malformed), unknown methods, garbage and over-long lines, cut anywhere. Every line
 * the relay writes back is a Stratum message; every error it answers carries one of the codes
 * miners understand; it never answers more than was asked; and when the miner hangs up, the
 * connection and its session are gone.
 */

/** Codes the Stratum port may answer: shares 20–25 and JSON-RPC's request errors. */
const CODES = new Set<number>([
  ...Object.values(StratumErrorCode),
  RpcErrorCode.invalidRequest,
  RpcErrorCode.invalidParams,
]);
/** Notifications the relay sends a miner. */
const NOTIFICATIONS = new Set([
  'mining.set_difficulty',
  'mining.notify',
  'mining.set_version_mask',
  'mining.set_extranonce',
  'client.show_message',
  'client.reconnect',
]);

let live: LiveStratifier;
let stratifier: Stratifier;
let connector: StratumConnector;
let port: number;

beforeAll(async () => {
  live = await startLiveStratifier({ extranonce2Size: 8 });
  stratifier = live.stratifier;
  connector = new StratumConnector(stratifier, {
    // Room for the fuzzer: the parsers, not the rate limits, are under test here.
    limits: { maxInvalidMessages: 1_000, maxRequestsPerSecond: 1_000_000, burstSeconds: 1 },
  });
  await connector.listen('127.0.0.1', 0);
  port = connector.address()?.port ?? 0;
});
afterAll(async () => {
  await connector.close();
  stratifier.stop();
});

/** A share for the relay's current job, its fields often right. */
const share: fc.Arbitrary<string> = fc
  .tuple(
    idArbitrary,
    fc.oneof(fc.constant('current'), fc.string({ minLength: 1, maxLength: 12 })),
    // The relay hands out 6 bytes; one fixed value makes duplicates.
    fc.oneof(fc.constant('00000000abcd'), fc.integer({ min: 0, max: 8 }).chain(hexOf)),
    fc.oneof(fc.constant('now'), hexOf(4)),
    fc.oneof(fc.constantFrom('00000000', '00000001'), hexOf(4)),
    fc.option(fc.oneof(fc.constant('00000000'), hexOf(4))),
  )
  .map(([id, job, extranonce2, time, nonce, versionBits]) => {
    const { jobId, ntime } = live.current();
    const call: Call = {
      method: 'mining.submit',
      params: {
        user: 'fuzz',
        jobId: job === 'current' ? jobId : job,
        extranonce2,
        ntime: time === 'now' ? ntime : time,
        nonce,
        ...(versionBits === null ? {} : { versionBits }),
      },
    };
    return encodeRequest(id, call).trimEnd();
  });

const SUBSCRIBE = '{"id":1,"method":"mining.subscribe","params":["fuzz/1.0"]}';
const AUTHORIZE = '{"id":2,"method":"mining.authorize","params":["fuzz","x"]}';
const handshake = fc.constantFrom(
  SUBSCRIBE,
  AUTHORIZE,
  '{"id":3,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"1fffe000"}]}',
  '{"id":4,"method":"mining.extranonce.subscribe","params":[]}',
  '{"id":5,"method":"mining.suggest_difficulty","params":[0.001]}',
);

const line = fc.oneof(
  { weight: 4, arbitrary: handshake },
  { weight: 4, arbitrary: share },
  {
    weight: 3,
    arbitrary: fc
      .tuple(idArbitrary, callArbitrary)
      .map(([id, c]) => encodeRequest(id, c).trimEnd()),
  },
  { weight: 4, arbitrary: stratumObject.map((o) => JSON.stringify(o) ?? 'null') },
  { weight: 1, arbitrary: fc.string({ unit: anyCodePoint, maxLength: 60 }) },
  { weight: 1, arbitrary: fc.constantFrom('', '{', 'null', '[1]', 'x'.repeat(5_000)) },
);

const session = fc.record({
  // Half the miners do the handshake first, so their shares reach the share checks.
  lines: fc
    .tuple(fc.boolean(), fc.array(line, { maxLength: 14 }))
    .map(([polite, rest]) => (polite ? [SUBSCRIBE, AUTHORIZE, ...rest] : rest)),
  newline: fc.constantFrom('\n', '\r\n'),
  cuts: fc.array(fc.nat(), { maxLength: 10 }),
});

/** Resolves once the socket is closed, however it ended (a reset included). */
function closeOf(socket: Socket): Promise<void> {
  if (socket.closed) return Promise.resolve();
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

/** Send the lines in chunks, hang up, and return everything the relay wrote back. */
async function exchange(lines: string[], newline: string, cuts: number[]): Promise<string> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  let received = '';
  socket.setEncoding('utf8');
  socket.on('data', (text: string) => {
    received += text;
  });
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  const bytes = Buffer.from(lines.map((l) => l + newline).join(''), 'utf8');
  for (const chunk of chunked(bytes, cuts)) {
    if (socket.destroyed) break;
    await new Promise<void>((resolve) => socket.write(chunk, () => resolve()));
  }
  socket.end();
  await closeOf(socket);
  return received;
}

describe('fuzz: the relay Stratum port against a hostile miner', () => {
  fuzzAsync(
    'answers with Stratum messages and documented codes only, and frees the connection',
    session,
    async ({ lines, newline, cuts }) => {
      const before = stratifier.clientCount;
      const received = await exchange(lines, newline, cuts);
      let answers = 0;
      for (const text of received.split('\n')) {
        if (text === '') continue;
        const parsed = parseMessage(text);
        if (!parsed.ok)
          expect.fail(`relay wrote a line that does not parse: ${text.slice(0, 200)}`);
        const message = parsed.value;
        if (message.kind === 'response') {
          answers++;
          if (!message.outcome.ok && message.outcome.error.code !== null) {
            const { code } = message.outcome.error;
            if (!CODES.has(code)) expect.fail(`undocumented code ${code}: ${text.slice(0, 200)}`);
          }
        } else if (!NOTIFICATIONS.has(message.method)) {
          expect.fail(`relay sent ${message.method}`);
        }
      }
      // One answer per line at most (a line may hold a newline of its own).
      const sent = lines
        .join(newline)
        .split('\n')
        .filter((l) => l.trim() !== '').length;
      expect(answers).toBeLessThanOrEqual(sent);
      await expectReleased(() => connector.size, stratifier, before);
    },
    // A loopback connection per case.
    { weight: 0.1 },
  );
});
