import { afterEach, describe, expect, it } from 'vitest';
import { RpcErrorCode } from '../../src/protocol/errors.js';
import type { ClientChannel, ClientPort } from '../../src/relay/client-session.js';
import { RelayFullError, Stratifier } from '../../src/relay/stratifier.js';
import { createPowHasher } from '../../src/work/pow.js';
import { MIN_DIFFICULTY } from '../../src/work/target.js';
import { ManualSource } from '../helpers/manual-source.js';

/**
 * Admission by port: circuit clients (limits.maxClients) and Stratum miners
 * (limits.maxStratumClients) each have their own places and their own share of the extranonce
 * slots, so a crowd on one port never locks the other out (issue 15).
 */

const stratifiers: Stratifier[] = [];
afterEach(() => {
  for (const stratifier of stratifiers.splice(0)) stratifier.stop();
});

async function start(maxClients: number, maxStratumClients: number) {
  const source = new ManualSource('sha256d');
  const stratifier = new Stratifier({
    source,
    algorithm: 'sha256d',
    hasher: await createPowHasher('sha256d'),
    initialDifficulty: MIN_DIFFICULTY,
    ticketDifficulty: MIN_DIFFICULTY,
    maxClients,
    maxStratumClients,
  });
  stratifier.start();
  stratifiers.push(stratifier);
  return { source, stratifier };
}

/** A channel that only remembers why the stratifier closed it. */
function channel(): ClientChannel & { closedWith: string | null } {
  return {
    closedWith: null,
    sendJob: () => {},
    sendDifficulty: () => {},
    sendExtranonce: () => {},
    sendVersionMask: () => {},
    sendUpstreamState: () => {},
    close(reason: string) {
      this.closedWith = reason;
    },
  };
}

function register(stratifier: Stratifier, port: ClientPort) {
  const own = channel();
  const { session } = stratifier.register(own, port === 'stratum' ? 'donate' : 'tickets', {
    port,
  });
  return { session, channel: own };
}

describe('stratifier admission by port', () => {
  it('a full Stratum port refuses miners while circuits still register, and the other way round', async () => {
    const { source, stratifier } = await start(2, 3);
    source.goLive({ difficulty: 1e12 });
    const donors = [0, 1, 2].map(() => register(stratifier, 'stratum'));
    expect(() => register(stratifier, 'stratum')).toThrow(RelayFullError);
    expect(() => register(stratifier, 'stratum')).toThrow(
      expect.objectContaining({
        code: RpcErrorCode.relayFull,
        message: 'stratum port is full, retry later',
        data: { retryAfter: 30 },
      }),
    );

    // The donors took none of the circuits' places.
    register(stratifier, 'circuit');
    register(stratifier, 'circuit');
    expect(() => register(stratifier, 'circuit')).toThrow(
      expect.objectContaining({ message: 'relay is full, retry later' }),
    );
    expect(stratifier.clientCount).toBe(5);
    expect(stratifier.clientsOn('stratum')).toBe(3);
    expect(stratifier.clientsOn('circuit')).toBe(2);

    // A donor leaving frees a donor's place, not a circuit's.
    const [first] = donors;
    if (first) stratifier.close(first.session);
    expect(() => register(stratifier, 'circuit')).toThrow(RelayFullError);
    expect(register(stratifier, 'stratum').session.port).toBe('stratum');
  });

  it('register without a port takes a circuit place', async () => {
    const { source, stratifier } = await start(1, 1);
    source.goLive({ difficulty: 1e12 });
    const { session } = stratifier.register(channel(), 'donate');
    expect(session.port).toBe('circuit');
    expect(() => stratifier.register(channel(), 'donate')).toThrow(RelayFullError);
    expect(register(stratifier, 'stratum').session.port).toBe('stratum');
  });

  it('no upstream work is not a full refusal (a Stratum miner may wait on its connection)', async () => {
    const { stratifier } = await start(1, 1);
    let refusal: unknown = null;
    try {
      register(stratifier, 'stratum');
    } catch (err) {
      refusal = err;
    }
    expect(refusal).toMatchObject({
      code: RpcErrorCode.relayFull,
      message: 'no upstream work yet, retry later',
      data: { retryAfter: 5 },
    });
    expect(refusal).not.toBeInstanceOf(RelayFullError);
  });

  it('a one-byte slot layout splits its 256 slots between the ports; the newest over their share go', async () => {
    const { source, stratifier } = await start(1_000, 100);
    source.goLive({ difficulty: 1e12, extranonce2Size: 8 });
    const donors = Array.from({ length: 30 }, () => register(stratifier, 'stratum'));
    const circuits = Array.from({ length: 30 }, () => register(stratifier, 'circuit'));

    // 3 bytes upstream: one slot byte, 256 slots; the Stratum port's share is
    // floor(256 × 100 / 1,100) = 23, the circuits get the other 233.
    source.setTerms({ extranonce2Size: 3, difficulty: 1e12 });
    const closed = donors.filter((d) => d.channel.closedWith !== null);
    expect(closed.map((d) => d.session.id)).toEqual(donors.slice(23).map((d) => d.session.id));
    expect(closed[0]?.channel.closedWith).toBe('no extranonce slot left after an upstream change');
    expect(circuits.every((c) => c.channel.closedWith === null)).toBe(true);
    expect(stratifier.clientsOn('stratum')).toBe(23);
    expect(stratifier.clientsOn('circuit')).toBe(30);

    expect(() => register(stratifier, 'stratum')).toThrow(
      expect.objectContaining({ message: 'stratum port is full, retry later' }),
    );
    // Every circuit place of the share can be taken: no donor holds one of its slots.
    for (let i = 30; i < 233; i++) register(stratifier, 'circuit');
    expect(() => register(stratifier, 'circuit')).toThrow(
      expect.objectContaining({ message: 'relay is full, retry later' }),
    );
    expect(stratifier.clientCount).toBe(256);
  });
});
