import { randomBytes } from 'node:crypto';
import type { Agent } from 'node:http';
import { SocksProxyAgent } from 'socks-proxy-agent';

/**
 * Reaching a relay through SOCKS5, i.e. through Tor (docs/design.md §6.3, §9). Two things matter for
 * anonymity: the relay's name must be resolved by the proxy (socks5h), or the local DNS
 * resolver learns which relay we use; and each connection that must not be linked to
 * another needs its own SOCKS credentials, because Tor isolates streams by them
 * (IsolateSOCKSAuth, on by default) and so builds each one a circuit of its own.
 */

const HINT =
  'use socks5h://host:port (the proxy resolves the relay name: with Tor, DNS goes through ' +
  'Tor) or socks5://host:port (resolved locally, which tells your DNS resolver the relay)';

/**
 * A proxy URL: socks5h:// or socks5:// with host and port, nothing else. Credentials are
 * refused because `isolatedSocksAgents` sets its own, random per connection.
 */
export function parseSocksProxy(value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new RangeError(`not a URL; ${HINT}`);
  }
  if (url.protocol !== 'socks5h:' && url.protocol !== 'socks5:') {
    throw new RangeError(`unsupported proxy scheme ${url.protocol}; ${HINT}`);
  }
  if (!url.hostname || !url.port) throw new RangeError(`needs host and port; ${HINT}`);
  if (url.username || url.password) {
    throw new RangeError(
      'leave credentials out: powbridge sets random ones per connection, so Tor builds a ' +
        'new circuit for each (stream isolation)',
    );
  }
  if ((url.pathname && url.pathname !== '/') || url.search || url.hash) {
    throw new RangeError(`no path, query or fragment; ${HINT}`);
  }
  return url;
}

/** True when the proxy leaves name resolution to us (socks5://): worth a warning with Tor. */
export function resolvesLocally(proxy: URL): boolean {
  return proxy.protocol === 'socks5:';
}

/** A factory of agents for `proxy`, each with its own random SOCKS username and password. */
export function isolatedSocksAgents(proxy: URL): () => Agent {
  return () => {
    const url = new URL(`${proxy.protocol}//${proxy.host}`);
    url.username = randomBytes(12).toString('hex');
    url.password = randomBytes(12).toString('hex');
    return new SocksProxyAgent(url);
  };
}
