import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

/**
 * Where a priority tunnel may lead (docs/design.md §5.4). The relay opens TCP connections on
 * behalf of anonymous clients, so without a policy it would be a door into its own host and
 * network: the loopback admin port, the cloud metadata address, the LAN. The check runs after
 * DNS resolution and the caller connects to the address returned here, never to the name
 * again, so a name cannot pass as public and then resolve to 127.0.0.1 (DNS rebinding). The
 * refusal says which rule failed for the relay's own counts and logs; the tunnel sends every
 * client the same answer (src/qos/tunnel.ts).
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
  '::/96', // unspecified and loopback (the rest of ::/96 carries IPv4: CARRIERS)
  '100::/64', // discard-only
  '2001:db8::/32', // documentation
  '3fff::/20', // documentation (RFC 9637)
  'fc00::/7', // unique local
  'fe80::/10', // link-local
  'fec0::/10', // old site-local
  'ff00::/8', // multicast
];

const refusedV4 = blockListOf(REFUSED_V4);
const refusedV6 = blockListOf(REFUSED_V6);

interface Cidr {
  family: 4 | 6;
  network: string;
  prefix: number;
}

function parseCidr(cidr: string): Cidr {
  const [network = '', bits = ''] = cidr.split('/');
  const family = isIP(network);
  const prefix = Number(bits);
  if (family === 0 || !/^[0-9]{1,3}$/.test(bits) || prefix > (family === 4 ? 32 : 128)) {
    throw new Error(`bad CIDR in exit policy: ${cidr}`);
  }
  return { family: family === 4 ? 4 : 6, network, prefix };
}

function blockListOf(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const { family, network, prefix } of cidrs.map(parseCidr)) {
    list.addSubnet(network, prefix, family === 4 ? 'ipv4' : 'ipv6');
  }
  return list;
}

const V4_MASK = 0xffffffffn;

/**
 * IPv6 ranges whose addresses carry IPv4 addresses that packets are translated or tunnelled
 * to, by a translator or relay the relay does not control: a tunnel to one is a tunnel to its
 * IPv4 address, and the IPv6 form must not be a way round the IPv4 checks. They are refused
 * unless an `allowCidrs` entry covers the address, and even then only if every IPv4 address
 * inside passes the IPv4 checks. IPv4-mapped addresses (::ffff:0:0/96) are not here: the
 * socket speaks IPv4 to them, so they are judged as the IPv4 address itself.
 *
 * `embedded` gets the address and the prefix length of the longest allow entry covering it,
 * which for the local-use NAT64 prefix says where the IPv4 address sits (RFC 6052 §2.2: the
 * operator allow-lists its translator's prefix).
 */
interface Carrier {
  within: (value: bigint) => boolean;
  embedded: (value: bigint, allowedPrefix: number) => bigint[];
}

const CARRIERS: readonly Carrier[] = [
  {
    // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052)
    within: (v) => v >> 32n === 0x64ff9bn << 64n,
    embedded: (v) => [v & V4_MASK],
  },
  {
    // NAT64 local-use prefix 64:ff9b:1::/48 (RFC 8215)
    within: (v) => v >> 80n === 0x64ff9b0001n,
    embedded: (v, allowedPrefix) => [rfc6052V4(v, translatorPrefix(allowedPrefix))],
  },
  {
    // IPv4-translated (SIIT) ::ffff:0:0:0/96 (RFC 2765)
    within: (v) => v >> 32n === 0xffff0000n,
    embedded: (v) => [v & V4_MASK],
  },
  {
    // IPv4-compatible ::/96 (RFC 4291, deprecated); :: and ::1 are the unspecified and
    // loopback addresses, judged as themselves.
    within: (v) => v >> 32n === 0n && v > 1n,
    embedded: (v) => [v & V4_MASK],
  },
  {
    // 6to4 2002::/16 (RFC 3056)
    within: (v) => v >> 112n === 0x2002n,
    embedded: (v) => [(v >> 80n) & V4_MASK],
  },
  {
    // Teredo 2001::/32 (RFC 4380): the server's IPv4 address in bits 32–63, the client's
    // (its NAT's public address) in the last 32, inverted.
    within: (v) => v >> 96n === 0x20010000n,
    embedded: (v) => [(v >> 64n) & V4_MASK, (v & V4_MASK) ^ V4_MASK],
  },
];

/** The RFC 6052 layouts a prefix inside 64:ff9b:1::/48 can have: /48, /56, /64 or /96. */
function translatorPrefix(allowedPrefix: number): 48 | 56 | 64 | 96 {
  if (allowedPrefix >= 96) return 96;
  if (allowedPrefix >= 64) return 64;
  if (allowedPrefix >= 56) return 56;
  return 48;
}

/**
 * The IPv4 address inside an IPv4-embedded IPv6 address with a translator prefix of `prefix`
 * bits (RFC 6052 §2.2): right after the prefix, skipping bits 64–71 (the "u" octet).
 */
function rfc6052V4(value: bigint, prefix: 48 | 56 | 64 | 96): bigint {
  if (prefix === 96) return value & V4_MASK;
  const before = BigInt(64 - prefix); // IPv4 bits before the u octet
  const after = 32n - before;
  const high = (value >> 64n) & ((1n << before) - 1n);
  const low = (value >> (56n - after)) & ((1n << after) - 1n);
  return (high << after) | low;
}

function v4Text(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
}

/** A valid IPv6 address as a 128-bit number. */
function ipv6Value(address: string): bigint | null {
  const words = ipv6Words(address);
  return words === null ? null : words.reduce((value, word) => (value << 16n) | BigInt(word), 0n);
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

/**
 * Compiled once per policy: the allow list is a BlockList per family. Kept apart because one
 * BlockList matches IPv4 addresses against IPv4-mapped IPv6 rules: an entry "::/0" would
 * allow every IPv4 address. Here IPv4 addresses, mapped ones included, are allowed by IPv4
 * entries only.
 */
export class ExitChecker {
  private readonly allowedV4: BlockList;
  private readonly allowedV6: BlockList;
  /** The IPv6 allow entries as numbers, for the carriers' longest match. */
  private readonly allowedV6Prefixes: readonly { network: bigint; prefix: number }[];

  constructor(
    readonly policy: ExitPolicy = DEFAULT_EXIT_POLICY,
    private readonly resolve: Resolver = systemResolver,
  ) {
    const cidrs = policy.allowCidrs.map((cidr) => ({ cidr, ...parseCidr(cidr) }));
    this.allowedV4 = blockListOf(cidrs.filter((c) => c.family === 4).map((c) => c.cidr));
    const v6 = cidrs.filter((c) => c.family === 6);
    this.allowedV6 = blockListOf(v6.map((c) => c.cidr));
    this.allowedV6Prefixes = v6.map(({ network, prefix }) => ({
      network: ipv6Value(network) ?? 0n,
      prefix,
    }));
  }

  /** Whether a tunnel may reach this literal address (no DNS). */
  addressAllowed(address: string): boolean {
    if (this.policy.allowPrivate) return true;
    const family = isIP(address);
    // A zone id (fe80::1%eth0) names a local interface: never public.
    if (family === 0 || address.includes('%')) return false;
    if (family === 4) return this.v4Allowed(address);
    const value = ipv6Value(address);
    if (value === null) return false;
    // IPv4-mapped: the connection is IPv4 to the address inside.
    if (value >> 32n === 0xffffn) return this.v4Allowed(v4Text(value & V4_MASK));
    const carrier = CARRIERS.find((c) => c.within(value));
    if (carrier !== undefined) {
      const allowedPrefix = this.allowingPrefix(value);
      if (allowedPrefix === undefined) return false;
      return carrier.embedded(value, allowedPrefix).every((v4) => this.v4Allowed(v4Text(v4)));
    }
    return this.allowedV6.check(address, 'ipv6') || !refusedV6.check(address, 'ipv6');
  }

  private v4Allowed(address: string): boolean {
    return this.allowedV4.check(address, 'ipv4') || !refusedV4.check(address, 'ipv4');
  }

  /** The prefix length of the longest IPv6 allow entry covering `value`, if any. */
  private allowingPrefix(value: bigint): number | undefined {
    let longest: number | undefined;
    for (const { network, prefix } of this.allowedV6Prefixes) {
      const shift = BigInt(128 - prefix);
      if (value >> shift === network >> shift && prefix > (longest ?? -1)) longest = prefix;
    }
    return longest;
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
