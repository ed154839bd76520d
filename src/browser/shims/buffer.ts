// Injected into the browser bundles (scripts/build-browser.mjs): the shared block math
// (src/work/hex.ts, header.ts, target.ts), the JSON-RPC framing and the ticket codecs use
// Node's Buffer. The `buffer` package has no 'base64url', which the ticket codecs
// (src/tickets/ticket.ts, ticket-v2.ts, any-ticket.ts) use: it is added here as Node has it
// (either alphabet read, no padding written); the codecs' own round-trip check stays strict.
import { Buffer } from 'buffer';

interface WithToString {
  toString: (this: Buffer, encoding?: string, start?: number, end?: number) => string;
}

const baseFrom = Buffer.from.bind(Buffer) as (
  value: unknown,
  encoding?: unknown,
  length?: unknown,
) => Buffer;
const prototype = Buffer.prototype as WithToString;
const baseToString = prototype.toString;

function from(value: unknown, encoding?: unknown, length?: unknown): Buffer {
  if (encoding === 'base64url' && typeof value === 'string') {
    return baseFrom(value.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  }
  return baseFrom(value, encoding, length);
}

Object.defineProperty(Buffer, 'from', { value: from, writable: true, configurable: true });
Object.defineProperty(Buffer.prototype, 'toString', {
  value: function toString(this: Buffer, encoding?: string, start?: number, end?: number): string {
    if (encoding !== 'base64url') return baseToString.call(this, encoding, start, end);
    return baseToString
      .call(this, 'base64', start, end)
      .replace(/\+/g, '-')
      .replace(/\//g, '_')
      .replace(/=+$/, '');
  },
  writable: true,
  configurable: true,
});

export { Buffer };
