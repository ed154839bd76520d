import { describe, expect, it } from 'vitest';
import {
  ControlReplyParser,
  parseArguments,
  readQuoted,
  TorProtocolError,
} from '../../src/tor/control-reply.js';

const feed = (text: string) => new ControlReplyParser().push(Buffer.from(text));

describe('control reply parser', () => {
  it('reads one-line, multi-line and data replies as Tor sends them', () => {
    const replies = feed(
      '250 OK\r\n' +
        '250-ServiceID=abc\r\n250-PrivateKey=ED25519-V3:xyz\r\n250 OK\r\n' +
        '250+onions/current=\r\none\r\n..dotted\r\n.\r\n250 OK\r\n',
    );
    expect(replies).toEqual([
      { status: 250, async: false, lines: [{ status: 250, text: 'OK' }] },
      {
        status: 250,
        async: false,
        lines: [
          { status: 250, text: 'ServiceID=abc' },
          { status: 250, text: 'PrivateKey=ED25519-V3:xyz' },
          { status: 250, text: 'OK' },
        ],
      },
      {
        status: 250,
        async: false,
        lines: [
          // Dot-stuffed data lines lose one dot.
          { status: 250, text: 'onions/current=', data: ['one', '.dotted'] },
          { status: 250, text: 'OK' },
        ],
      },
    ]);
  });

  it('assembles replies split anywhere, even byte by byte', () => {
    const text = '250-PROTOCOLINFO 1\r\n250-AUTH METHODS=NULL\r\n250 OK\r\n515 Bad\r\n';
    const parser = new ControlReplyParser();
    const replies = [...Buffer.from(text)].flatMap((byte) => parser.push(Buffer.from([byte])));
    expect(replies.map((r) => [r.status, r.lines.length])).toEqual([
      [250, 3],
      [515, 1],
    ]);
    expect(parser.idle).toBe(true);
  });

  it('marks 6xx replies asynchronous', () => {
    const [event, answer] = feed('650 CIRC 1 BUILT\r\n250 OK\r\n');
    expect(event?.async).toBe(true);
    expect(answer?.async).toBe(false);
  });

  it('is not idle in the middle of a reply', () => {
    const parser = new ControlReplyParser();
    expect(parser.push(Buffer.from('250-ServiceID=abc\r\n250 O'))).toEqual([]);
    expect(parser.idle).toBe(false);
  });

  it.each([
    ['no status code', 'OK\r\n', /malformed reply line/],
    ['bad separator', '250*OK\r\n', /malformed reply line/],
    ['status out of range', '750 OK\r\n', /malformed reply line/],
    ['mixed status codes', '250-a\r\n251 b\r\n', /mixes status 250 and 251/],
    ['a stray CR', '250 O\rK\r\n', /NUL or CR/],
    ['a NUL byte', '250 O\0K\r\n', /NUL or CR/],
    ['an endless line', `250 ${'x'.repeat(70_000)}`, /longer than/],
  ])('refuses %s', (_name, text, message) => {
    expect(() => feed(text)).toThrow(TorProtocolError);
    expect(() => feed(text)).toThrow(message);
  });

  it('refuses a reply with too many lines', () => {
    expect(() => feed(`250+x=\r\n${'d\r\n'.repeat(10_001)}.\r\n250 OK\r\n`)).toThrow(
      /more than 10000 lines/,
    );
  });
});

describe('reply arguments', () => {
  it('splits words and KEY=VALUE pairs, quoted or not', () => {
    const { words, keywords } = parseArguments(
      'AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE="/var/run/tor/control.authcookie"',
    );
    expect(words).toEqual(['AUTH']);
    expect(Object.fromEntries(keywords)).toEqual({
      METHODS: 'COOKIE,SAFECOOKIE',
      COOKIEFILE: '/var/run/tor/control.authcookie',
    });
  });

  it('keeps the first of a repeated key', () => {
    expect(parseArguments('A=1 A=2').keywords.get('A')).toBe('1');
  });

  it('decodes escapes in quoted strings, octal as UTF-8 bytes', () => {
    expect(readQuoted(String.raw`"a \"b\" c\\d\n"`, 0).value).toBe('a "b" c\\d\n');
    expect(readQuoted(String.raw`"caf\303\251 dir"`, 0).value).toBe('café dir');
    expect(readQuoted('"ünï" rest', 0)).toEqual({ value: 'ünï', end: 5 });
  });

  it('refuses unterminated or badly escaped quoted strings', () => {
    expect(() => readQuoted('"open', 0)).toThrow(/unterminated/);
    expect(() => readQuoted(String.raw`"bad \q"`, 0)).toThrow(/bad escape/);
    expect(() => parseArguments('COOKIEFILE="/tmp/x')).toThrow(TorProtocolError);
  });
});
