import { describe, expect, it } from 'vitest';
import {
  checkExit,
  DEFAULT_EXIT_POLICY,
  type ExitPolicy,
  type Resolver,
} from '../../src/qos/exit-policy.js';

/**
 * IPv6 addresses that carry an IPv4 address (docs/design.md §5.4): refused unless the allow
 * list covers them, and then only if the IPv4 address inside passes too. Teredo and 6to4
 * vectors were decoded with Python's `ipaddress` (`teredo`, `sixtofour`); the local-use NAT64
 * layouts follow the examples of RFC 6052 §2.4 (192.0.2.33 under each prefix length).
 */

const policy: ExitPolicy = { ...DEFAULT_EXIT_POLICY, ports: [80] };
const refused = { ok: false, refusal: 'address not allowed' };

function table(entries: Record<string, string[]>): Resolver {
  return (host) => {
    const addresses = entries[host];
    if (!addresses) return Promise.reject(new Error(`ENOTFOUND ${host}`));
    return Promise.resolve(
      addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })),
    );
  };
}

function allowing(...allowCidrs: string[]): ExitPolicy {
  return { ...policy, allowCidrs };
}

/** Whether a literal address passes, and a name resolving to it. */
async function passes(address: string, rules: ExitPolicy = policy): Promise<boolean> {
  const literal = await checkExit(address, 80, rules, table({}));
  const named = await checkExit('name.test', 80, rules, table({ 'name.test': [address] }));
  expect(named.ok, `${address} literal and resolved disagree`).toBe(literal.ok);
  if (!literal.ok) expect(literal).toEqual(refused);
  return literal.ok;
}

/**
 * Each range: what allows it, an address carrying a public IPv4 address, one carrying a
 * refused IPv4 address, and an entry allowing that IPv4 address.
 */
const RANGES: {
  range: string;
  allow: string;
  publicInside: string;
  privateInside: string;
  allowInside: string;
}[] = [
  {
    range: 'NAT64 64:ff9b::/96',
    allow: '64:ff9b::/96',
    publicInside: '64:ff9b::8.8.8.8',
    privateInside: '64:ff9b::a00:1', // 10.0.0.1
    allowInside: '10.0.0.0/8',
  },
  {
    range: 'NAT64 local-use 64:ff9b:1::/48, translator prefix /48',
    allow: '64:ff9b:1::/48',
    publicInside: '64:ff9b:1:808:8:800::', // 8.8.8.8
    privateInside: '64:ff9b:1:c000:2:2100::', // 192.0.2.33 (RFC 6052's /48 example)
    allowInside: '192.0.2.33/32',
  },
  {
    range: 'NAT64 local-use, translator prefix /56',
    allow: '64:ff9b:1:300::/56',
    publicInside: '64:ff9b:1:308:8:808::',
    privateInside: '64:ff9b:1:3c0:0:221::', // 192.0.2.33
    allowInside: '192.0.2.0/24',
  },
  {
    range: 'NAT64 local-use, translator prefix /64',
    allow: '64:ff9b:1:344::/64',
    publicInside: '64:ff9b:1:344:8:808:800:0',
    privateInside: '64:ff9b:1:344:c0:2:2100:0', // 192.0.2.33
    allowInside: '192.0.2.33/32',
  },
  {
    range: 'NAT64 local-use, translator prefix /96',
    allow: '64:ff9b:1:344::/96',
    publicInside: '64:ff9b:1:344::8.8.8.8',
    privateInside: '64:ff9b:1:344::192.0.2.33',
    allowInside: '192.0.2.33/32',
  },
  {
    range: 'SIIT IPv4-translated ::ffff:0:0:0/96',
    allow: '::ffff:0:0:0/96',
    publicInside: '::ffff:0:808:808',
    privateInside: '::ffff:0:7f00:1', // 127.0.0.1
    allowInside: '127.0.0.1/32',
  },
  {
    range: 'IPv4-compatible ::/96',
    allow: '::/96',
    publicInside: '::8.8.8.8',
    privateInside: '::169.254.169.254',
    allowInside: '169.254.169.254/32',
  },
  {
    range: '6to4 2002::/16',
    allow: '2002::/16',
    publicInside: '2002:808:808::1',
    privateInside: '2002:c0a8:101::1', // 192.168.1.1
    allowInside: '192.168.1.0/24',
  },
  {
    range: 'Teredo 2001::/32, client address inside',
    allow: '2001::/32',
    publicInside: '2001:0:4136:e378:8000:63bf:f7f7:f7f7', // server 65.54.227.120, client 8.8.8.8
    privateInside: '2001:0:4136:e378::3f57:fefe', // client 192.168.1.1
    allowInside: '192.168.1.1/32',
  },
  {
    range: 'Teredo 2001::/32, server address inside',
    allow: '2001::/32',
    publicInside: '2001:0:4136:e378:8000:63bf:f7f7:f7f7',
    privateInside: '2001:0:a00:1::f7f7:f7f7', // server 10.0.0.1, client 8.8.8.8
    allowInside: '10.0.0.1/32',
  },
];

describe('IPv6 addresses that carry an IPv4 address', () => {
  describe.each(RANGES)('$range', ({ allow, publicInside, privateInside, allowInside }) => {
    it('is refused by default, whatever the IPv4 address inside', async () => {
      expect(await passes(publicInside)).toBe(false);
      expect(await passes(privateInside)).toBe(false);
    });

    it('an allow-list entry for the IPv4 address inside is not enough', async () => {
      expect(await passes(privateInside, allowing(allowInside))).toBe(false);
      expect(await passes(publicInside, allowing('8.8.8.8/32', '0.0.0.0/0'))).toBe(false);
    });

    it('allow-listed, it passes with a public IPv4 address inside and not a refused one', async () => {
      expect(await passes(publicInside, allowing(allow))).toBe(true);
      expect(await passes(privateInside, allowing(allow))).toBe(false);
    });

    it('with the range and the IPv4 address inside both allow-listed, it passes', async () => {
      expect(await passes(privateInside, allowing(allow, allowInside))).toBe(true);
    });

    it('allowPrivate lets it through', async () => {
      expect(await passes(privateInside, { ...policy, allowPrivate: true })).toBe(true);
    });
  });

  it('the longest allow entry gives the local-use NAT64 layout (RFC 6052 §2.2)', async () => {
    // 64:ff9b:1:344:c0:2:2100:0 holds 192.0.2.33 in the /64 layout, 33.0.0.0 in the /96
    // one and 3.68.192.0 in the /48 one (also what an entry shorter than /48 gives).
    const address = '64:ff9b:1:344:c0:2:2100:0';
    expect(await passes(address, allowing('64:ff9b:1::/48', '64:ff9b:1:344::/64'))).toBe(false);
    expect(await passes(address, allowing('64:ff9b:1::/48', '64:ff9b:1:344:c0:2::/96'))).toBe(true);
    expect(await passes(address, allowing('64:ff9b:1::/48'))).toBe(true);
    expect(await passes(address, allowing('64:ff9b::/32'))).toBe(true);
    expect(await passes(address, allowing('64:ff9b:1:344::/64', '192.0.2.0/24'))).toBe(true);
  });

  it('IPv4-mapped addresses are judged as the IPv4 address itself', async () => {
    expect(await passes('::ffff:8.8.8.8')).toBe(true);
    expect(await passes('::ffff:7f00:1')).toBe(false);
    expect(await passes('::ffff:127.0.0.1', allowing('127.0.0.1/32'))).toBe(true);
    // IPv4 addresses are allowed by IPv4 entries only: no IPv6 entry reaches them.
    expect(await passes('::ffff:10.0.0.1', allowing('::ffff:0:0/96'))).toBe(false);
    expect(await passes('10.0.0.1', allowing('::/0'))).toBe(false);
  });

  it(':: and ::1 are themselves, not IPv4-compatible', async () => {
    expect(await passes('::')).toBe(false);
    expect(await passes('::1')).toBe(false);
    expect(await passes('::1', allowing('::1/128'))).toBe(true);
    // 0.0.0.1 inside would be refused, so ::1 allowed proves it is not read as IPv4.
    expect(await passes('::2', allowing('::/96'))).toBe(false);
  });

  it('a name is refused if any of its addresses carries an IPv4 address', async () => {
    const resolve = table({
      'mixed.test': ['93.184.215.14', '2002:808:808::1'],
      'nat64.test': ['64:ff9b::93.184.215.14', '64:ff9b::7f00:1'],
    });
    expect(await checkExit('mixed.test', 80, policy, resolve)).toEqual(refused);
    expect(await checkExit('mixed.test', 80, allowing('2002::/16'), resolve)).toEqual({
      ok: true,
      address: '93.184.215.14',
      family: 4,
    });
    expect(await checkExit('nat64.test', 80, allowing('64:ff9b::/96'), resolve)).toEqual(refused);
  });
});
