import { describe, expect, it } from 'vitest';
import {
  buildConfigureResult,
  buildSubscribeResult,
  parseConfigureResult,
  parseSubscribeResult,
} from '../../src/stratum/index.js';

describe('parseSubscribeResult', () => {
  it('reads the usual [[pairs], extranonce1, size] and takes the notify id as session', () => {
    expect(
      parseSubscribeResult([
        [
          ['mining.set_difficulty', 'd1'],
          ['mining.notify', 'n1'],
        ],
        'F8002C90',
        4,
      ]),
    ).toEqual({
      ok: true,
      value: { sessionId: 'n1', extranonce1: 'f8002c90', extranonce2Size: 4 },
    });
  });

  it('reads a single flat pair and an empty subscription list', () => {
    expect(parseSubscribeResult([['mining.notify', 'ae6812eb'], '08000002', 4])).toMatchObject({
      value: { sessionId: 'ae6812eb' },
    });
    expect(parseSubscribeResult([[], '08000002', 8])).toMatchObject({
      value: { sessionId: null, extranonce2Size: 8 },
    });
  });

  it('refuses bad extranonces', () => {
    expect(parseSubscribeResult([[], 'xyz', 4])).toMatchObject({ ok: false });
    expect(parseSubscribeResult([[], 'abcd', 17])).toEqual({
      ok: false,
      error: 'mining.subscribe result: extranonce2 size: must be 0..16',
    });
    expect(parseSubscribeResult(true)).toMatchObject({ ok: false });
  });

  it('round-trips what buildSubscribeResult makes', () => {
    const value = { sessionId: 's', extranonce1: 'abcd', extranonce2Size: 4 };
    expect(parseSubscribeResult(buildSubscribeResult(value))).toEqual({ ok: true, value });
  });
});

describe('parseConfigureResult', () => {
  it('returns the granted mask', () => {
    expect(
      parseConfigureResult({ 'version-rolling': true, 'version-rolling.mask': '1fffe000' }),
    ).toEqual({ versionRollingMask: 0x1fffe000 });
  });

  it('means no rolling for refusals, errors as values and malformed masks', () => {
    for (const result of [
      { 'version-rolling': false },
      { 'version-rolling': 'unsupported' },
      { 'version-rolling': true, 'version-rolling.mask': 'zz' },
      null,
      [true],
    ]) {
      expect(parseConfigureResult(result)).toEqual({ versionRollingMask: null });
    }
  });

  it('round-trips what buildConfigureResult makes', () => {
    for (const value of [{ versionRollingMask: 0x00ffe000 }, { versionRollingMask: null }]) {
      expect(parseConfigureResult(buildConfigureResult(value))).toEqual(value);
    }
  });
});
