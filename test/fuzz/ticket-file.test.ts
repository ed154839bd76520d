import fc from 'fast-check';
import { describe, expect } from 'vitest';
import {
  formatTicketFile,
  parseTicketFile,
  TicketFileError,
} from '../../src/client/ticket-file.js';
import { TICKET_SCHEMES } from '../../src/protocol/messages.js';
import { anyCodePoint, anyJson, fuzz, hexOf, mutatedRecord } from '../helpers/fuzz.js';

/**
 * The ticket file the miner page exports and `powbridge tickets import` reads
 * (src/client/ticket-file.ts): whatever a file holds, the parser returns a file or throws a
 * TicketFileError naming what is wrong; nothing else escapes. A file it accepts formats back to
 * what it parses to.
 */

const day = fc.integer({ min: 0, max: 0xffffffff });
const validFile = fc.record({
  format: fc.constant('powbridge-tickets'),
  version: fc.constant(1),
  relay: fc.webUrl(),
  identity: hexOf(32),
  keys: fc.array(
    fc.record({
      keyId: hexOf(8),
      scheme: fc.constantFrom(...TICKET_SCHEMES),
      publicKey: hexOf(32),
      notBeforeDay: day,
      notAfterDay: day,
    }),
    { maxLength: 3 },
  ),
  tickets: fc.array(
    fc.record({
      ticket: fc.string({ minLength: 1, maxLength: 40 }),
      keyId: hexOf(8),
      day,
    }),
    { maxLength: 4 },
  ),
});

/** Parses `text`; a refusal must be a TicketFileError that says what is wrong. */
function parseOrRefuse(text: string): void {
  try {
    parseTicketFile(text);
  } catch (err) {
    expect(err).toBeInstanceOf(TicketFileError);
    expect((err as Error).message).toMatch(/^ticket file: \S/);
  }
}

describe('ticket files (fuzz)', () => {
  fuzz('any text is a file or a TicketFileError', fc.string({ unit: anyCodePoint }), parseOrRefuse);

  fuzz('any JSON is a file or a TicketFileError', anyJson, (value) =>
    parseOrRefuse(JSON.stringify(value) ?? 'undefined'),
  );

  fuzz(
    'a valid file one field away from valid is a file or a TicketFileError',
    mutatedRecord(validFile),
    ({ value }) => parseOrRefuse(JSON.stringify(value)),
  );

  fuzz('a file it accepts formats back to the same file', validFile, (file) => {
    const parsed = parseTicketFile(JSON.stringify(file));
    expect(parseTicketFile(formatTicketFile(parsed))).toEqual(parsed);
  });
});
