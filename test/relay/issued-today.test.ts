import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/relay/relay.js';
import { relayStatusWithPeersSchema } from '../../src/relay/status-schema.js';
import { mineTicket } from '../helpers/mine-ticket.js';
import { usePostgres } from '../helpers/postgres.js';
import { startTestRelay } from '../helpers/test-relay.js';

/**
 * Today's issued tickets in /v1/status and /metrics (src/storage/issued-counter.ts): this
 * instance's since start beside the family's from storage, which is the sum over the instances
 * and survives a restart; SQLite for one relay, PostgreSQL for a family of two.
 */

const postgres = usePostgres();
const dirs: string[] = [];

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'powbridge-issued-'));
  dirs.push(dir);
  return dir;
}

/** The status's issuedToday once the family count has been read (the read at start is async). */
async function issuedToday(relay: Relay): Promise<{ here: number; family: number | null }> {
  for (let attempt = 0; ; attempt++) {
    const status = relayStatusWithPeersSchema.parse(
      await (await fetch(`${relay.url}/v1/status`)).json(),
    );
    const today = status.tickets?.issuedToday;
    if (!today) throw new Error('no tickets.issuedToday in the status');
    // A hang limit, not a speed check.
    if (today.family !== null || attempt > 500) return today;
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function familyGauge(relay: Relay): Promise<string | undefined> {
  const text = await (await fetch(`${relay.url}/metrics`)).text();
  return /^powbridge_tickets_issued_today\{scope="family"\} (\d+)$/m.exec(text)?.[1];
}

describe('tickets issued today', () => {
  it('one relay on SQLite: its count, kept across a restart', async () => {
    const dir = dataDir();
    let relay: Relay | undefined;
    try {
      ({ relay } = await startTestRelay({ dataDir: dir }));
      await mineTicket(relay);
      await mineTicket(relay);
      expect(await issuedToday(relay)).toEqual({ here: 2, family: 2 });
      await relay.close();
      ({ relay } = await startTestRelay({ dataDir: dir }));
      expect(await issuedToday(relay)).toEqual({ here: 0, family: 2 });
      expect(await familyGauge(relay)).toBe('2');
    } finally {
      await relay?.close();
    }
  });

  it('two AO instances on one PostgreSQL: the family count is the sum', async () => {
    const dir = dataDir();
    const storage = {
      url: await postgres().createDatabase(),
      passwordFile: postgres().passwordFile,
    };
    const relays: Relay[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        relays.push((await startTestRelay({ dataDir: dir, storage, scheme: 'ao' })).relay);
      }
      const [a, b] = relays as [Relay, Relay];
      await mineTicket(a);
      await mineTicket(b);
      await mineTicket(b);
      expect((await issuedToday(b)).here).toBe(2);
      await Promise.all(relays.splice(0).map((r) => r.close()));
      const again = (await startTestRelay({ dataDir: dir, storage, scheme: 'ao' })).relay;
      relays.push(again);
      expect(await issuedToday(again)).toEqual({ here: 0, family: 3 });
      expect(await familyGauge(again)).toBe('3');
    } finally {
      await Promise.all(relays.map((r) => r.close()));
    }
  });
});
