/**
 * Limits of the Stratum V1 TCP connector. Standard miners are reached over plain TCP by
 * anyone who can reach the port, so every resource a connection can make the relay hold
 * (buffered input, buffered output, request rate, idle time, connections) is bounded, and a
 * place is kept only for work: a donor that sends no accepted share in time is let go.
 */

/**
 * Why the Stratum port dropped or refused a connection, as counted in /v1/status and
 * /metrics; a fixed set so metrics never grow a label per message.
 */
export const STRATUM_DROP_REASONS = [
  /** mining.subscribe refused: `limits.maxStratumClients` reached (or no slot left). */
  'full',
  /** Refused on accept: the port holds as many connections as it takes. */
  'connection-limit',
  /** Not subscribed and authorized within the handshake deadline. */
  'handshake-timeout',
  /** No accepted share within `limits.stratumShareTimeoutSeconds`. */
  'no-share',
  /** Nothing received for the idle timeout. */
  'idle',
  /** Garbage, over-long lines, too many invalid messages or requests. */
  'abuse',
  /** Let its outgoing data pile up. */
  'slow-reader',
] as const;
export type StratumDropReason = (typeof STRATUM_DROP_REASONS)[number];

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
  /**
   * Time a working miner has to get a share accepted, from the start of work and then from
   * its last accepted share; paused while the upstream gives no work. Pings, bad shares and
   * stray bytes do not count: only work keeps a donor's place. Null: no deadline (a miner
   * client's own local miners, which take nobody's place).
   */
  shareTimeoutMs: number | null;
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
  // A miner subscribes and authorizes in two round trips; 20 s covers a slow Tor circuit.
  handshakeTimeoutMs: 20_000,
  // Vardiff quarters the difficulty every minute without a share, so from difficulty 16 a
  // miner of 1 kH/s scrypt finds one within five minutes with near certainty.
  shareTimeoutMs: 300_000,
  maxConnections: 1_000,
  closeGraceMs: 1_000,
};
