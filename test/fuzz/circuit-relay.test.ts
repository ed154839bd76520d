import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import WebSocket from 'ws';
import { WsCloseCode } from '../../src/lib/ws-close.js';
import { RpcErrorCode } from '../../src/protocol/errors.js';
import { parseFrame } from '../../src/protocol/jsonrpc.js';
import { clientRequests, relayNotifications } from '../../src/protocol/messages.js';
import { CircuitConnector } from '../../src/relay/circuit-connector.js';
import type { Stratifier } from '../../src/relay/stratifier.js';
import { anyCodePoint, anyJson, fuzzAsync, mutatedRecord } from '../helpers/fuzz.js';
import { validParams } from './circuit-arbitraries.js';
import { expectReleased, type LiveStratifier, startLiveStratifier } from './live-stratifier.js';

/**
 * The relay's circuit endpoint (src/relay/circuit-connector.ts) on loopback, fed what a
 * hostile client sends over one WebSocket: requests of every method, valid or one field off,
 * unknown methods, notifications and responses it has no business sending, garbage text,
 * binary and oversized frames. Every frame the relay sends back is a JSON-RPC response or one
 * of its notifications, valid by its schema; every error carries a code of
 * src/protocol/errors.ts; every close, a code of src/lib/ws-close.ts; and once the client is
 * gone, so are its connection and its session.
 */

const CODES = new Set<number>(Object.values(RpcErrorCode));
/** Close codes the relay sends, plus what ws reports for a close without one. */
const CLOSE_CODES = new Set<number>([...Object.values(WsCloseCode), 1005, 1006]);
const MAX_FRAME = 16 * 1024;

let live: LiveStratifier;
let stratifier: Stratifier;
let connector: CircuitConnector;
let server: Server;
let url: string;

beforeAll(async () => {
  live = await startLiveStratifier();
  stratifier = live.stratifier;
  connector = new CircuitConnector(stratifier, {
    // The parsers and the dispatch are under test here, not the rate limits.
    limits: { maxInvalidFrames: 1_000, maxRequestsPerSecond: 1_000_000, maxFrameBytes: MAX_FRAME },
  });
  server = createServer((_, res) => res.end());
  connector.attach(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1/circuit`;
});
afterAll(async () => {
  connector.close();
  stratifier.stop();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const REGISTER = JSON.stringify({
  jsonrpc: '2.0',
  id: 0,
  method: 'mining.register',
  params: { agent: 'fuzz', mode: 'tickets' },
});

const methods = Object.keys(clientRequests) as (keyof typeof clientRequests)[];
const id = fc.oneof(fc.integer({ min: -5, max: 1_000 }), fc.string({ maxLength: 8 }));

/** A request of a known method, its params valid or one field off; shares name the job. */
const request = fc
  .constantFrom(...methods)
  .chain((method) =>
    fc.tuple(
      fc.constant(method),
      id,
      fc.oneof(
        validParams[method].map((p) => ({ ...p })),
        mutatedRecord(validParams[method].map((p) => ({ ...p }))).map(({ value }) => value),
      ),
      fc.boolean(),
    ),
  )
  .map(([method, requestId, params, currentJob]) => {
    const body: Record<string, unknown> = { ...params };
    if (method === 'mining.submit' && currentJob && typeof body.jobId === 'string') {
      // The current job, its ntime and the relay's extranonce2 size (6 bytes): share checks.
      const { jobId, ntime } = live.current();
      body.jobId = jobId;
      body.ntime = ntime;
      if (typeof body.extranonce2 === 'string')
        body.extranonce2 = body.extranonce2.padEnd(12, '0').slice(0, 12);
    }
    return JSON.stringify({ jsonrpc: '2.0', id: requestId, method, params: body });
  });

/** One frame: text (JSON-RPC or not) or binary. */
const frame: fc.Arbitrary<string | Buffer> = fc.oneof(
  { weight: 6, arbitrary: request },
  {
    weight: 2,
    arbitrary: mutatedRecord(
      fc.record({
        jsonrpc: fc.constant('2.0'),
        id,
        method: fc.oneof(fc.constantFrom(...methods), fc.string({ maxLength: 70 })),
        params: anyJson,
      }),
    ).map(({ value }) => JSON.stringify(value)),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.option(id), anyJson)
      .map(([i, result]) => JSON.stringify({ jsonrpc: '2.0', id: i, result })),
  },
  { weight: 1, arbitrary: anyJson.map((v) => JSON.stringify(v) ?? 'null') },
  { weight: 1, arbitrary: fc.string({ unit: anyCodePoint, maxLength: 100 }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)) },
  { weight: 1, arbitrary: fc.constant('x'.repeat(MAX_FRAME + 1)) },
);

const circuit = fc
  .tuple(fc.boolean(), fc.array(frame, { maxLength: 10 }))
  .map(([register, frames]) => (register ? [REGISTER, ...frames] : frames));

interface Exchange {
  received: string[];
  /** Frames the relay answered (responses, not notifications). */
  answers: number;
  /** The relay closed the connection before we did. */
  closedByRelay: boolean;
  closeCode: number;
}

/** Longest wait for the relay's answers; far above any answer time, a hang limit only. */
const ANSWER_WAIT_MS = 10_000;

/** Send the frames, wait until each is answered (or the relay closes), hang up. */
async function exchange(frames: (string | Buffer)[]): Promise<Exchange> {
  const ws = new WebSocket(url);
  const result: Exchange = { received: [], answers: 0, closedByRelay: false, closeCode: 0 };
  let hungUp = false;
  const closed = new Promise<void>((resolve) =>
    ws.once('close', (code) => {
      result.closeCode = code;
      result.closedByRelay = !hungUp;
      resolve();
    }),
  );
  ws.on('error', () => {});
  let allAnswered: () => void = () => {};
  const answered = new Promise<void>((resolve) => {
    allAnswered = resolve;
  });
  let firstAnswer: () => void = () => {};
  const registered = new Promise<void>((resolve) => {
    firstAnswer = resolve;
  });
  ws.on('message', (data, isBinary) => {
    const text = !isBinary && Buffer.isBuffer(data) ? data.toString('utf8') : '<binary>';
    result.received.push(text);
    if (!text.includes('"id":')) return;
    firstAnswer();
    if (++result.answers >= frames.length) allAnswered();
  });
  if (frames.length === 0) allAnswered();
  await Promise.race([new Promise((resolve) => ws.once('open', resolve)), closed]);
  let rest = frames;
  if (frames[0] === REGISTER) {
    // Registered first, the circuit has its job before the shares that name it arrive.
    ws.send(REGISTER);
    await Promise.race([registered, closed]);
    rest = frames.slice(1);
  }
  for (const f of rest) {
    if (ws.readyState !== WebSocket.OPEN) break;
    ws.send(f, { binary: typeof f !== 'string' });
  }
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ANSWER_WAIT_MS);
  });
  await Promise.race([answered, closed, late]);
  clearTimeout(timer);
  hungUp = true;
  ws.close(WsCloseCode.normal);
  await closed;
  return result;
}

describe('fuzz: the relay circuit endpoint against a hostile client', () => {
  fuzzAsync(
    'answers JSON-RPC with documented codes, closes with documented codes, frees the circuit',
    circuit,
    async (frames) => {
      const before = stratifier.clientCount;
      const { received, answers, closedByRelay, closeCode } = await exchange(frames);
      expect(CLOSE_CODES.has(closeCode), `close code ${closeCode}`).toBe(true);
      // One answer per frame, unless the relay closed the circuit (oversized frame).
      if (!closedByRelay) expect(answers).toBe(frames.length);
      for (const text of received) {
        const parsed = parseFrame(text, Number.MAX_SAFE_INTEGER);
        if (parsed.kind === 'response') {
          const { message } = parsed;
          if ('error' in message && !CODES.has(message.error.code)) {
            expect.fail(`undocumented code ${message.error.code}: ${text.slice(0, 200)}`);
          }
        } else if (parsed.kind === 'notification') {
          const { method, params } = parsed.message;
          if (!Object.hasOwn(relayNotifications, method)) expect.fail(`relay sent ${method}`);
          const schema = relayNotifications[method as keyof typeof relayNotifications];
          const checked = schema.safeParse(params);
          if (!checked.success) expect.fail(`${method} does not fit its schema: ${text}`);
        } else {
          expect.fail(`relay sent a ${parsed.kind} frame: ${text.slice(0, 200)}`);
        }
      }
      await expectReleased(() => connector.size, stratifier, before);
    },
    // A WebSocket connection per case.
    { weight: 0.05 },
  );
});
