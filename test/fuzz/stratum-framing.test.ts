import fc from 'fast-check';
import { describe, expect } from 'vitest';
import { DEFAULT_MAX_LINE_BYTES, FramingError, LineDecoder } from '../../src/stratum/framing.js';
import { anyCodePoint, chunked, fuzz } from '../helpers/fuzz.js';

/**
 * Stratum V1 framing (src/stratum/framing.ts) against a model that sees the whole stream at
 * once: after every chunk, the decoder has emitted exactly the lines (and the error) the model
 * finds in the bytes so far, wherever TCP cut them. That also bounds its memory: the error
 * comes in the very chunk that takes an unfinished line past the cap (+1 for a CR), so the
 * decoder never holds more than that.
 */

const LF = 0x0a;
const CR = 0x0d;
const utf8 = new TextDecoder('utf-8', { fatal: true });

interface Outcome {
  lines: string[];
  error: string | null;
}

/** What a correct decoder makes of `bytes` (everything received so far). */
function model(bytes: Uint8Array, max: number): Outcome {
  const lines: string[] = [];
  let start = 0;
  for (;;) {
    const newline = bytes.indexOf(LF, start);
    if (newline === -1) {
      // The unfinished line is held, one byte of slack for a CR.
      const held = bytes.length - start;
      return { lines, error: held > max + 1 ? 'too long' : null };
    }
    let end = newline;
    if (end > start && bytes[end - 1] === CR) end--;
    if (end - start > max) return { lines, error: 'too long' };
    let line: string;
    try {
      line = utf8.decode(bytes.subarray(start, end));
    } catch {
      return { lines, error: 'not UTF-8' };
    }
    if (line.trim() !== '') lines.push(line);
    start = newline + 1;
  }
}

/** Pieces a Stratum stream is made of, biased towards the bytes framing cares about. */
const piece: fc.Arbitrary<readonly number[]> = fc.oneof(
  { weight: 4, arbitrary: fc.constant([LF]) },
  { weight: 2, arbitrary: fc.constant([CR, LF]) },
  { weight: 1, arbitrary: fc.constant([CR]) },
  { weight: 1, arbitrary: fc.constantFrom([0x20], [0x09], [0xc2, 0xa0], [0xef, 0xbb, 0xbf]) },
  // Multi-byte characters, which chunk boundaries split.
  {
    weight: 4,
    arbitrary: fc
      .string({ unit: anyCodePoint, minLength: 1, maxLength: 8 })
      .map((s) => [...Buffer.from(s, 'utf8')]),
  },
  { weight: 4, arbitrary: fc.string({ maxLength: 40 }).map((s) => [...Buffer.from(s, 'utf8')]) },
  // Invalid UTF-8: lone continuation bytes, truncated sequences, overlongs, surrogates.
  {
    weight: 1,
    arbitrary: fc.constantFrom([0x80], [0xc0, 0xaf], [0xe0, 0x80], [0xed, 0xa0, 0x80], [0xff]),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 16 }).map((b) => [...b]) },
  // Long runs, to cross the cap.
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 0x21, max: 0x7e }))
      .map(([n, byte]) => new Array<number>(n).fill(byte)),
  },
);

const stream = fc.record({
  bytes: fc.array(piece, { maxLength: 60 }).map((pieces) => new Uint8Array(pieces.flat())),
  cuts: fc.array(fc.nat(), { maxLength: 20 }),
  // Small caps reach the limit often; the default one is checked too.
  max: fc.oneof(fc.integer({ min: 1, max: 128 }), fc.constant(DEFAULT_MAX_LINE_BYTES)),
});

/** Feed chunk by chunk and check the decoder against the model after each one. */
function checkStream(bytes: Uint8Array, chunks: Uint8Array[], max: number): void {
  const decoder = new LineDecoder({ maxLineBytes: max });
  const seen: Outcome = { lines: [], error: null };
  let errors = 0;
  decoder.on('line', (line) => {
    expect(seen.error, 'no line after the error').toBeNull();
    seen.lines.push(line);
  });
  decoder.on('error', (error) => {
    expect(error).toBeInstanceOf(FramingError);
    errors++;
    seen.error = error.message;
  });
  let received = 0;
  let expected: Outcome = { lines: [], error: null };
  for (const chunk of chunks) {
    decoder.push(chunk);
    received += chunk.length;
    // Lines are only ever appended: matching counts after every chunk and the text at the
    // end means every line came out in the chunk that completed it.
    expected = model(bytes.subarray(0, received), max);
    if (
      seen.lines.length !== expected.lines.length ||
      (seen.error === null) !== (expected.error === null)
    ) {
      expect({ after: received, ...seen }).toEqual({ after: received, ...expected });
    }
  }
  expect(seen.lines).toEqual(expected.lines);
  expect(errors).toBe(expected.error === null ? 0 : 1);
  // The decoder ignores everything after an error (it must not restart mid-stream).
  if (seen.error !== null) {
    const before = seen.lines.length;
    decoder.push(new Uint8Array([0x7b, 0x7d, LF]));
    expect(seen.lines.length).toBe(before);
    expect(errors).toBe(1);
  }
}

describe('fuzz: Stratum framing', () => {
  fuzz('emits what the whole stream holds, wherever TCP cuts it', stream, ({ bytes, cuts, max }) =>
    checkStream(bytes, chunked(bytes, cuts), max),
  );

  fuzz(
    'one byte at a time gives the same lines',
    stream.filter(({ bytes }) => bytes.length <= 400),
    ({ bytes, max }) => {
      const chunks = Array.from(bytes, (byte) => new Uint8Array([byte]));
      checkStream(bytes, chunks, max);
    },
    { weight: 0.5 },
  );

  fuzz(
    'a line without a newline fails as soon as it passes the cap, never later',
    fc.record({
      max: fc.integer({ min: 1, max: 4096 }),
      sizes: fc.array(fc.integer({ min: 1, max: 2048 }), { minLength: 1, maxLength: 40 }),
    }),
    ({ max, sizes }) => {
      const decoder = new LineDecoder({ maxLineBytes: max });
      let failedAt: number | null = null;
      let fed = 0;
      decoder.on('error', () => {
        failedAt ??= fed;
      });
      decoder.on('line', () => expect.fail('no newline was sent'));
      for (const size of sizes) {
        fed += size;
        decoder.push(new Uint8Array(size).fill(0x61));
        if (fed > max + 1) expect(failedAt).toBe(fed);
        else expect(failedAt).toBeNull();
        if (failedAt !== null) break;
      }
    },
  );
});
