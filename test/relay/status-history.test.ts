import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ClientSession } from '../../src/relay/client-session.js';
import { RelayStats } from '../../src/relay/stats.js';
import { historySample, StatusHistory } from '../../src/relay/status-history.js';
import {
  relayStatusSchema,
  type RelayStatus,
  statusHistorySchema,
} from '../../src/relay/status-schema.js';
import { statusReader } from '../../src/relay/http-api.js';
import type { StratifierEvents } from '../../src/relay/stratifier.js';
import type { SourceState, UpstreamTerms } from '../../src/sources/work-source.js';
import { testHttpApi } from '../helpers/http-api.js';

/** A history over a counter the test moves, on a clock the test moves. */
function counterHistory(capacity: number) {
  const state = { clock: 1_000, count: 0 };
  const history = new StatusHistory({
    read: () => ({ count: state.count }),
    intervalSeconds: 10,
    capacity,
    now: () => state.clock,
  });
  const tick = (count: number): void => {
    state.clock += 10;
    state.count = count;
    history.record();
  };
  return { state, history, tick };
}

describe('StatusHistory: the ring', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('keeps the newest samples, oldest first, and drops the oldest when full', () => {
    const { history, tick } = counterHistory(4);
    expect(history.since()).toEqual({ intervalSeconds: 10, capacity: 4, times: [], series: {} });
    for (const count of [1, 2, 3]) tick(count);
    expect(history.since()).toEqual({
      intervalSeconds: 10,
      capacity: 4,
      times: [1_010, 1_020, 1_030],
      series: { count: [1, 2, 3] },
    });
    for (const count of [4, 5, 6]) tick(count);
    expect(history.length).toBe(4);
    expect(history.since()).toMatchObject({
      times: [1_030, 1_040, 1_050, 1_060],
      series: { count: [3, 4, 5, 6] },
    });
  });

  it('answers only what came after `since`', () => {
    const { history, tick } = counterHistory(8);
    for (const count of [1, 2, 3, 4]) tick(count);
    expect(history.since(1_020)).toMatchObject({
      times: [1_030, 1_040],
      series: { count: [3, 4] },
    });
    expect(history.since(1_040)).toMatchObject({ times: [], series: { count: [] } });
    expect(history.since(0).times).toHaveLength(4);
  });

  it('thins to every k-th sample counting back from the newest, so the newest is always in', () => {
    const { history, tick } = counterHistory(16);
    for (let count = 1; count <= 10; count++) tick(count);
    // 10 samples, at most 4: every 3rd back from the newest.
    expect(history.since(undefined, 4)).toMatchObject({
      times: [1_010, 1_040, 1_070, 1_100],
      series: { count: [1, 4, 7, 10] },
    });
    expect(history.since(undefined, 5).series['count']).toEqual([2, 4, 6, 8, 10]);
    expect(history.since(undefined, 100).series['count']).toHaveLength(10);
  });

  it('gives null where a series was missing or not a finite number, and bounds the series', () => {
    let values: Record<string, number> = { a: 1 };
    let clock = 0;
    const history = new StatusHistory({
      read: () => values,
      intervalSeconds: 1,
      capacity: 8,
      now: () => ++clock,
      maxSeries: 2,
    });
    history.record();
    values = { a: 2, b: Number.NaN, c: 3 };
    history.record();
    values = { b: 4 };
    history.record();
    expect(history.since().series).toEqual({ a: [1, 2, null], b: [null, null, 4] });
  });

  it("samples at start and then every interval on an unref'd timer, until stop", () => {
    vi.useFakeTimers();
    let reads = 0;
    const history = new StatusHistory({
      read: () => ({ n: ++reads }),
      intervalSeconds: 10,
      capacity: 100,
      now: () => Date.now() / 1000,
    });
    const unref = vi.spyOn(globalThis, 'setInterval');
    history.start();
    history.start(); // a second start is the same sampler
    expect(history.length).toBe(1);
    const timer = unref.mock.results[0]?.value as NodeJS.Timeout | undefined;
    expect(unref).toHaveBeenCalledTimes(1);
    expect(timer?.hasRef()).toBe(false);
    vi.advanceTimersByTime(30_000);
    expect(history.length).toBe(4);
    history.stop();
    vi.advanceTimersByTime(60_000);
    expect(history.length).toBe(4);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('refuses a bad interval or capacity', () => {
    const read = () => ({});
    expect(() => new StatusHistory({ read, intervalSeconds: 0, capacity: 10 })).toThrow(
      /intervalSeconds/,
    );
    expect(() => new StatusHistory({ read, intervalSeconds: 1, capacity: 1 })).toThrow(/capacity/);
    expect(() => new StatusHistory({ read, intervalSeconds: 1, capacity: 2.5 })).toThrow(
      /capacity/,
    );
  });

  it('never goes back in time with the default clock', () => {
    const history = new StatusHistory({ read: () => ({}), intervalSeconds: 1, capacity: 4 });
    const before = Date.now() / 1000;
    history.record();
    history.record();
    const { times } = history.since();
    expect(times[0]).toBeGreaterThanOrEqual(before - 1);
    expect(times[1]).toBeGreaterThanOrEqual(times[0] ?? Number.POSITIVE_INFINITY);
  });
});

class FakeStratifier extends EventEmitter<StratifierEvents> {
  readonly algorithm = 'sha256d' as const;
  clientCount = 0;
  upstreamState: SourceState = 'live';
  upstreamTerms: UpstreamTerms | null = null;
}

describe('historySample: what a sample holds', () => {
  it('takes the numbers of the status as it is served, gauges and totals, labels after a colon', () => {
    const stats = new RelayStats({ now: () => 100 });
    const subject = new FakeStratifier();
    stats.attach(subject);
    const session = {} as ClientSession; // stats never look inside the session
    subject.emit('share', { session, difficulty: 2, code: null });
    subject.emit('share', { session, difficulty: 0, code: 21 });
    const status: RelayStatus = statusReader({
      stats,
      tickets: () => ({
        issued: 3,
        redeemed: 2,
        refused: { malformed: 0, unknownKey: 0, wrongDay: 0, badSignature: 0, spent: 1 },
      }),
      tunnel: () => ({ streams: { free: 2, 'group:4': 1 }, opened: 7 }),
      relayInfo: () => ({ version: '1.2.3', startedAt: 90, uptimeSeconds: 10 }),
    })();
    expect(relayStatusSchema.parse(status)).toEqual(status);
    const sample = historySample(status);
    expect(sample).toMatchObject({
      hashrate: status.hashrate.hps,
      clients: 0,
      'shares.accepted': 1,
      'shares.rejected:stale': 1,
      'shares.rejected:duplicate': 0,
      'tickets.issued': 3,
      'tickets.redeemed': 2,
      'tickets.refused:spent': 1,
      'tunnel.streams:free': 2,
      // Only the first colon separates: a class name may hold any character.
      'tunnel.streams:group:4': 1,
      'tunnel.opened': 7,
      'blocks.stale': 0,
      'forwarded.stale': 0,
    });
    expect(status.hashrate.hps).toBeGreaterThan(0);
    // Text (version, reasons) and the blocks list are not series.
    expect(Object.values(sample).every((v) => typeof v === 'number')).toBe(true);
    expect(Object.keys(sample).some((k) => k.startsWith('relay'))).toBe(false);
    stats.detach();
  });
});

describe('GET /v1/status/history', () => {
  function api() {
    const { history, tick } = counterHistory(100);
    for (let count = 1; count <= 30; count++) tick(count);
    return testHttpApi({ history });
  }

  it('serves the samples as the schema says, after `since`, thinned to `maxSamples`', async () => {
    const app = api();
    const all = await app.inject({ method: 'GET', url: '/v1/status/history' });
    expect(all.statusCode).toBe(200);
    expect(all.headers['content-type']).toMatch(/^application\/json/);
    const body = statusHistorySchema.parse(all.json());
    expect(body.times).toHaveLength(30);
    expect(body.series['count']?.at(-1)).toBe(30);

    const recent = statusHistorySchema.parse(
      (await app.inject({ method: 'GET', url: '/v1/status/history?since=1280' })).json(),
    );
    expect(recent).toEqual({
      intervalSeconds: 10,
      capacity: 100,
      times: [1_290, 1_300],
      series: { count: [29, 30] },
    });
    const thin = statusHistorySchema.parse(
      (
        await app.inject({ method: 'GET', url: '/v1/status/history?maxSamples=3&since=1000.5' })
      ).json(),
    );
    expect(thin.series['count']).toEqual([10, 20, 30]);
    await app.close();
  });

  it('refuses a bad query with 400 and a message naming the parameter', async () => {
    const app = api();
    for (const [query, message] of [
      ['since=yesterday', /^since: expected unix seconds/],
      ['since=-5', /^since: expected unix seconds/],
      ['since=1e9', /^since: expected unix seconds/],
      ['since=1&since=2', /^since: expected unix seconds/],
      ['maxSamples=1', /^maxSamples: expected a whole number from 2 to 1000000$/],
      ['maxSamples=2.5', /^maxSamples: /],
      ['maxSamples=99999999', /^maxSamples: /],
      ['limit=5', /^unknown parameter limit: expected since, maxSamples$/],
    ] as const) {
      const response = await app.inject({ method: 'GET', url: `/v1/status/history?${query}` });
      expect(response.statusCode, query).toBe(400);
      expect(response.json<{ error: string }>().error, query).toMatch(message);
    }
    await app.close();
  });

  it('is not served by an API without a history', async () => {
    const app = testHttpApi();
    const response = await app.inject({ method: 'GET', url: '/v1/status/history' });
    expect(response.statusCode).toBe(404);
    await app.close();
  });
});
