import { describe, expect, it } from 'vitest';
import {
  describeError,
  normaliseError,
  responseOutcome,
  StratumErrorCode,
} from '../../src/stratum/index.js';

describe('normaliseError', () => {
  it('reads null, absent and false as "no error"', () => {
    expect(normaliseError(null)).toBeNull();
    expect(normaliseError(undefined)).toBeNull();
    expect(normaliseError(false)).toBeNull();
  });

  it('reads the Stratum array form [code, message, data]', () => {
    expect(normaliseError([23, 'Low difficulty share', null])).toEqual({
      code: 23,
      message: 'Low difficulty share',
    });
    expect(normaliseError([21, 'Job not found', { job: 'a1' }])).toEqual({
      code: 21,
      message: 'Job not found',
      data: { job: 'a1' },
    });
  });

  it('reads the JSON-RPC object form {code, message, data}', () => {
    expect(normaliseError({ code: -32601, message: 'Method not found' })).toEqual({
      code: -32601,
      message: 'Method not found',
    });
    expect(normaliseError({ code: '24', message: 'Unauthorized', data: 'x' })).toEqual({
      code: 24,
      message: 'Unauthorized',
      data: 'x',
    });
  });

  it('keeps going on odd shapes: bare strings, numbers, missing parts', () => {
    expect(normaliseError('stale')).toEqual({ code: null, message: 'stale' });
    expect(normaliseError(22)).toEqual({ code: 22, message: 'error 22' });
    expect(normaliseError([])).toEqual({ code: null, message: 'unknown error' });
    expect(normaliseError(['x', 'bad code'])).toEqual({ code: null, message: 'bad code' });
    expect(normaliseError({ foo: 1 })).toEqual({ code: null, message: '{"foo":1}' });
  });

  it('bounds peer-supplied text', () => {
    const error = normaliseError([20, 'y'.repeat(10_000)]);
    expect(error?.message.length).toBeLessThanOrEqual(257);
  });
});

describe('responseOutcome', () => {
  it('is ok with the result when there is no error', () => {
    expect(responseOutcome(true, null)).toEqual({ ok: true, result: true });
    expect(responseOutcome([1, 2], undefined)).toEqual({ ok: true, result: [1, 2] });
  });

  it('is an error when the error field says so, whatever the result', () => {
    expect(responseOutcome(null, [22, 'Duplicate share', null])).toEqual({
      ok: false,
      error: { code: 22, message: 'Duplicate share' },
    });
  });

  it('reads result:false as a rejection, with reject-reason when present', () => {
    expect(responseOutcome(false, null, 'Above target')).toEqual({
      ok: false,
      error: { code: null, message: 'Above target' },
    });
    expect(responseOutcome(false, null)).toEqual({
      ok: false,
      error: { code: null, message: 'rejected' },
    });
  });
});

describe('describeError', () => {
  it('prefixes the code when there is one', () => {
    expect(describeError({ code: StratumErrorCode.lowDifficulty, message: 'low' })).toBe('23 low');
    expect(describeError({ code: null, message: 'Above target' })).toBe('Above target');
  });
});

describe('StratumErrorCode', () => {
  it('carries the Stratum wire numbers, taken from the one table', () => {
    expect(StratumErrorCode).toEqual({
      other: 20,
      jobNotFound: 21,
      duplicateShare: 22,
      lowDifficulty: 23,
      unauthorized: 24,
      notSubscribed: 25,
      methodNotFound: -32601,
    });
  });
});
