/**
 * Tor control protocol replies (control-spec §2.3, §2.4): turns the bytes Tor sends into
 * whole replies, and checks them on the way. A reply is one or more lines "NNN-text" (more
 * follows), "NNN+text" (a data block follows, ended by a line "."), ending with "NNN text".
 * Replies with a 6xx status are asynchronous events; every other reply answers the oldest
 * command still waiting.
 *
 * Anything that does not fit the grammar is a protocol error: the connection can no longer
 * tell which reply answers which command, so the caller must drop it.
 */

export class TorProtocolError extends Error {
  override name = 'TorProtocolError';
}

export interface ReplyLine {
  status: number;
  /** The text after "NNN-", "NNN+" or "NNN ". */
  text: string;
  /** The data block after a "NNN+" line, dot-unescaped, one entry per line. */
  data?: string[];
}

export interface ControlReply {
  /** The status of the final line (all lines of a reply carry the same one). */
  status: number;
  lines: ReplyLine[];
  /** True for 6xx replies: events Tor sends on its own, not answers to a command. */
  async: boolean;
}

/** Bounds on what one reply may hold; Tor's replies to our commands are far smaller. */
const MAX_LINE_BYTES = 64 * 1024;
const MAX_REPLY_LINES = 10_000;
const MAX_REPLY_BYTES = 4 * 1024 * 1024;

const LINE = /^([1-6]\d\d)([ +-])(.*)$/s;

export class ControlReplyParser {
  private pending: Buffer = Buffer.alloc(0);
  private lines: ReplyLine[] = [];
  private replyBytes = 0;
  private replyLines = 0;
  /** Set while reading the data block of `dataLine`. */
  private dataLine: ReplyLine | null = null;

  /** Feed bytes; returns the replies they complete (possibly none). */
  push(chunk: Buffer): ControlReply[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const replies: ControlReply[] = [];
    for (;;) {
      const end = this.pending.indexOf(0x0a);
      if (end < 0) break;
      const raw = this.pending.subarray(0, end);
      this.pending = this.pending.subarray(end + 1);
      // Tor ends lines with CRLF; a bare LF is tolerated, a CR anywhere else is not.
      const body = raw.length > 0 && raw[raw.length - 1] === 0x0d ? raw.subarray(0, -1) : raw;
      const reply = this.line(body);
      if (reply) replies.push(reply);
    }
    if (this.pending.length > MAX_LINE_BYTES) {
      throw new TorProtocolError(`reply line longer than ${MAX_LINE_BYTES} bytes`);
    }
    return replies;
  }

  /** True when no reply is half-read (a connection closing now lost nothing). */
  get idle(): boolean {
    return this.lines.length === 0 && this.dataLine === null && this.pending.length === 0;
  }

  private line(body: Buffer): ControlReply | null {
    if (body.length > MAX_LINE_BYTES) {
      throw new TorProtocolError(`reply line longer than ${MAX_LINE_BYTES} bytes`);
    }
    this.replyBytes += body.length + 2;
    if (this.replyBytes > MAX_REPLY_BYTES) {
      throw new TorProtocolError(`reply larger than ${MAX_REPLY_BYTES} bytes`);
    }
    const text = body.toString('utf8');
    if (/[\0\r]/.test(text)) throw new TorProtocolError('reply line contains NUL or CR');

    if (this.dataLine) {
      if (text === '.') {
        this.dataLine = null;
        return null;
      }
      // Dot-stuffing: a data line that starts with "." was sent with one more.
      (this.dataLine.data as string[]).push(text.startsWith('.') ? text.slice(1) : text);
      this.count();
      return null;
    }

    const match = LINE.exec(text);
    if (!match) throw new TorProtocolError(`malformed reply line: ${JSON.stringify(clip(text))}`);
    const status = Number(match[1]);
    const kind = match[2] as ' ' | '+' | '-';
    const first = this.lines[0];
    if (first && first.status !== status) {
      throw new TorProtocolError(`reply mixes status ${first.status} and ${status}`);
    }
    const line: ReplyLine = { status, text: match[3] as string };
    this.lines.push(line);
    this.count();
    if (kind === '+') {
      line.data = [];
      this.dataLine = line;
    }
    if (kind !== ' ') return null;
    const reply: ControlReply = { status, lines: this.lines, async: status >= 600 };
    this.lines = [];
    this.replyBytes = 0;
    this.replyLines = 0;
    return reply;
  }

  private count(): void {
    if (++this.replyLines > MAX_REPLY_LINES) {
      throw new TorProtocolError(`reply with more than ${MAX_REPLY_LINES} lines`);
    }
  }
}

function clip(text: string): string {
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

/**
 * Split reply text into positional words and KEY=VALUE arguments (control-spec §2.3: values
 * are bare words or QuotedStrings). Keys keep their case; a repeated key keeps its first
 * value. Throws on an unterminated or badly escaped quoted string.
 */
export function parseArguments(text: string): {
  words: string[];
  keywords: Map<string, string>;
} {
  const words: string[] = [];
  const keywords = new Map<string, string>();
  let i = 0;
  while (i < text.length) {
    if (text[i] === ' ') {
      i++;
      continue;
    }
    const eq = /^([A-Za-z0-9_/.-]+)=/.exec(text.slice(i));
    if (eq) {
      const key = eq[1] as string;
      i += eq[0].length;
      let value: string;
      if (text[i] === '"') {
        const quoted = readQuoted(text, i);
        value = quoted.value;
        i = quoted.end;
      } else {
        const end = text.indexOf(' ', i);
        value = text.slice(i, end < 0 ? text.length : end);
        i = end < 0 ? text.length : end;
      }
      if (!keywords.has(key)) keywords.set(key, value);
      continue;
    }
    const end = text.indexOf(' ', i);
    words.push(text.slice(i, end < 0 ? text.length : end));
    i = end < 0 ? text.length : end;
  }
  return { words, keywords };
}

const ESCAPES: Record<string, string> = {
  n: '\n',
  r: '\r',
  t: '\t',
  '\\': '\\',
  '"': '"',
  "'": "'",
};

/**
 * A QuotedString starting at text[start] === '"': C-style escapes (\\ \" \n \r \t, octal
 * \ooo). Octal escapes are bytes; the result decodes those bytes as UTF-8 (a file path).
 */
export function readQuoted(text: string, start: number): { value: string; end: number } {
  const bytes: number[] = [];
  let i = start + 1;
  while (i < text.length) {
    const c = text[i] as string;
    if (c === '"') {
      return { value: Buffer.from(bytes).toString('utf8'), end: i + 1 };
    }
    if (c !== '\\') {
      const char = String.fromCodePoint(text.codePointAt(i) as number);
      bytes.push(...Buffer.from(char, 'utf8'));
      i += char.length;
      continue;
    }
    const next = text[i + 1];
    const octal = /^[0-7]{1,3}/.exec(text.slice(i + 1, i + 4));
    if (octal) {
      const byte = parseInt(octal[0], 8);
      if (byte > 0xff) throw new TorProtocolError('bad octal escape in quoted string');
      bytes.push(byte);
      i += 1 + octal[0].length;
    } else if (next !== undefined && next in ESCAPES) {
      bytes.push(...Buffer.from(ESCAPES[next] as string, 'utf8'));
      i += 2;
    } else {
      throw new TorProtocolError('bad escape in quoted string');
    }
  }
  throw new TorProtocolError('unterminated quoted string');
}
