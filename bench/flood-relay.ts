import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { join } from 'node:path';
import { parseRelayConfig } from '../src/relay/config.js';
import { type Relay, startRelay } from '../src/relay/relay.js';
import { MIN_DIFFICULTY } from '../src/work/target.js';
import { ManualSource } from '../test/helpers/manual-source.js';
import { fixtureRsaKeys } from '../test/helpers/rsa-keys.js';

/**
 * The relay of bench/flood.ts, forked by it so that the relay's event loop and memory are
 * its own: a whole relay (startRelay: HTTP, circuits, stratifier, tickets with RSA keys from
 * test/fixtures, the ticket and share worker pools) fed by a ManualSource, scrypt, every
 * share at the floor difficulty (vardiff pinned there) so a legitimate miner's shares are all
 * accepted, none forwarded. `limits` come from the parent: the flood runs at the defaults,
 * the fuzz run raises the per-circuit ones (see bench/flood.ts).
 *
 * Not a benchmark on its own (bench/run.ts skips <name>-<part>.ts helpers).
 */

/** Parent → relay. */
export type ToRelay =
  | { type: 'start'; limits: Record<string, unknown> }
  | { type: 'memory' }
  | { type: 'loop' }
  | { type: 'status' }
  | { type: 'stop' };

/** Relay → parent. */
export type FromRelay =
  | { type: 'started'; url: string; keyId: string; day: number }
  | { type: 'memory'; rss: number; heapUsed: number }
  /** Since the last `loop`: event-loop delay (ms) and CPU time of the whole process (ms). */
  | { type: 'loop'; p50: number; p99: number; max: number; cpuMs: number; seconds: number }
  | { type: 'status'; status: unknown }
  | { type: 'stopped' };

const send = (msg: FromRelay) => process.send?.(msg);
const delay = monitorEventLoopDelay({ resolution: 5 });
delay.enable();
let cpuSince = process.cpuUsage();
let loopSince = performance.now();
const dir = mkdtempSync(join(tmpdir(), 'powbridge-bench-flood-'));
let relay: Relay | null = null;

async function start(limits: Record<string, unknown>): Promise<void> {
  const upstream = new ManualSource('scrypt');
  relay = await startRelay(
    parseRelayConfig({
      relay: { listen: '127.0.0.1:0', dataDir: join(dir, 'data') },
      log: { level: 'silent' },
      source: {
        type: 'node',
        algorithm: 'scrypt',
        node: { rpcUrl: 'http://127.0.0.1:1', rpcUser: 'u', rpcPassword: 'p', payoutAddress: 'a' },
      },
      difficulty: {
        initial: MIN_DIFFICULTY,
        min: MIN_DIFFICULTY,
        max: MIN_DIFFICULTY,
        ticketDifficulty: MIN_DIFFICULTY,
      },
      tickets: { price: 1 },
      limits,
    }),
    { source: upstream, generateRsaKey: fixtureRsaKeys() },
  );
  // The upstream asks far more than any share meets: nothing is forwarded or kept.
  upstream.goLive({ difficulty: 1e12 });
  const terms = relay.tickets.terms();
  if (!terms) throw new Error('flood relay: no issuing key');
  send({ type: 'started', url: relay.url, keyId: terms.keyId, day: terms.day });
}

/** After a full collection when the parent forked us with --expose-gc: what is kept. */
function memory(): { rss: number; heapUsed: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const { rss, heapUsed } = process.memoryUsage();
  return { rss, heapUsed };
}

process.on('message', (message) => {
  const msg = message as ToRelay;
  const run = async (): Promise<void> => {
    switch (msg.type) {
      case 'start':
        return start(msg.limits);
      case 'memory':
        send({ type: 'memory', ...memory() });
        return;
      case 'loop': {
        const cpu = process.cpuUsage(cpuSince);
        const ms = (ns: number) => ns / 1e6;
        send({
          type: 'loop',
          p50: ms(delay.percentile(50)),
          p99: ms(delay.percentile(99)),
          max: ms(delay.max),
          cpuMs: (cpu.user + cpu.system) / 1000,
          seconds: (performance.now() - loopSince) / 1000,
        });
        delay.reset();
        cpuSince = process.cpuUsage();
        loopSince = performance.now();
        return;
      }
      case 'status': {
        const response = await relay?.app.inject({ method: 'GET', url: '/v1/status' });
        send({ type: 'status', status: response?.json() });
        return;
      }
      case 'stop':
        await relay?.close();
        rmSync(dir, { recursive: true, force: true });
        send({ type: 'stopped' });
        process.disconnect();
    }
  };
  run().catch((err: unknown) => {
    console.error(
      `flood relay: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
    );
    process.exit(1);
  });
});
