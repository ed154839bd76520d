import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RpcError, RpcErrorCode } from '../../src/protocol/errors.js';
import {
  encodeError,
  encodeNotification,
  encodeRequest,
  encodeResult,
  type ParsedFrame,
  parseFrame,
} from '../../src/protocol/jsonrpc.js';
import { clientRequests, describeIssue, relayNotifications } from '../../src/protocol/messages.js';
import { anyCodePoint, anyJson, fuzz, mutatedRecord } from '../helpers/fuzz.js';
import { circuitSchemas } from './circuit-arbitraries.js';

/**
 * The circuit protocol (docs/design.md §5): JSON-RPC envelopes (src/protocol/jsonrpc.ts) and
 * the schema of every request, result and notification (src/protocol/messages.ts). Parsing
 * never throws; a refused frame gets one of the documented codes and keeps the id it can
 * recover; encoders and parsers agree; a refused body names the field that is wrong.
 */

const FRAME_CODES = new Set<number>([RpcErrorCode.parseError, RpcErrorCode.invalidRequest]);
const MAX_FRAME = 16 * 1024;

const methods = [...Object.keys(clientRequests), ...Object.keys(relayNotifications)];
const rpcId = fc.oneof(
  fc.string({ maxLength: 64 }),
  fc.maxSafeInteger(),
  fc.integer({ min: -1000, max: 1000 }),
);
const method = fc.oneof(fc.constantFrom(...methods), fc.string({ minLength: 1, maxLength: 64 }));
const params = fc.oneof(
  ...circuitSchemas.map(({ valid }) => valid),
  fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
);

/**
 * Params as an encoder is given them. A "__proto__" key is left out: the params schema (a zod
 * record) drops it on parsing, on purpose, so it cannot come back.
 */
const wireParams = fc.dictionary(
  fc.string().filter((key) => key !== '__proto__'),
  fc.jsonValue({ maxDepth: 2 }),
  { maxKeys: 4 },
);

/** Requests, notifications and responses, valid or one field off. */
const envelope: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.record({ jsonrpc: fc.constant('2.0'), id: rpcId, method, params }),
  fc.record(
    { jsonrpc: fc.constant('2.0'), method, params },
    { requiredKeys: ['jsonrpc', 'method'] },
  ),
  fc.record({ jsonrpc: fc.constant('2.0'), id: fc.option(rpcId), result: anyJson }),
  fc.record({
    jsonrpc: fc.constant('2.0'),
    id: fc.option(rpcId),
    error: fc.record(
      { code: fc.integer(), message: fc.string({ maxLength: 1024 }), data: anyJson },
      { requiredKeys: ['code', 'message'] },
    ),
  }),
);
const nearEnvelope = fc.oneof(
  envelope,
  mutatedRecord(envelope).map(({ value }) => value),
  mutatedRecord(envelope)
    .chain(({ value }) => mutatedRecord(fc.constant(value)))
    .map((m) => m.value),
);

/** Everything parseFrame promises, whatever the text. */
function checkFrame(text: string, maxBytes: number): ParsedFrame {
  const frame = parseFrame(text, maxBytes);
  if (frame.kind === 'invalid') {
    expect(FRAME_CODES.has(frame.error.code)).toBe(true);
    expect(frame.error.message).toMatch(/\S/);
    expect(
      frame.id === null || typeof frame.id === 'string' || Number.isSafeInteger(frame.id),
    ).toBe(true);
  }
  if (Buffer.byteLength(text, 'utf8') > maxBytes) {
    expect(frame).toMatchObject({ kind: 'invalid', id: null });
  }
  return frame;
}

/** The frame a parsed message re-encodes to. */
function reencode(frame: Exclude<ParsedFrame, { kind: 'invalid' }>): string {
  switch (frame.kind) {
    case 'request': {
      const { id, method: name, params: body } = frame.message;
      return body === undefined
        ? JSON.stringify({ jsonrpc: '2.0', id, method: name })
        : encodeRequest(id, name, body);
    }
    case 'notification': {
      const { method: name, params: body } = frame.message;
      return body === undefined
        ? JSON.stringify({ jsonrpc: '2.0', method: name })
        : encodeNotification(name, body);
    }
    case 'response':
      return 'error' in frame.message
        ? encodeError(frame.message.id, frame.message.error)
        : encodeResult(frame.message.id, frame.message.result);
  }
}

describe('fuzz: circuit frames', () => {
  fuzz(
    'parseFrame takes any text without throwing and refuses with a documented code',
    fc.tuple(
      fc.oneof(
        fc.string({ unit: anyCodePoint, maxLength: 300 }),
        nearEnvelope.map((e) => JSON.stringify(e)),
        fc.tuple(nearEnvelope, fc.nat(), fc.string({ maxLength: 2 })).map(([e, at, insert]) => {
          const text = JSON.stringify(e);
          const cut = at % (text.length + 1);
          return text.slice(0, cut) + insert + text.slice(cut + 1);
        }),
      ),
      fc.oneof(fc.constant(MAX_FRAME), fc.integer({ min: 0, max: 400 })),
    ),
    ([text, maxBytes]) => void checkFrame(text, maxBytes),
    { weight: 2 },
  );

  fuzz('a frame refused for its shape keeps its id', nearEnvelope, (value) => {
    const text = JSON.stringify(value);
    const frame = checkFrame(text, MAX_FRAME);
    if (frame.kind !== 'invalid') return;
    const sent = JSON.parse(text) as Record<string, unknown>;
    const id = sent.id;
    // An oversized frame is refused before it is read at all.
    const recoverable =
      Buffer.byteLength(text) <= MAX_FRAME &&
      ((typeof id === 'string' && id.length <= 64) ||
        (typeof id === 'number' && Number.isSafeInteger(id)));
    expect(frame.id).toEqual(recoverable ? id : null);
  });

  fuzz('parse → encode → parse gives the same message', nearEnvelope, (value) => {
    const frame = parseFrame(JSON.stringify(value), MAX_FRAME);
    if (frame.kind === 'invalid') return;
    expect(parseFrame(reencode(frame), Number.MAX_SAFE_INTEGER)).toEqual(frame);
  });

  fuzz(
    'the encoders write frames that parse back to what they were given',
    fc.tuple(
      rpcId,
      method,
      wireParams,
      fc.jsonValue({ maxDepth: 3 }),
      fc.record({
        code: fc.integer(),
        message: fc.string({ maxLength: 1024 }),
        data: fc.option(fc.jsonValue({ maxDepth: 2 }), { nil: undefined }),
      }),
    ),
    ([id, name, body, result, error]) => {
      // JSON has no -0 and keeps no undefined: compare with what survives the wire.
      const wire = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;
      const huge = Number.MAX_SAFE_INTEGER;
      expect(parseFrame(encodeRequest(id, name, body), huge)).toEqual({
        kind: 'request',
        message: { jsonrpc: '2.0', id, method: name, params: wire(body) },
      });
      expect(parseFrame(encodeNotification(name, body), huge)).toEqual({
        kind: 'notification',
        message: { jsonrpc: '2.0', method: name, params: wire(body) },
      });
      expect(parseFrame(encodeResult(id, result), huge)).toEqual({
        kind: 'response',
        message: { jsonrpc: '2.0', id, result: wire(result) },
      });
      const thrown = new RpcError(error.code, error.message, error.data);
      expect(parseFrame(encodeError(null, thrown), huge)).toEqual({
        kind: 'response',
        message: { jsonrpc: '2.0', id: null, error: wire(thrown.toObject()) },
      });
    },
  );
});

describe('circuit message schemas: found by the fuzzer', () => {
  it('a refusal of a missing field names the field', () => {
    // zod's own message for a missing key ("Invalid input: expected string, received
    // undefined") says nothing of which key; describeIssue puts the path first.
    const parsed = clientRequests['mining.register'].params.safeParse({ mode: 'tickets' });
    if (parsed.success) expect.fail('parsed without agent');
    expect(describeIssue(parsed.error)).toBe(
      'agent: Invalid input: expected string, received undefined',
    );
    const submit = clientRequests['mining.submit'].params.safeParse({ jobId: 'j' });
    if (submit.success) expect.fail('parsed without extranonce2');
    expect(describeIssue(submit.error)).toMatch(/^extranonce2: /);
  });
});

describe('fuzz: circuit message schemas', () => {
  for (const { name, schema, valid } of circuitSchemas) {
    fuzz(
      `${name}: valid bodies parse, and parse the same after a trip over the wire`,
      valid,
      (body) => {
        const parsed = schema.safeParse(body);
        if (!parsed.success) expect.fail(describeIssue(parsed.error));
        const again = schema.safeParse(JSON.parse(JSON.stringify(parsed.data)));
        expect(again).toEqual(parsed);
      },
      { weight: 0.5 },
    );

    fuzz(
      `${name}: a body one field off is refused with a message naming the field, or parses`,
      fc.oneof(
        { weight: 4, arbitrary: mutatedRecord(valid.map((v) => ({ ...v }))) },
        { weight: 1, arbitrary: anyJson.map((value) => ({ value, field: null })) },
      ),
      ({ value, field }) => {
        const parsed = schema.safeParse(JSON.parse(JSON.stringify(value)));
        if (parsed.success) return;
        const message = describeIssue(parsed.error);
        expect(message).toMatch(/\S/);
        if (field !== null) expect(message).toContain(field);
      },
      { weight: 0.5 },
    );
  }
});
