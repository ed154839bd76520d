import { describe, expect, it } from 'vitest';
import { live, startClient, startPool } from './stratum-pool-harness.js';

/**
 * A pool whose authorize answer comes in one read with a line the codec refuses: the client
 * drops the connection while still inside the handshake, so nobody is listening for that
 * close yet. The session must not count as established (found by the fuzz suite,
 * test/fuzz/stratum-pool-client.test.ts): otherwise the client goes "live" on a dead
 * connection and never reconnects.
 */

describe('StratumPool: a pool that closes right behind its handshake answers', () => {
  it('is not live on the dead connection: it reconnects and goes live on the next one', async () => {
    const pool = await startPool();
    pool.handlers['mining.authorize'] = (m, c) => {
      const answer = JSON.stringify({ id: m.id, result: true, error: null });
      // The first connection: the answer and a client.reconnect with one param too many, in one
      // write (one read at the client). Later connections: the cooperative answer.
      if (c.index === 0)
        c.sendRaw(`${answer}\n{"id":null,"method":"client.reconnect","params":["",null,0,""]}\n`);
      else c.reply(m.id, true);
    };
    const client = startClient([pool]);
    await live(client);
    expect(client.pool.status().state).toBe('live');
    // Live on the second connection, after the first was dropped at its handshake.
    const second = await pool.connection(1);
    expect(second.isClosed).toBe(false);
    expect(client.logs.join('')).toContain('pool closed the connection after the handshake');
    expect(client.order.filter((e) => e === 'state:live')).toHaveLength(1);
  });
});
