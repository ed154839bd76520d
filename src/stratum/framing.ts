import { EventEmitter } from 'node:events';

/**
 * Newline framing for Stratum V1. TCP delivers arbitrary chunks: a line may arrive in many
 * pieces, and a multi-byte UTF-8 character may be split between two of them, so bytes are
 * buffered and only complete lines are decoded. A peer that never sends a newline would grow
 * the buffer without bound, hence the cap: an over-long line is an error and the caller drops
 * the connection (nothing after it can be framed reliably).
 */

export const DEFAULT_MAX_LINE_BYTES = 32 * 1024;

export class FramingError extends Error {
  override name = 'FramingError';
}

export interface LineDecoderEvents {
  line: [string];
  /** Emitted once; the decoder ignores all input afterwards. */
  error: [FramingError];
}

const LF = 0x0a;
const CR = 0x0d;

/** Attach an `error` listener: like any EventEmitter, an unheard 'error' event throws. */
export class LineDecoder extends EventEmitter<LineDecoderEvents> {
  readonly maxLineBytes: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private failed = false;
  // fatal: invalid UTF-8 is garbage, not something to paper over with U+FFFD.
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true });

  constructor(options: { maxLineBytes?: number } = {}) {
    super();
    this.maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  }

  /** Feed one chunk as received from the socket. */
  push(chunk: Uint8Array): void {
    let start = 0;
    while (!this.failed && start < chunk.length) {
      const newline = chunk.indexOf(LF, start);
      if (newline === -1) {
        this.buffer(chunk.subarray(start));
        return;
      }
      this.buffer(chunk.subarray(start, newline));
      if (this.failed) return;
      start = newline + 1;
      this.completeLine();
    }
  }

  private buffer(piece: Uint8Array): void {
    if (piece.length === 0) return;
    this.pendingBytes += piece.length;
    // A trailing \r is allowed one byte of slack: it is not part of the line.
    if (this.pendingBytes > this.maxLineBytes + 1) {
      this.fail(new FramingError(`line longer than ${this.maxLineBytes} bytes`));
      return;
    }
    // Copy: the socket may reuse the chunk's memory.
    this.pending.push(Buffer.from(piece));
  }

  private completeLine(): void {
    let bytes = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    if (bytes.length > 0 && bytes[bytes.length - 1] === CR) bytes = bytes.subarray(0, -1);
    if (bytes.length > this.maxLineBytes) {
      this.fail(new FramingError(`line longer than ${this.maxLineBytes} bytes`));
      return;
    }
    let line: string;
    try {
      line = this.utf8.decode(bytes);
    } catch {
      this.fail(new FramingError('line is not valid UTF-8'));
      return;
    }
    // Keep-alive newlines and stray whitespace carry nothing.
    if (line.trim() === '') return;
    this.emit('line', line);
  }

  private fail(error: FramingError): void {
    this.failed = true;
    this.pending = [];
    this.pendingBytes = 0;
    this.emit('error', error);
  }
}
