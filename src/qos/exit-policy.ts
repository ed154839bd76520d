import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

/**
 * Where a priority tunnel may lead (docs/design.md §5). The relay opens TCP connections on behalf of
 * anonymous clients, so without a policy it would be a door into its own host and network:
 * the loopback admin port, the cloud metadata address, the LAN. The check runs after DNS
 * resolution and the caller connects to the address returned here, never to the name again,
 * so a name cannot pass as public and then resolve to 127.0.0.1 (DNS rebinding).
 */

/** A single port or an inclusive range [from, to]. */
export type PortRule = number | readonly [number, number];

export interface ExitPolicy {
  ports: readonly PortRule[];
  /** Let every address through (a relay on a private test network). */
  allowPrivate: boolean;
  /** CIDRs reachable even though they fall in a refused range, e.g. '127.0.0.1/32'. */
  allowCidrs: readonly string[];
}

export const DEFAULT_EXIT_POLICY: ExitPolicy = {
  ports: [80, 443],
  allowPrivate: false,
  allowCidrs: [],
};

export interface ResolvedAddress {
  address: string;
  family: number;
}

/** Every address a name resolves to (dns.lookup with `all`: what the OS would connect to). */
export type Resolver = (host: string) => Promise<readonly ResolvedAddress[]>;

export const systemResolver: Resolver = (host) => lookup(host, { all: true, verbatim: true });

export type ExitRefusal = 'port not allowed' | 'address not allowed' | 'name not resolved';

export type ExitDecision =
  { ok: true; address: string; family: 4 | 6 } | { ok: false; refusal: ExitRefusal };

export interface Destination {
  host: string;
  port: number;
}

const MAX_HOST_LENGTH = 253;
const HOSTNAME =
  /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*\.?$/i;

/**
 * `to=host:port` of a tunnel request: `example.org:443`, `192.0.2.1:80` or `[2001:db8::1]:80`.
 * Null for anything else (zone ids, userinfo, paths), so odd inputs never reach DNS.
 */
export function parseDestination(text: string): Destination | null {
  const match = /^(?:\[([0-9a-f:.]+)\]|([^:[\]]+)):([0-9]{1,5})$/i.exec(text);
  if (!match) return null;
  const port = Number(match[3]);
  if (port < 1 || port > 65535) return null;
  const v6 = match[1];
  if (v6 !== undefined) return isIP(v6) === 6 ? { host: v6, port } : null;
  const host = match[2] ?? '';
  if (host.length > MAX_HOST_LENGTH) return null;
  if (isIP(host) === 4 || HOSTNAME.test(host)) return { host, port };
  return null;
}

/**
 * Ranges no tunnel may reach by default: this host, private networks and anything that is not
 * a unicast address on the public internet (RFC 6890 special-purpose registries).
 */
const REFUSED_V4 = [
  '0.0.0.0/8', // "this network", includes the unspecified address
  '10.0.0.0/8',
  '100.64.0.0/10', // carrier-grade NAT
  '127.0.0.0/8',
  '169.254.0.0/16', // link-local, includes cloud metadata 169.254.169.254
  '172.16.0.0/12',
  '192.0.0.0/24', // IETF protocol assignments
  '192.0.2.0/24', // TEST-NET-1
  '192.88.99.0/24', // 6to4 relay anycast
  '192.168.0.0/16',
  '198.18.0.0/15', // benchmarking
  '198.51.100.0/24', // TEST-NET-2
  '203.0.113.0/24', // TEST-NET-3
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, includes broadcast 255.255.255.255
];

const REFUSED_V6 = [
  '::/96', // unspecified, loopback and the deprecated IPv4-compatible form
  '100::/64', // discard-only
  '2001:db8::/32', // documentation
  '3fff::/20', // documentation (RFC 9637)
  'fc00::/7', // unique local
  'fe80::/10', // link-local
  'fec0::/10', // old site-local
  'ff00::/8', // multicast
];

const refused = blockListOf([...REFUSED_V4, ...REFUSED_V6]);

function blockListOf(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [network = '', bits = ''] = cidr.split('/');
    const family = isIP(network);
    const prefix = Number(bits);
    const max = family === 4 ? 32 : 128;
    if (family === 0 || !/^[0-9]{1,3}$/.test(bits) || prefix > max) {
      throw new Error(`bad CIDR in exit policy: ${cidr}`);
    }
    list.addSubnet(network, prefix, family === 4 ? 'ipv4' : 'ipv6');
  }
  return list;
}

/**
 * IPv6 forms that carry an IPv4 address the packets really go to: mapped (::ffff:a.b.c.d),
 * NAT64 (64:ff9b::/96) and 6to4 (2002:AABB:CCDD::/48). Such an address is judged by the
 * IPv4 address inside it, so ::ffff:127.0.0.1 is loopback.
 */
function embeddedV4(address: string): string | null {
  const words = ipv6Words(address);
  if (!words) return null;
  const [w0 = 0, w1 = 0, w2 = 0, , , w5 = 0, w6 = 0, w7 = 0] = words;
  const v4 = (hi: number, lo: number): string => `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  const zeros = (from: number, to: number): boolean => words.slice(from, to).every((w) => w === 0);
  if (zeros(0, 5) && w5 === 0xffff) return v4(w6, w7);
  if (w0 === 0x64 && w1 === 0xff9b && zeros(2, 6)) return v4(w6, w7);
  if (w0 === 0x2002) return v4(w1, w2);
  return null;
}

/** The eight 16-bit words of a valid IPv6 address (with '::' and a dotted tail expanded). */
function ipv6Words(address: string): number[] | null {
  let text = address.toLowerCase();
  const dotted = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    // The regex matched all four groups, so the defaults never apply.
    const [a = 0, b = 0, c = 0, d = 0] = dotted.slice(2).map(Number);
    const hex = (hi: number, lo: number): string => ((hi << 8) | lo).toString(16);
    text = `${dotted[1]}${hex(a, b)}:${hex(c, d)}`;
  }
  const [head = '', tail] = text.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const fill = tail === undefined ? 0 : 8 - left.length - right.length;
  const words = [...left, ...Array<string>(fill).fill('0'), ...right].map((w) => parseInt(w, 16));
  return words.length === 8 && words.every((w) => w >= 0 && w <= 0xffff) ? words : null;
}

function portAllowed(port: number, rules: readonly PortRule[]): boolean {
  return rules.some((rule) =>
    typeof rule === 'number' ? rule === port : port >= rule[0] && port <= rule[1],
  );
}

/** Compiled once per policy: the allow-list is a BlockList too. */
export class ExitChecker {
  private readonly allowed: BlockList;

  constructor(
    readonly policy: ExitPolicy = DEFAULT_EXIT_POLICY,
    private readonly resolve: Resolver = systemResolver,
  ) {
    this.allowed = blockListOf(policy.allowCidrs);
  }

  /** Whether a tunnel may reach this literal address (no DNS). */
  addressAllowed(address: string): boolean {
    if (this.policy.allowPrivate) return true;
    const family = isIP(address);
    // A zone id (fe80::1%eth0) names a local interface: never public.
    if (family === 0 || address.includes('%')) return false;
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (this.allowed.check(address, type)) return true;
    const inner = family === 6 ? embeddedV4(address) : null;
    if (inner !== null) return this.addressAllowed(inner);
    return !refused.check(address, type);
  }

  async check(host: string, port: number): Promise<ExitDecision> {
    if (!portAllowed(port, this.policy.ports)) return { ok: false, refusal: 'port not allowed' };
    let addresses: readonly ResolvedAddress[];
    if (isIP(host) !== 0) {
      addresses = [{ address: host, family: isIP(host) }];
    } else {
      try {
        addresses = await this.resolve(host);
      } catch {
        return { ok: false, refusal: 'name not resolved' };
      }
    }
    const first = addresses[0];
    if (!first) return { ok: false, refusal: 'name not resolved' };
    // Every address must pass: a name with one public and one private address could be
    // answered either way by the next lookup (DNS rebinding).
    if (!addresses.every((a) => this.addressAllowed(a.address))) {
      return { ok: false, refusal: 'address not allowed' };
    }
    return { ok: true, address: first.address, family: isIP(first.address) === 6 ? 6 : 4 };
  }
}

/** One-shot form of ExitChecker.check. */
export function checkExit(
  host: string,
  port: number,
  policy: ExitPolicy = DEFAULT_EXIT_POLICY,
  resolve: Resolver = systemResolver,
): Promise<ExitDecision> {
  return new ExitChecker(policy, resolve).check(host, port);
}
