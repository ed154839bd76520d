import { describe, expect, it } from 'vitest';
import { type FramingError, LineDecoder } from '../../src/stratum/index.js';

function decode(chunks: (string | Uint8Array)[], maxLineBytes?: number) {
  const decoder = new LineDecoder(maxLineBytes === undefined ? {} : { maxLineBytes });
  const lines: string[] = [];
  const errors: FramingError[] = [];
  decoder.on('line', (line) => lines.push(line));
  decoder.on('error', (error) => errors.push(error));
  for (const chunk of chunks) {
    decoder.push(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk);
  }
  return { lines, errors };
}

describe('LineDecoder', () => {
  it('emits each complete line of one chunk, in order', () => {
    expect(decode(['{"a":1}\n{"b":2}\n']).lines).toEqual(['{"a":1}', '{"b":2}']);
  });

  it('buffers a line received across several chunks', () => {
    const { lines } = decode(['{"id":1,', '"result"', ':true}', '\n{"id"', ':2}\n']);
    expect(lines).toEqual(['{"id":1,"result":true}', '{"id":2}']);
  });

  it('keeps a partial last line until its newline arrives', () => {
    expect(decode(['{"a":1}\n{"b":']).lines).toEqual(['{"a":1}']);
  });

  it('decodes a multi-byte UTF-8 character split between chunks', () => {
    const bytes = Buffer.from('{"m":"€ ok"}\n', 'utf8');
    const euro = bytes.indexOf(0xe2);
    const chunks = [
      bytes.subarray(0, euro + 1),
      bytes.subarray(euro + 1, euro + 2),
      bytes.subarray(euro + 2),
    ];
    expect(decode(chunks).lines).toEqual(['{"m":"€ ok"}']);
  });

  it('strips \\r\\n line endings, also when \\r and \\n arrive apart', () => {
    expect(decode(['{"a":1}\r\n{"b":2}\r', '\n']).lines).toEqual(['{"a":1}', '{"b":2}']);
  });

  it('ignores empty and whitespace-only lines', () => {
    expect(decode(['\n\r\n  \n{"a":1}\n\n']).lines).toEqual(['{"a":1}']);
  });

  it('accepts a line of exactly the cap (with \\r\\n) and rejects one byte more', () => {
    expect(decode([`${'x'.repeat(16)}\r\n`], 16)).toEqual({ lines: ['x'.repeat(16)], errors: [] });
    const over = decode([`${'x'.repeat(17)}\n`], 16);
    expect(over.lines).toEqual([]);
    expect(over.errors.map((e) => e.message)).toEqual(['line longer than 16 bytes']);
  });

  it('fails as soon as an unterminated line passes the default 32 KiB cap', () => {
    const { lines, errors } = decode(['{"a":1}\n', 'x'.repeat(20_000), 'x'.repeat(20_000)]);
    expect(lines).toEqual(['{"a":1}']);
    expect(errors).toHaveLength(1);
    expect(errors[0]?.message).toBe('line longer than 32768 bytes');
  });

  it('ignores all input after an error (the caller drops the connection)', () => {
    const { lines, errors } = decode([`${'x'.repeat(20)}`, '\n{"a":1}\n'], 8);
    expect(errors).toHaveLength(1);
    expect(lines).toEqual([]);
  });

  it('treats invalid UTF-8 as an error', () => {
    const { lines, errors } = decode([Uint8Array.from([0x7b, 0xff, 0xfe, 0x7d, 0x0a])]);
    expect(lines).toEqual([]);
    expect(errors[0]?.message).toBe('line is not valid UTF-8');
  });
});
