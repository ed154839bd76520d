import { describe, expect, it } from 'vitest';
import {
  type Call,
  encodeError,
  encodeNotification,
  encodeRequest,
  encodeResult,
  parseMessage,
  type StratumMessage,
} from '../../src/stratum/index.js';

const PREVHASH = `${'00'.repeat(31)}01`;
const BRANCH = ['aa'.repeat(32), 'bb'.repeat(32)];
const NOTIFY = ['job1', PREVHASH, '0100', '00ff', BRANCH, '20000000', '1d00ffff', '5f5e1000', true];

function parsed(line: string): StratumMessage {
  const result = parseMessage(line);
  if (!result.ok) throw new Error(`expected a message, got: ${result.error}`);
  return result.value;
}

function call(method: string, params: unknown, id: unknown = 1): StratumMessage {
  return parsed(JSON.stringify({ id, method, params }));
}

function failure(method: string, params: unknown, id: unknown = 1): string {
  const result = parseMessage(JSON.stringify({ id, method, params }));
  if (result.ok) throw new Error(`expected ${method} ${JSON.stringify(params)} to be refused`);
  return result.error;
}

describe('parseMessage: envelope', () => {
  it('accepts integer, string and null ids', () => {
    expect(call('mining.ping', [], 7)).toMatchObject({ kind: 'request', id: 7 });
    expect(call('mining.ping', [], 'abc')).toMatchObject({ kind: 'request', id: 'abc' });
    expect(call('mining.ping', [], null)).toMatchObject({ kind: 'notification' });
    expect(parsed('{"method":"mining.ping"}')).toMatchObject({ kind: 'notification' });
  });

  it('refuses ids of other types', () => {
    for (const id of [true, [1], { a: 1 }]) {
      const result = parseMessage(JSON.stringify({ id, method: 'mining.ping', params: [] }));
      expect(result).toEqual({ ok: false, error: 'id must be a number, a string or null' });
    }
  });

  it('returns a typed failure for garbage instead of throwing', () => {
    for (const line of ['not json', '{"id":1', '[1,2]', '42', '"x"', 'null', '{}']) {
      const result = parseMessage(line);
      expect(result.ok, line).toBe(false);
    }
    expect(parseMessage('{"id":1,"method":5}')).toMatchObject({ ok: false, id: 1 });
  });

  it('treats absent or null params as no params, and refuses object params', () => {
    expect(parsed('{"id":1,"method":"mining.ping","params":null}')).toMatchObject({
      method: 'mining.ping',
    });
    expect(parseMessage('{"id":3,"method":"mining.subscribe","params":{"a":1}}')).toEqual({
      ok: false,
      error: 'mining.subscribe: params must be an array',
      id: 3,
      method: 'mining.subscribe',
    });
  });

  it('reports the id and method of a known call with bad params, so a server can answer', () => {
    expect(
      parseMessage(JSON.stringify({ id: 9, method: 'mining.set_difficulty', params: [0] })),
    ).toEqual({
      ok: false,
      error: 'mining.set_difficulty: difficulty: must be finite and > 0',
      id: 9,
      method: 'mining.set_difficulty',
    });
  });

  it('passes unknown methods through as "unknown" with their id', () => {
    expect(call('mining.suggest_target', ['00000000ffff'], 4)).toEqual({
      kind: 'unknown',
      id: 4,
      method: 'mining.suggest_target',
      params: ['00000000ffff'],
    });
    expect(call('x.y', [], null)).toMatchObject({ kind: 'unknown', id: null });
  });
});

describe('parseMessage: responses', () => {
  it('reads results and every error format', () => {
    expect(parsed('{"id":1,"result":true,"error":null}')).toEqual({
      kind: 'response',
      id: 1,
      outcome: { ok: true, result: true },
    });
    expect(parsed('{"id":"7","result":true}')).toMatchObject({ id: '7', outcome: { ok: true } });
    expect(parsed('{"id":2,"result":null,"error":[21,"Job not found",null]}')).toMatchObject({
      outcome: { ok: false, error: { code: 21, message: 'Job not found' } },
    });
    expect(parsed('{"id":3,"error":{"code":-1,"message":"nope"}}')).toMatchObject({
      outcome: { ok: false, error: { code: -1, message: 'nope' } },
    });
    expect(parsed('{"id":4,"result":false,"error":null,"reject-reason":"Stale"}')).toMatchObject({
      outcome: { ok: false, error: { code: null, message: 'Stale' } },
    });
    expect(parsed('{"id":null,"result":null,"error":[20,"bad id",null]}')).toMatchObject({
      id: null,
      outcome: { ok: false },
    });
  });
});

describe('parseMessage: params of every method', () => {
  it('mining.configure, with and without version-rolling', () => {
    expect(
      call('mining.configure', [
        ['version-rolling', 'minimum-difficulty'],
        {
          'version-rolling.mask': '1FFFE000',
          'version-rolling.min-bit-count': 2,
          'minimum-difficulty.value': 2048,
        },
      ]),
    ).toMatchObject({
      params: {
        extensions: ['version-rolling', 'minimum-difficulty'],
        versionRolling: { mask: 0x1fffe000, minBitCount: 2 },
        other: { 'minimum-difficulty.value': 2048 },
      },
    });
    expect(call('mining.configure', [['subscribe-extranonce'], {}])).toMatchObject({
      params: { extensions: ['subscribe-extranonce'], versionRolling: null, other: {} },
    });
    expect(
      failure('mining.configure', [['version-rolling'], { 'version-rolling.mask': 'xyz' }]),
    ).toBe('mining.configure: version-rolling.mask: not an even-length hex string');
    expect(failure('mining.configure', ['version-rolling'])).toContain('extensions');
  });

  it('mining.subscribe in all its lengths', () => {
    expect(call('mining.subscribe', [])).toMatchObject({
      params: { agent: null, sessionId: null },
    });
    expect(call('mining.subscribe', ['cgminer/4.11'])).toMatchObject({
      params: { agent: 'cgminer/4.11', sessionId: null },
    });
    expect(call('mining.subscribe', ['bmminer', 'deadbeef', 'pool.example', 3333])).toMatchObject({
      params: { agent: 'bmminer', sessionId: 'deadbeef' },
    });
    expect(failure('mining.subscribe', [42])).toBe('mining.subscribe: agent: expected a string');
  });

  it('mining.authorize', () => {
    expect(call('mining.authorize', ['alice.1', 'x'])).toMatchObject({
      params: { user: 'alice.1', password: 'x' },
    });
    expect(call('mining.authorize', ['alice.1'])).toMatchObject({ params: { password: '' } });
    expect(failure('mining.authorize', [''])).toBe('mining.authorize: user: must not be empty');
  });

  it('mining.extranonce.subscribe, client.get_version, mining.ping take no params', () => {
    for (const method of ['mining.extranonce.subscribe', 'client.get_version', 'mining.ping']) {
      expect(call(method, [])).toMatchObject({ method, params: {} });
      expect(failure(method, ['extra'])).toContain(method);
    }
  });

  it('mining.notify, lowercasing hex', () => {
    const upper = [...NOTIFY];
    upper[6] = '1D00FFFF';
    expect(call('mining.notify', upper, null)).toEqual({
      kind: 'notification',
      method: 'mining.notify',
      params: {
        jobId: 'job1',
        prevhash: PREVHASH,
        coinb1: '0100',
        coinb2: '00ff',
        merkleBranch: BRANCH,
        version: '20000000',
        nbits: '1d00ffff',
        ntime: '5f5e1000',
        clean: true,
      },
    });
  });

  it('mining.notify: every field validated', () => {
    const bad = (index: number, value: unknown) => {
      const params: unknown[] = [...NOTIFY];
      params[index] = value;
      return failure('mining.notify', params, null);
    };
    expect(bad(0, '')).toBe('mining.notify: job id: must not be empty');
    expect(bad(1, 'ab')).toBe('mining.notify: prevhash: expected 32 bytes of hex');
    expect(bad(2, '0g')).toBe('mining.notify: coinb1: not an even-length hex string');
    expect(bad(3, 'abc')).toBe('mining.notify: coinb2: not an even-length hex string');
    expect(bad(4, ['aa'])).toBe('mining.notify: merkle branch: expected 32 bytes of hex');
    expect(bad(4, Array(33).fill('aa'.repeat(32)))).toContain('more than 32');
    expect(bad(5, '2000000')).toBe('mining.notify: version: not an even-length hex string');
    expect(bad(6, '1d00ff')).toBe('mining.notify: nbits: expected 4 bytes of hex');
    expect(bad(7, 1600000000)).toBe('mining.notify: ntime: expected a hex string');
    expect(bad(8, 'true')).toBe('mining.notify: clean: expected a boolean');
    expect(failure('mining.notify', NOTIFY.slice(0, 8), null)).toContain('mining.notify');
  });

  it('mining.set_difficulty: finite and positive', () => {
    expect(call('mining.set_difficulty', [0.001], null)).toMatchObject({
      params: { difficulty: 0.001 },
    });
    for (const value of [0, -1, '8', null]) {
      expect(failure('mining.set_difficulty', [value], null)).toContain('difficulty');
    }
    // JSON cannot carry Infinity; a huge exponent parses to it.
    expect(parseMessage('{"id":null,"method":"mining.set_difficulty","params":[1e999]}').ok).toBe(
      false,
    );
  });

  it('mining.set_extranonce: hex extranonce1, size 0..16', () => {
    expect(call('mining.set_extranonce', ['ABCD0001', 8], null)).toMatchObject({
      params: { extranonce1: 'abcd0001', extranonce2Size: 8 },
    });
    expect(call('mining.set_extranonce', ['', 0], null)).toMatchObject({
      params: { extranonce2Size: 0 },
    });
    expect(failure('mining.set_extranonce', ['abcd', 17], null)).toBe(
      'mining.set_extranonce: extranonce2 size: must be 0..16',
    );
    expect(failure('mining.set_extranonce', ['abcd', 2.5], null)).toBe(
      'mining.set_extranonce: extranonce2 size: expected an integer',
    );
    expect(failure('mining.set_extranonce', ['abc', 4], null)).toContain('extranonce1');
  });

  it('mining.set_version_mask', () => {
    expect(call('mining.set_version_mask', ['1fffe000'], null)).toMatchObject({
      params: { mask: 0x1fffe000 },
    });
    expect(call('mining.set_version_mask', ['ffffffff'], null)).toMatchObject({
      params: { mask: 0xffffffff },
    });
    expect(failure('mining.set_version_mask', ['1fffe'], null)).toContain('mask');
  });

  it('client.reconnect: optional host, port and wait (numbers or digit strings)', () => {
    expect(call('client.reconnect', [], null)).toMatchObject({
      params: { host: null, port: null, waitSeconds: null },
    });
    expect(call('client.reconnect', ['pool.example', '3334', 5], null)).toMatchObject({
      params: { host: 'pool.example', port: 3334, waitSeconds: 5 },
    });
    expect(call('client.reconnect', ['', 3333], null)).toMatchObject({
      params: { host: null, port: 3333 },
    });
    expect(failure('client.reconnect', ['h', 70000], null)).toContain('port');
    expect(failure('client.reconnect', ['h', 3333, -1], null)).toContain('wait');
  });

  it('client.show_message', () => {
    expect(call('client.show_message', ['maintenance at 12:00'], null)).toMatchObject({
      params: { message: 'maintenance at 12:00' },
    });
    expect(failure('client.show_message', [1], null)).toContain('message');
  });

  it('mining.submit with and without version bits', () => {
    expect(call('mining.submit', ['alice', 'job1', '00000001', '5f5e1000', 'DEADBEEF'])).toEqual({
      kind: 'request',
      id: 1,
      method: 'mining.submit',
      params: {
        user: 'alice',
        jobId: 'job1',
        extranonce2: '00000001',
        ntime: '5f5e1000',
        nonce: 'deadbeef',
      },
    });
    expect(
      call('mining.submit', ['alice', 'job1', '00000001', '5f5e1000', 'deadbeef', '00002000']),
    ).toMatchObject({ params: { versionBits: '00002000' } });
    expect(failure('mining.submit', ['alice', 'job1', '00000001', '5f5e10', 'deadbeef'])).toBe(
      'mining.submit: ntime: expected 4 bytes of hex',
    );
    expect(
      failure('mining.submit', ['alice', 'job1', '00'.repeat(17), '5f5e1000', 'deadbeef']),
    ).toBe('mining.submit: extranonce2: expected 0..16 bytes of hex');
    expect(
      failure('mining.submit', ['alice', 'j', '00', '5f5e1000', 'deadbeef', '2000', 'extra']),
    ).toContain('mining.submit');
  });
});

describe('encoders', () => {
  const calls: Call[] = [
    {
      method: 'mining.configure',
      params: {
        extensions: ['version-rolling'],
        versionRolling: { mask: 0x1fffe000, minBitCount: 2 },
        other: {},
      },
    },
    { method: 'mining.subscribe', params: { agent: 'powbridge/0.1.0', sessionId: null } },
    { method: 'mining.subscribe', params: { agent: 'powbridge/0.1.0', sessionId: 'abcd' } },
    { method: 'mining.authorize', params: { user: 'alice', password: 'secret' } },
    { method: 'mining.extranonce.subscribe', params: {} },
    {
      method: 'mining.notify',
      params: {
        jobId: 'j',
        prevhash: PREVHASH,
        coinb1: '01',
        coinb2: '02',
        merkleBranch: BRANCH,
        version: '20000000',
        nbits: '1d00ffff',
        ntime: '5f5e1000',
        clean: false,
      },
    },
    { method: 'mining.set_difficulty', params: { difficulty: 1024.5 } },
    { method: 'mining.suggest_difficulty', params: { difficulty: 512 } },
    { method: 'mining.set_extranonce', params: { extranonce1: 'abcd', extranonce2Size: 6 } },
    { method: 'mining.set_version_mask', params: { mask: 0x00ffe000 } },
    { method: 'client.reconnect', params: { host: 'h.example', port: 3334, waitSeconds: 2 } },
    { method: 'client.show_message', params: { message: 'hello' } },
    { method: 'client.get_version', params: {} },
    { method: 'mining.ping', params: {} },
    {
      method: 'mining.submit',
      params: {
        user: 'alice',
        jobId: 'j',
        extranonce2: '0001',
        ntime: '5f5e1000',
        nonce: '00000001',
        versionBits: '00002000',
      },
    },
  ];

  it('round-trips every method through request and notification lines', () => {
    for (const c of calls) {
      expect(parsed(encodeRequest(5, c))).toEqual({ kind: 'request', id: 5, ...c });
      expect(parsed(encodeNotification(c))).toEqual({ kind: 'notification', ...c });
    }
  });

  it('writes Stratum positional params and one line per message', () => {
    const line = encodeRequest(1, {
      method: 'mining.configure',
      params: {
        extensions: ['version-rolling'],
        versionRolling: { mask: 0x1fffe000, minBitCount: 2 },
        other: {},
      },
    });
    expect(line).toBe(
      '{"id":1,"method":"mining.configure","params":[["version-rolling"],' +
        '{"version-rolling.mask":"1fffe000","version-rolling.min-bit-count":2}]}\n',
    );
    expect(encodeNotification({ method: 'mining.set_difficulty', params: { difficulty: 2 } })).toBe(
      '{"id":null,"method":"mining.set_difficulty","params":[2]}\n',
    );
  });

  it('encodes results and array-form errors', () => {
    expect(encodeResult('a', true)).toBe('{"id":"a","result":true,"error":null}\n');
    expect(encodeError(3, { code: 21, message: 'Job not found' })).toBe(
      '{"id":3,"result":null,"error":[21,"Job not found",null]}\n',
    );
    expect(parsed(encodeError(null, { code: 23, message: 'low', data: { d: 1 } }))).toEqual({
      kind: 'response',
      id: null,
      outcome: { ok: false, error: { code: 23, message: 'low', data: { d: 1 } } },
    });
  });

  it('escapes strings through JSON.stringify (no line injection)', () => {
    const line = encodeNotification({
      method: 'client.show_message',
      params: { message: 'a\n{"id":1}' },
    });
    expect(line.indexOf('\n')).toBe(line.length - 1);
  });
});
