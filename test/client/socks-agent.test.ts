import { describe, expect, it } from 'vitest';
import { SocksProxyAgent } from 'socks-proxy-agent';
import {
  isolatedSocksAgents,
  parseSocksProxy,
  resolvesLocally,
} from '../../src/client/socks-agent.js';

describe('parseSocksProxy', () => {
  it('takes socks5h:// and socks5:// with host and port', () => {
    expect(parseSocksProxy('socks5h://127.0.0.1:9050').host).toBe('127.0.0.1:9050');
    expect(resolvesLocally(parseSocksProxy('socks5h://127.0.0.1:9050'))).toBe(false);
    expect(resolvesLocally(parseSocksProxy('socks5://[::1]:9050'))).toBe(true);
  });

  it('refuses other schemes, missing ports, credentials and paths, explaining socks5h', () => {
    expect(() => parseSocksProxy('127.0.0.1:9050')).toThrow(/socks5h:\/\/host:port/);
    expect(() => parseSocksProxy('http://127.0.0.1:9050')).toThrow(/unsupported proxy scheme/);
    expect(() => parseSocksProxy('socks4a://127.0.0.1:9050')).toThrow(/DNS goes through Tor/);
    expect(() => parseSocksProxy('socks5h://127.0.0.1')).toThrow(/host and port/);
    expect(() => parseSocksProxy('socks5h://a:b@127.0.0.1:9050')).toThrow(/credentials/);
    expect(() => parseSocksProxy('socks5h://127.0.0.1:9050/x')).toThrow(/no path/);
  });
});

describe('isolatedSocksAgents', () => {
  it('gives every agent its own random credentials for the same proxy', () => {
    const next = isolatedSocksAgents(parseSocksProxy('socks5h://127.0.0.1:9050'));
    const agents = [next(), next(), next()] as SocksProxyAgent[];
    const users = new Set(agents.map((a) => a.proxy.userId));
    const passwords = new Set(agents.map((a) => a.proxy.password));
    expect(users.size).toBe(3);
    expect(passwords.size).toBe(3);
    for (const agent of agents) {
      expect(agent).toBeInstanceOf(SocksProxyAgent);
      expect(agent.proxy).toMatchObject({ host: '127.0.0.1', port: 9050, type: 5 });
      expect(agent.shouldLookup).toBe(false); // socks5h: the proxy resolves names
      agent.destroy();
    }
  });
});
