import { describe, expect, it } from 'vitest';
import { Backoff, backoffDelay } from '../../src/lib/backoff.js';
import { parseStratumUrl, sameHost, withPort } from '../../src/sources/stratum-endpoint.js';
import { StratumPool } from '../../src/sources/stratum-pool.js';

describe('parseStratumUrl', () => {
  it('reads tcp and ssl URLs and drops credentials from the display form', () => {
    expect(parseStratumUrl('stratum+tcp://pool.example:3333')).toEqual({
      tls: false,
      host: 'pool.example',
      port: 3333,
      display: 'stratum+tcp://pool.example:3333',
    });
    expect(parseStratumUrl('stratum+ssl://user:pw@[::1]:443/')).toEqual({
      tls: true,
      host: '::1',
      port: 443,
      display: 'stratum+ssl://[::1]:443',
    });
  });

  it('refuses other schemes, missing ports and paths', () => {
    expect(() => parseStratumUrl('http://pool.example:3333')).toThrow('scheme');
    expect(() => parseStratumUrl('stratum+tcp://pool.example')).toThrow('port');
    expect(() => parseStratumUrl('stratum+tcp://pool.example:3333/x')).toThrow('path');
    expect(() => parseStratumUrl('pool.example:3333')).toThrow();
  });

  it('compares hosts case-insensitively and moves ports', () => {
    expect(sameHost('Pool.Example', 'pool.example')).toBe(true);
    expect(sameHost('[::1]', '::1')).toBe(true);
    expect(sameHost('pool.example', 'evil.example')).toBe(false);
    expect(withPort(parseStratumUrl('stratum+tcp://h:1'), 2).display).toBe('stratum+tcp://h:2');
  });
});

describe('backoff', () => {
  it('doubles the step up to the cap, with the delay in [step/2, step]', () => {
    const options = { minMs: 100, maxMs: 1000 };
    const low = [0, 1, 2, 3, 4, 5].map((n) => backoffDelay(n, { ...options, random: () => 0 }));
    const high = [0, 1, 2, 3, 4, 5].map((n) => backoffDelay(n, { ...options, random: () => 1 }));
    expect(low).toEqual([50, 100, 200, 400, 500, 500]);
    expect(high).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  it('never overflows for large attempt counts', () => {
    expect(backoffDelay(10_000, { minMs: 1, maxMs: 60_000, random: () => 0.5 })).toBe(45_000);
  });

  it('restarts from the minimum after reset', () => {
    const backoff = new Backoff({ minMs: 10, maxMs: 80, random: () => 1 });
    expect([backoff.next(), backoff.next(), backoff.next()]).toEqual([10, 20, 40]);
    backoff.reset();
    expect(backoff.next()).toBe(10);
    expect(() => new Backoff({ minMs: 0, maxMs: 10 })).toThrow(RangeError);
  });
});

describe('StratumPool options', () => {
  const pool = { url: 'stratum+tcp://127.0.0.1:3333', user: 'alice', password: 'x' };

  it('names the offending key', () => {
    expect(() => new StratumPool({ pools: [] })).toThrow('stratum pool config: pools:');
    expect(() => new StratumPool({ pools: [{ ...pool, url: 'tcp://h:1' }] })).toThrow(
      'stratum pool config: pools.0.url: scheme must be stratum+tcp:// or stratum+ssl://',
    );
    expect(() => new StratumPool({ pools: [pool], requestTimeoutMs: -5 })).toThrow(
      'stratum pool config: requestTimeoutMs:',
    );
    expect(() => new StratumPool({ pools: [{ ...pool, user: '' }] })).toThrow('pools.0.user');
    expect(() => new StratumPool({ pools: [pool], backoff: { minMs: 50, maxMs: 10 } })).toThrow(
      'stratum pool config: backoff: maxMs must be >= minMs',
    );
  });

  it('never puts the password in an error message', () => {
    const bad = { ...pool, password: 'hunter2', tls: { ca: 5 as unknown as string } };
    expect(() => new StratumPool({ pools: [bad] })).toThrow(/^(?!.*hunter2)/);
  });

  it('starts down, with no upstream', () => {
    const source = new StratumPool({ pools: [pool], algorithm: 'scrypt' });
    expect(source.algorithm).toBe('scrypt');
    expect(source.status()).toEqual({ state: 'down', upstream: null, terms: null, job: null });
  });
});
