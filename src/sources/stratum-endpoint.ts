import { isIP } from 'node:net';

/** Where a pool is: parsed from `stratum+tcp://host:port` or `stratum+ssl://host:port`. */
export interface StratumEndpoint {
  tls: boolean;
  /** Hostname or IP address, without IPv6 brackets. */
  host: string;
  port: number;
  /** The URL without credentials, safe for logs and status. */
  display: string;
}

const SCHEMES: Record<string, boolean> = { 'stratum+tcp:': false, 'stratum+ssl:': true };

/** Throws an Error naming the problem; config validation turns it into a message. */
export function parseStratumUrl(url: string): StratumEndpoint {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error('not a URL (expected stratum+tcp://host:port or stratum+ssl://host:port)');
  }
  const tls = SCHEMES[parsed.protocol];
  if (tls === undefined) throw new Error('scheme must be stratum+tcp:// or stratum+ssl://');
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw new Error('missing host');
  const port = Number(parsed.port);
  if (parsed.port === '' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error('missing or invalid port');
  }
  if ((parsed.pathname !== '' && parsed.pathname !== '/') || parsed.search || parsed.hash) {
    throw new Error('unexpected path, query or fragment');
  }
  return { tls, host, port, display: display(tls, host, port) };
}

/** The same pool on another port (client.reconnect). */
export function withPort(endpoint: StratumEndpoint, port: number): StratumEndpoint {
  return { ...endpoint, port, display: display(endpoint.tls, endpoint.host, port) };
}

function display(tls: boolean, host: string, port: number): string {
  const shownHost = isIP(host) === 6 ? `[${host}]` : host;
  return `${tls ? 'stratum+ssl' : 'stratum+tcp'}://${shownHost}:${port}`;
}

/** Host names compare case-insensitively; IPv6 may come with or without brackets. */
export function sameHost(a: string, b: string): boolean {
  const norm = (h: string) => h.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  return norm(a) === norm(b);
}
