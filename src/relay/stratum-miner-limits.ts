/**
 * Limits of the Stratum V1 TCP connector. Standard miners are reached over plain TCP by
 * anyone who can reach the port, so every resource a connection can make the relay hold
 * (buffered input, buffered output, request rate, idle time, connections) is bounded.
 */

export interface StratumLimits {
  /** Longest line accepted from a miner; a longer one drops the connection. */
  maxLineBytes: number;
  /** Invalid messages (garbage, bad params, unknown methods) tolerated per connection. */
  maxInvalidMessages: number;
  /** Sustained messages per second per connection (token bucket). */
  maxRequestsPerSecond: number;
  /** Bucket depth in seconds of the sustained rate: how long a burst may last. */
  burstSeconds: number;
  /** A miner that lets this much outgoing data queue up is too slow and is dropped. */
  maxBufferedBytes: number;
  /** A miner that sends nothing for this long is dropped (TCP has no keep-alive of its own). */
  idleTimeoutMs: number;
  /** Time allowed from connecting to being subscribed and authorized. */
  handshakeTimeoutMs: number;
  maxConnections: number;
  /** After a polite close (reconnect request, relay gave up), how long the miner has to hang up. */
  closeGraceMs: number;
}

export const DEFAULT_STRATUM_LIMITS: StratumLimits = {
  maxLineBytes: 4 * 1024,
  maxInvalidMessages: 10,
  // Shares are paced by vardiff (one per ~15 s); 20/s leaves room for a fast ASIC that starts
  // below its right difficulty, until vardiff catches up.
  maxRequestsPerSecond: 20,
  burstSeconds: 5,
  maxBufferedBytes: 256 * 1024,
  // Vardiff steps an idle miner down until it finds shares again; ten silent minutes means
  // the miner is gone, not slow.
  idleTimeoutMs: 10 * 60_000,
  handshakeTimeoutMs: 60_000,
  maxConnections: 1_000,
  closeGraceMs: 1_000,
};
