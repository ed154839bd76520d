import { describe, expect, it } from 'vitest';
import {
  checkExit,
  DEFAULT_EXIT_POLICY,
  ExitChecker,
  type ExitPolicy,
  parseDestination,
  type Resolver,
} from '../../src/qos/exit-policy.js';

/** A resolver answering from a table, so no test touches real DNS. */
function table(entries: Record<string, string[]>): Resolver {
  return (host) => {
    const addresses = entries[host];
    if (!addresses) return Promise.reject(new Error(`ENOTFOUND ${host}`));
    return Promise.resolve(
      addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })),
    );
  };
}

const policy: ExitPolicy = { ...DEFAULT_EXIT_POLICY, ports: [80, 443, [8000, 8100]] };

describe('parseDestination', () => {
  it.each([
    ['example.org:443', { host: 'example.org', port: 443 }],
    ['192.0.2.1:80', { host: '192.0.2.1', port: 80 }],
    ['[2001:db8::1]:80', { host: '2001:db8::1', port: 80 }],
  ])('parses %s', (text, expected) => {
    expect(parseDestination(text)).toEqual(expected);
  });

  it.each([
    'example.org',
    'example.org:0',
    'example.org:65536',
    '2001:db8::1:80',
    '[fe80::1%eth0]:80',
    'user@example.org:80',
    'example.org/x:80',
    '[not-v6]:80',
    ':80',
    `${'a'.repeat(254)}:80`,
  ])('refuses %s', (text) => {
    expect(parseDestination(text)).toBeNull();
  });
});

describe('checkExit', () => {
  it('returns the resolved address of an allowed destination', async () => {
    const decision = await checkExit(
      'example.org',
      443,
      policy,
      table({ 'example.org': ['93.184.215.14'] }),
    );
    expect(decision).toEqual({ ok: true, address: '93.184.215.14', family: 4 });
  });

  it('allows ports and port ranges of the policy only', async () => {
    const resolve = table({});
    expect(await checkExit('93.184.215.14', 8050, policy, resolve)).toMatchObject({ ok: true });
    expect(await checkExit('93.184.215.14', 8100, policy, resolve)).toMatchObject({ ok: true });
    for (const port of [22, 25, 79, 7999, 8101]) {
      expect(await checkExit('93.184.215.14', port, policy, resolve)).toEqual({
        ok: false,
        refusal: 'port not allowed',
      });
    }
  });

  it('checks the port before resolving the name', async () => {
    let asked = 0;
    const resolve: Resolver = () => {
      asked++;
      return Promise.resolve([{ address: '93.184.215.14', family: 4 }]);
    };
    await checkExit('example.org', 25, policy, resolve);
    expect(asked).toBe(0);
  });

  it.each([
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'this network'],
    ['10.0.0.1', 'private 10/8'],
    ['10.255.255.255', 'private 10/8'],
    ['100.64.0.1', 'CGNAT'],
    ['100.127.255.254', 'CGNAT'],
    ['127.0.0.1', 'loopback'],
    ['127.255.0.9', 'loopback'],
    ['169.254.169.254', 'link-local (cloud metadata)'],
    ['172.16.0.1', 'private 172.16/12'],
    ['172.31.255.255', 'private 172.16/12'],
    ['192.168.1.1', 'private 192.168/16'],
    ['192.0.0.8', 'IETF protocol assignments'],
    ['192.0.2.7', 'TEST-NET-1'],
    ['198.18.0.1', 'benchmarking'],
    ['198.51.100.7', 'TEST-NET-2'],
    ['203.0.113.7', 'TEST-NET-3'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['240.0.0.1', 'reserved'],
    ['255.255.255.255', 'broadcast'],
    ['::', 'IPv6 unspecified'],
    ['::1', 'IPv6 loopback'],
    ['fc00::1', 'unique local'],
    ['fd12:3456::1', 'unique local'],
    ['fe80::1', 'IPv6 link-local'],
    ['febf::1', 'IPv6 link-local'],
    ['ff02::1', 'IPv6 multicast'],
    ['2001:db8::1', 'IPv6 documentation'],
    ['::ffff:127.0.0.1', 'IPv4-mapped loopback'],
    ['::ffff:7f00:1', 'IPv4-mapped loopback (hex)'],
    ['::ffff:10.0.0.1', 'IPv4-mapped private'],
    ['::ffff:169.254.169.254', 'IPv4-mapped link-local'],
    ['::ffff:0:0', 'IPv4-mapped unspecified'],
    ['64:ff9b::a00:1', 'NAT64 of 10.0.0.1'],
    ['2002:c0a8:101::1', '6to4 of 192.168.1.1'],
    ['::127.0.0.1', 'IPv4-compatible loopback'],
  ])('refuses %s (%s), literal and resolved', async (address) => {
    const refused = { ok: false, refusal: 'address not allowed' };
    expect(await checkExit(address, 80, policy, table({}))).toEqual(refused);
    expect(await checkExit('name.test', 80, policy, table({ 'name.test': [address] }))).toEqual(
      refused,
    );
  });

  // IPv6 forms that carry a public IPv4 address (NAT64, 6to4, ...) are refused unless
  // allow-listed: exit-policy-embedded.test.ts.
  it.each([
    '1.1.1.1',
    '8.8.8.8',
    '100.63.255.255',
    '100.128.0.0',
    '172.15.255.255',
    '172.32.0.0',
    '192.167.255.255',
    '192.169.0.0',
    '223.255.255.255',
    '2606:4700:4700::1111',
    '::ffff:8.8.8.8',
  ])('allows the public address %s', async (address) => {
    expect(await checkExit(address, 80, policy, table({}))).toMatchObject({ ok: true, address });
  });

  it('refuses a name with one public and one private address (DNS rebinding)', async () => {
    const resolve = table({
      'rebind.test': ['93.184.215.14', '127.0.0.1'],
      'rebind6.test': ['2606:4700:4700::1111', 'fe80::1'],
      'zone.test': ['fe80::1%eth0'],
    });
    for (const host of ['rebind.test', 'rebind6.test', 'zone.test']) {
      expect(await checkExit(host, 80, policy, resolve)).toEqual({
        ok: false,
        refusal: 'address not allowed',
      });
    }
  });

  it('reports names that do not resolve', async () => {
    const resolve: Resolver = () => Promise.resolve([]);
    expect(await checkExit('gone.test', 80, policy, table({}))).toEqual({
      ok: false,
      refusal: 'name not resolved',
    });
    expect(await checkExit('empty.test', 80, policy, resolve)).toEqual({
      ok: false,
      refusal: 'name not resolved',
    });
  });

  it('lets an allow-listed CIDR through, and nothing else of the refused ranges', async () => {
    const local: ExitPolicy = { ...policy, allowCidrs: ['127.0.0.1/32', 'fd00::/8'] };
    const resolve = table({ localhost: ['127.0.0.1', '::ffff:127.0.0.1'] });
    expect(await checkExit('localhost', 80, local, resolve)).toEqual({
      ok: true,
      address: '127.0.0.1',
      family: 4,
    });
    expect(await checkExit('fd00::5', 80, local, resolve)).toMatchObject({ ok: true });
    expect(await checkExit('127.0.0.2', 80, local, resolve)).toMatchObject({ ok: false });
    expect(await checkExit('10.0.0.1', 80, local, resolve)).toMatchObject({ ok: false });
  });

  it('allowPrivate lets every address through but still checks ports', async () => {
    const open: ExitPolicy = { ...policy, allowPrivate: true };
    expect(await checkExit('10.0.0.1', 80, open, table({}))).toMatchObject({ ok: true });
    expect(await checkExit('10.0.0.1', 22, open, table({}))).toMatchObject({ ok: false });
  });

  it('rejects a malformed CIDR when the policy is compiled', () => {
    for (const cidr of ['127.0.0.1/33', '127.0.0.1', 'fd00::/129', 'host/8']) {
      const bad: ExitPolicy = { ...policy, allowCidrs: [cidr] };
      expect(() => new ExitChecker(bad)).toThrow(/bad CIDR/);
    }
  });
});
