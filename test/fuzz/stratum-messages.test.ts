import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  buildConfigureResult,
  buildSubscribeResult,
  type Call,
  describeError,
  encodeError,
  encodeNotification,
  encodeRequest,
  encodeResult,
  normaliseError,
  parseConfigureResult,
  parseMessage,
  parseSubscribeResult,
  responseOutcome,
  type StratumMessage,
} from '../../src/stratum/index.js';
import { anyCodePoint, anyJson, fuzz, hexBetween, mutatedRecord } from '../helpers/fuzz.js';
import { callArbitrary, idArbitrary, stratumObject } from './stratum-arbitraries.js';

/**
 * The Stratum V1 codec (src/stratum/messages.ts, params.ts, results.ts, errors.ts): parsing
 * never throws and says why it refuses; what the encoders write parses back to the same call,
 * and whatever parses re-encodes to a line that parses to the same thing again.
 */

const KINDS = new Set(['request', 'notification', 'unknown', 'response']);

/** A Stratum error as normaliseError promises it: a code or null, and bounded text. */
function expectNormalised(error: { code: number | null; message: string }): void {
  expect(error.code === null || Number.isInteger(error.code)).toBe(true);
  expect(typeof error.message).toBe('string');
  // 256 characters and an ellipsis at most: peer text reaches logs and operator messages.
  expect(error.message.length).toBeLessThanOrEqual(257);
  expect(typeof describeError(error)).toBe('string');
}

/** Everything parseMessage promises about one line, whatever the line. */
function checkParsed(line: string): ReturnType<typeof parseMessage> {
  const parsed = parseMessage(line);
  if (!parsed.ok) {
    expect(parsed.error).toMatch(/\S/);
    return parsed;
  }
  expect(KINDS.has(parsed.value.kind)).toBe(true);
  if (parsed.value.kind === 'response') {
    if (!parsed.value.outcome.ok) expectNormalised(parsed.value.outcome.error);
  } else {
    expect(typeof parsed.value.method).toBe('string');
  }
  return parsed;
}

/** A parsed call written out again: the line the relay (or a pool client) would send. */
function reencode(message: Extract<StratumMessage, { kind: 'request' | 'notification' }>): string {
  const call = { method: message.method, params: message.params } as Call;
  return message.kind === 'request' ? encodeRequest(message.id, call) : encodeNotification(call);
}

function isWireId(value: unknown): boolean {
  return (
    value === undefined ||
    value === null ||
    typeof value === 'string' ||
    (typeof value === 'number' && Number.isFinite(value))
  );
}

describe('Stratum messages: found by the fuzzer', () => {
  it('re-encodes a parsed subscribe or reconnect to a line that parses the same', () => {
    for (const line of [
      // A session id without an agent: the agent stays null, not "".
      '{"id":1,"method":"mining.subscribe","params":[null,"feed"]}',
      // No wait given: it stays null, not 0.
      '{"id":null,"method":"client.reconnect","params":["",null]}',
    ]) {
      const parsed = parseMessage(line);
      if (!parsed.ok || parsed.value.kind === 'response' || parsed.value.kind === 'unknown') {
        expect.fail(`did not parse: ${line}`);
      }
      expect(parseMessage(reencode(parsed.value))).toEqual(parsed);
    }
  });
});

describe('fuzz: Stratum messages', () => {
  fuzz(
    'parseMessage takes any text without throwing',
    fc.oneof(
      fc.string({ unit: anyCodePoint, maxLength: 400 }),
      fc.string({ unit: 'grapheme-ascii', maxLength: 200 }),
      // JSON with a cut or a byte changed: near-misses reach deeper than noise.
      fc.tuple(stratumObject, fc.nat(), fc.string({ maxLength: 3 })).map(([object, at, insert]) => {
        const text = JSON.stringify(object) ?? 'null';
        const cut = at % (text.length + 1);
        return text.slice(0, cut) + insert + text.slice(cut + 1);
      }),
    ),
    (line) => void checkParsed(line),
  );

  fuzz(
    'a line near a valid message parses or says why, and keeps the id to answer',
    stratumObject,
    (object) => {
      const line = JSON.stringify(object) ?? 'null';
      const parsed = checkParsed(line);
      // What the receiver sees (JSON has no -0, no undefined).
      const sent = JSON.parse(line) as unknown;
      if (parsed.ok || typeof sent !== 'object' || sent === null || Array.isArray(sent)) return;
      const envelope = sent as Record<string, unknown>;
      // A readable envelope keeps its id, so a server can answer the request it refuses.
      if (isWireId(envelope.id)) expect(parsed.id).toEqual(envelope.id ?? null);
      if (typeof envelope.method === 'string' && envelope.method !== '' && 'method' in parsed) {
        expect(parsed.method).toBe(envelope.method);
      }
    },
    { weight: 2 },
  );

  fuzz(
    'parse → encode → parse gives the same call',
    stratumObject,
    (object) => {
      const parsed = parseMessage(JSON.stringify(object) ?? 'null');
      if (!parsed.ok) return;
      const message = parsed.value;
      if (message.kind !== 'request' && message.kind !== 'notification') return;
      const again = parseMessage(reencode(message));
      expect(again).toEqual({ ok: true, value: message });
    },
    { weight: 2 },
  );

  fuzz(
    'encodeRequest → parseMessage gives the call back',
    fc.tuple(idArbitrary, callArbitrary),
    ([id, call]) => {
      const line = encodeRequest(id, call);
      expect(line.endsWith('\n')).toBe(true);
      expect(line.indexOf('\n')).toBe(line.length - 1);
      expect(parseMessage(line)).toEqual({ ok: true, value: { kind: 'request', id, ...call } });
    },
  );

  fuzz('encodeNotification → parseMessage gives the call back', callArbitrary, (call) => {
    expect(parseMessage(encodeNotification(call))).toEqual({
      ok: true,
      value: { kind: 'notification', ...call },
    });
  });

  fuzz(
    'encodeResult and encodeError → parseMessage give the answer back',
    fc.tuple(
      fc.option(idArbitrary),
      fc.jsonValue({ maxDepth: 3 }),
      fc.record({
        code: fc.integer({ min: -(2 ** 31), max: 2 ** 31 }),
        message: fc.string({ unit: anyCodePoint, maxLength: 300 }),
        data: fc.option(fc.jsonValue({ maxDepth: 2 })),
      }),
    ),
    ([id, result, error]) => {
      const answered = parseMessage(encodeResult(id, result));
      if (!answered.ok || answered.value.kind !== 'response') expect.fail('not a response');
      expect(answered.value.id).toEqual(id);
      const { outcome } = answered.value;
      if (result === false) {
        expect(outcome).toEqual({ ok: false, error: { code: null, message: 'rejected' } });
      } else {
        if (!outcome.ok) expect.fail('a result is not an error');
        expect(JSON.stringify(outcome.result)).toBe(JSON.stringify(result));
      }

      const refused = parseMessage(encodeError(id, { ...error, data: error.data ?? undefined }));
      if (!refused.ok || refused.value.kind !== 'response' || refused.value.outcome.ok) {
        expect.fail('not an error response');
      }
      const got = refused.value.outcome.error;
      expect(got.code).toBe(error.code);
      expect(got.message).toBe(
        error.message.length > 256 ? `${error.message.slice(0, 256)}…` : error.message,
      );
      expect(JSON.stringify(got.data ?? null)).toBe(JSON.stringify(error.data));
    },
  );

  fuzz(
    'normaliseError and responseOutcome take any JSON',
    fc.tuple(anyJson, anyJson, anyJson),
    ([result, error, reason]) => {
      const normalised = normaliseError(error);
      if (normalised !== null) expectNormalised(normalised);
      const outcome = responseOutcome(result, error, reason);
      if (!outcome.ok) expectNormalised(outcome.error);
      else expect(outcome.result).toBe(result);
    },
  );

  const subscribeResult = fc.record({
    sessionId: fc.option(fc.string({ minLength: 1, maxLength: 40 })),
    extranonce1: hexBetween(0, 32),
    extranonce2Size: fc.integer({ min: 0, max: 16 }),
  });

  fuzz('subscribe results: build → parse gives them back', subscribeResult, (value) => {
    expect(parseSubscribeResult(buildSubscribeResult(value))).toEqual({ ok: true, value });
  });

  fuzz(
    'subscribe and configure results: any answer parses or is refused, never throws',
    fc.oneof(
      anyJson,
      subscribeResult.chain((value) =>
        fc.tuple(fc.nat(), anyJson).map(([i, junk]) => {
          const built = buildSubscribeResult(value);
          built[i % (built.length + 1)] = junk;
          return built;
        }),
      ),
      fc
        .option(fc.integer({ min: 0, max: 0xffffffff }))
        .chain((mask) =>
          mutatedRecord(fc.constant(buildConfigureResult({ versionRollingMask: mask }))),
        )
        .map(({ value }) => value),
    ),
    (result) => {
      const subscribed = parseSubscribeResult(result);
      if (!subscribed.ok) expect(subscribed.error).toMatch(/^mining\.subscribe result: \S/);
      else expect(subscribed.value.extranonce2Size).toBeLessThanOrEqual(16);
      const mask = parseConfigureResult(result).versionRollingMask;
      expect(mask === null || (Number.isInteger(mask) && mask >= 0 && mask <= 0xffffffff)).toBe(
        true,
      );
    },
  );

  fuzz(
    'configure results: build → parse gives the mask back',
    fc.option(fc.integer({ min: 0, max: 0xffffffff })),
    (mask) => {
      expect(parseConfigureResult(buildConfigureResult({ versionRollingMask: mask }))).toEqual({
        versionRollingMask: mask,
      });
    },
  );
});
