import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { SessionError, UpstreamSession } from '../../src/sources/stratum-session.js';
import type { SourceJob, UpstreamTerms } from '../../src/sources/work-source.js';
import { buildConfigureResult, buildSubscribeResult } from '../../src/stratum/index.js';
import { anyCodePoint, anyJson, chunked, fuzzAsync, hexBetween } from '../helpers/fuzz.js';
import { stratumObject } from './stratum-arbitraries.js';

/**
 * The pool client's side of Stratum V1 (src/sources/stratum-connection.ts and
 * stratum-session.ts) against a hostile pool on loopback: whatever the pool sends, in whatever
 * chunks, the handshake either gives a session or fails with a SessionError; terms and jobs
 * that come out are well-formed; no promise is left rejected; nothing is emitted after the
 * session closed, and a session that is given says when it closes. A pool that answers the
 * handshake properly gives a session, unless a bad line behind the answers closed it at once.
 */

const HEX = /^(?:[0-9a-f]{2})*$/;
/** How long a session may take to notice the pool hung up; a hang limit only. */
const CLOSE_WAIT_MS = 5_000;

/** What the pool sends on one connection. */
interface PoolScript {
  /** Whether the client asks for version rolling (one more request, id 1, first). */
  rolling: boolean;
  /** The handshake answered properly before anything else. */
  goodHandshake: boolean;
  lines: string[];
  newline: string;
  cuts: number[];
}

/** A subscribe result, good or slightly off. */
const subscribeResult = fc.oneof(
  fc
    .record({
      sessionId: fc.option(fc.string({ minLength: 1, maxLength: 20 })),
      extranonce1: hexBetween(0, 32),
      extranonce2Size: fc.integer({ min: 0, max: 16 }),
    })
    .map((r) => buildSubscribeResult(r)),
  anyJson,
);

const answerResult = fc.oneof(
  subscribeResult,
  fc.constantFrom(true, false, null),
  fc
    .option(fc.integer({ min: 0, max: 0xffffffff }))
    .map((mask) => buildConfigureResult({ versionRollingMask: mask })),
  anyJson,
);

/** An answer to one of the client's request ids (or a wrong one). */
const answer = fc
  .tuple(
    fc.oneof(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5 }).map(String), anyJson),
    answerResult,
    fc.oneof(
      fc.constant(null),
      fc.tuple(
        fc.integer({ min: -32_700, max: 30 }),
        fc.string({ maxLength: 20 }),
        fc.constant(null),
      ),
      anyJson,
    ),
  )
  .map(([id, result, error]) => JSON.stringify({ id, result, error }));

const line = fc.oneof(
  { weight: 3, arbitrary: answer },
  { weight: 4, arbitrary: stratumObject.map((o) => JSON.stringify(o) ?? 'null') },
  { weight: 1, arbitrary: fc.string({ unit: anyCodePoint, maxLength: 80 }) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', '{', '[]', 'x'.repeat(40_000)) },
);

const script: fc.Arbitrary<PoolScript> = fc
  .record({
    rolling: fc.boolean(),
    goodHandshake: fc.boolean(),
    lines: fc.array(line, { maxLength: 12 }),
    newline: fc.constantFrom('\n', '\r\n'),
    cuts: fc.array(fc.nat(), { maxLength: 8 }),
    extranonce1: hexBetween(0, 8),
    extranonce2Size: fc.integer({ min: 0, max: 16 }),
  })
  .map(({ extranonce1, extranonce2Size, ...s }) => {
    if (!s.goodHandshake) return s;
    const first = s.rolling ? 2 : 1;
    const good = [
      JSON.stringify({
        id: first,
        result: buildSubscribeResult({ sessionId: 'feed', extranonce1, extranonce2Size }),
        error: null,
      }),
      JSON.stringify({ id: first + 1, result: true, error: null }),
    ];
    return { ...s, lines: [...good, ...s.lines] };
  });

let server: Server;
let port: number;
/** The script the next connection gets. */
let next: { bytes: Buffer; cuts: number[] } | null = null;
/** Told of the next accepted connection (cases run one at a time). */
let onAccept: ((socket: Socket) => void) | null = null;

beforeAll(async () => {
  server = createServer((socket) => {
    socket.on('error', () => {});
    // What the client asks does not change the script; reading it lets the close through.
    socket.resume();
    onAccept?.(socket);
    onAccept = null;
    const plan = next;
    if (plan === null) {
      socket.destroy();
      return;
    }
    // Write each chunk on its own turn, as TCP would deliver them, then hang up.
    const chunks = chunked(plan.bytes, plan.cuts);
    const writeNext = () => {
      const chunk = chunks.shift();
      if (chunk === undefined) socket.end();
      else socket.write(chunk, () => setImmediate(writeNext));
    };
    writeNext();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  port = address.port;
});
afterAll(async () => {
  server.close();
  await once(server, 'close');
});

function checkTerms(terms: UpstreamTerms): void {
  expect(terms.extranonce1).toMatch(HEX);
  expect(terms.extranonce1.length).toBeLessThanOrEqual(64);
  expect(Number.isInteger(terms.extranonce2Size)).toBe(true);
  expect(terms.extranonce2Size).toBeGreaterThanOrEqual(0);
  expect(terms.extranonce2Size).toBeLessThanOrEqual(16);
  expect(Number.isFinite(terms.difficulty) && terms.difficulty > 0).toBe(true);
  const mask = terms.versionMask;
  expect(mask === null || (Number.isInteger(mask) && mask >= 0 && mask <= 0xffffffff)).toBe(true);
}

function checkJob(job: SourceJob): void {
  for (const field of [job.prevhash, job.coinb1, job.coinb2, job.version, job.nbits, job.ntime]) {
    expect(field).toMatch(HEX);
  }
  expect(job.prevhash.length).toBe(64);
  for (const branch of job.merkleBranch) expect(branch).toMatch(/^[0-9a-f]{64}$/);
  expect(job.jobId.length).toBeGreaterThan(0);
}

/** Resolves once the socket is closed, however it ended (a reset included). */
function closeOf(socket: Socket): Promise<void> {
  if (socket.closed) return Promise.resolve();
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

async function runScript(s: PoolScript): Promise<void> {
  next = { bytes: Buffer.from(s.lines.map((l) => l + s.newline).join(''), 'utf8'), cuts: s.cuts };
  const serverSocket = new Promise<Socket>((resolve) => {
    onAccept = resolve;
  });
  let session: UpstreamSession | null = null;
  try {
    session = await UpstreamSession.establish({
      endpoint: { tls: false, host: '127.0.0.1', port, display: 'fuzz' },
      user: 'fuzz',
      password: 'x',
      agent: 'powbridge-fuzz',
      versionRolling: s.rolling ? { mask: 0x1fffe000, minBitCount: 0 } : null,
      requestTimeoutMs: 5_000,
      silenceTimeoutMs: 60_000,
      resumeSessionId: null,
      logger: silentLogger,
    });
  } catch (err) {
    if (!(err instanceof SessionError)) throw err;
    // A proper handshake fails only when a bad line behind it already closed the connection.
    if (s.goodHandshake) expect(err.message).toBe('pool closed the connection after the handshake');
  }
  const socket = await serverSocket;
  if (session === null) {
    await closeOf(socket);
    return;
  }
  // Collected, not thrown: the listeners run inside the connection's socket handlers.
  const problems: string[] = [];
  const note = (check: () => void) => {
    try {
      check();
    } catch (err) {
      problems.push(String(err));
    }
  };
  let closed = false;
  const sessionClosed = new Promise<void>((resolve) =>
    session.once('close', () => {
      closed = true;
      resolve();
    }),
  );
  session.on('terms', (terms) => {
    if (closed) problems.push('terms after close');
    note(() => checkTerms(terms));
  });
  session.on('job', (job) => {
    if (closed) problems.push('job after close');
    note(() => checkJob(job));
  });
  let sessions = 0;
  session.activate(() => ++sessions);
  const terms = session.terms();
  if (terms !== null) note(() => checkTerms(terms));
  // The pool hangs up after its script: an established session must say it closed (a
  // session that closed before anyone listened would leave the pool client "live" forever).
  await closeOf(socket);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    sessionClosed,
    new Promise((resolve) => {
      timer = setTimeout(resolve, CLOSE_WAIT_MS);
    }),
  ]);
  clearTimeout(timer);
  session.close('case over');
  expect(closed, 'the session never said it closed').toBe(true);
  expect(problems).toEqual([]);
}

describe('fuzz: the pool client against a hostile pool', () => {
  fuzzAsync(
    'a session or a SessionError, well-formed terms and jobs, nothing after close',
    script,
    runScript,
    // A loopback connection per case.
    { weight: 0.1 },
  );
});
