// @ts-check
/**
 * Validation of what the relay answers at /v1/status, /v1/status/history and /v1/descriptor. The page trusts its
 * relay, but a proxy, an older or newer relay, or a bug can still hand it something else:
 * each reader below either returns the shape the dashboard draws or throws, naming the
 * field, and the page shows that message instead of drawing garbage.
 */

/**
 * @typedef {{ state: string, url: string | null, difficulty: number | null, since: number }} Upstream
 * @typedef {{ name: string, rateBps: number }} QosClass
 * @typedef {{ issued: number, redeemed: number, refused: Record<string, number> }} Tickets
 * @typedef {{
 *   name: string,
 *   up: boolean | null,
 *   acceptTickets: boolean,
 *   refusing: { reason: string, code: number } | null,
 *   refused: Record<string, number>,
 *   lastContactAt: number | null,
 *   lastError: string | null,
 *   served: number,
 *   unpaidToUs: number,
 *   weOwe: number,
 *   owedSync: number,
 *   conflicts: number,
 * }} Peer
 * @typedef {{
 *   at: number,
 *   height: number | null,
 *   hash: string,
 *   result: string,
 *   reason: string | null,
 *   count: number,
 * }} FoundBlock
 * @typedef {{ overloaded: Record<string, number>, circuits: Record<string, number> }} Load
 * @typedef {{ clients: number, dropped: Record<string, number> }} Stratum
 * @typedef {{ version: string, startedAt: number, uptimeSeconds: number }} RelayInfo
 * @typedef {{ streams: Record<string, number>, opened: number }} Tunnel
 * @typedef {{
 *   upstream: Upstream,
 *   clients: number,
 *   hashrate: number,
 *   hashrateWindowSeconds: number,
 *   shares: { accepted: number, rejected: Record<string, number> },
 *   forwarded: {
 *     accepted: number,
 *     rejected: number,
 *     stale: number,
 *     lastRejectReason: string | null,
 *   },
 *   blocks: {
 *     found: number,
 *     accepted: number,
 *     rejected: number,
 *     stale: number,
 *     recent: FoundBlock[],
 *   },
 *   jobs: number,
 *   qos: QosClass[] | null,
 *   tickets: Tickets | null,
 *   load: Load | null,
 *   stratum: Stratum | null,
 *   relay: RelayInfo | null,
 *   tunnel: Tunnel | null,
 *   peers: Peer[] | null,
 *   peerApiRefused: Record<string, number> | null,
 * }} Status
 * @typedef {{
 *   intervalSeconds: number,
 *   capacity: number,
 *   times: number[],
 *   series: Record<string, (number | null)[]>,
 * }} History
 * @typedef {{ keyId: string, notBeforeDay: number, notAfterDay: number }} TicketKey
 * @typedef {{
 *   identity: string,
 *   algorithm: string,
 *   issuedAt: number,
 *   price: number,
 *   windowSeconds: number,
 *   onion: string | null,
 *   keys: TicketKey[],
 * }} Descriptor
 */

export class InvalidData extends Error {
  name = 'InvalidData';
}

/** Labels (reasons, class names) become series: bound their number and length. */
const MAX_LABELS = 32;
const MAX_LABEL_CHARS = 64;
const UPSTREAM_STATES = ['connecting', 'live', 'down'];
const BLOCK_RESULTS = ['accepted', 'stale', 'rejected', 'unsubmitted'];
/** Blocks-found rows, series and samples a page will draw at most. */
const MAX_BLOCKS = 100;
const MAX_SERIES = 256;
const MAX_SAMPLES = 1_000_000;

/** @param {unknown} value @param {string} path @returns {Record<string, unknown>} */
function object(value, path) {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidData(`${path}: expected an object`);
  }
  return /** @type {Record<string, unknown>} */ (value);
}

/** @param {unknown} value @param {string} path @param {number} max @returns {unknown[]} */
function array(value, path, max) {
  if (!Array.isArray(value)) throw new InvalidData(`${path}: expected an array`);
  if (value.length > max) throw new InvalidData(`${path}: more than ${max} entries`);
  return value;
}

/** @param {unknown} value @param {string} path @returns {number} */
function number(value, path) {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new InvalidData(`${path}: expected a number`);
  }
  return value;
}

/** @param {unknown} value @param {string} path @returns {number} */
function count(value, path) {
  const n = number(value, path);
  if (n < 0) throw new InvalidData(`${path}: expected a count ≥ 0`);
  return n;
}

/** @param {unknown} value @param {string} path @param {number} [maxChars] @returns {string} */
function string(value, path, maxChars = 512) {
  if (typeof value !== 'string') throw new InvalidData(`${path}: expected a string`);
  if (value.length > maxChars) throw new InvalidData(`${path}: longer than ${maxChars}`);
  return value;
}

/** @param {unknown} value @param {string} path @returns {string | null} */
function optionalString(value, path) {
  return value === null ? null : string(value, path);
}

/** @param {unknown} value @param {string} path @returns {number | null} */
function optionalNumber(value, path) {
  return value === null ? null : number(value, path);
}

/** @param {unknown} value @param {string} path @param {number} bytes @returns {string} */
function hex(value, path, bytes) {
  const text = string(value, path);
  if (!new RegExp(`^[0-9a-f]{${bytes * 2}}$`).test(text)) {
    throw new InvalidData(`${path}: expected ${bytes} bytes of hex`);
  }
  return text;
}

/** @param {unknown} value @param {string} path @returns {Record<string, number>} */
function counts(value, path) {
  const entries = Object.entries(object(value, path));
  if (entries.length > MAX_LABELS) throw new InvalidData(`${path}: too many entries`);
  return Object.fromEntries(
    entries.map(([key, n]) => [string(key, path, MAX_LABEL_CHARS), count(n, `${path}.${key}`)]),
  );
}

/** @param {unknown} json @returns {Status} */
export function parseStatus(json) {
  const root = object(json, 'status');
  const upstream = object(root.upstream, 'upstream');
  const state = string(upstream.state, 'upstream.state');
  if (!UPSTREAM_STATES.includes(state)) throw new InvalidData('upstream.state: unknown state');
  const hashrate = object(root.hashrate, 'hashrate');
  const shares = object(root.shares, 'shares');
  const forwarded = object(root.forwarded, 'forwarded');
  const blocks = object(root.blocks, 'blocks');
  const present = (/** @type {unknown} */ value) => value !== undefined && value !== null;
  return {
    upstream: {
      state,
      url: upstream.url === null ? null : string(upstream.url, 'upstream.url'),
      difficulty:
        upstream.difficulty === null ? null : number(upstream.difficulty, 'upstream.difficulty'),
      since: number(upstream.since, 'upstream.since'),
    },
    clients: count(root.clients, 'clients'),
    hashrate: count(hashrate.hps, 'hashrate.hps'),
    hashrateWindowSeconds: count(hashrate.windowSeconds, 'hashrate.windowSeconds'),
    shares: {
      accepted: count(shares.accepted, 'shares.accepted'),
      rejected: counts(shares.rejected, 'shares.rejected'),
    },
    forwarded: {
      accepted: count(forwarded.accepted, 'forwarded.accepted'),
      rejected: count(forwarded.rejected, 'forwarded.rejected'),
      stale: count(forwarded.stale, 'forwarded.stale'),
      lastRejectReason: optionalString(forwarded.lastRejectReason, 'forwarded.lastRejectReason'),
    },
    blocks: {
      found: count(blocks.found, 'blocks.found'),
      accepted: count(blocks.accepted, 'blocks.accepted'),
      rejected: count(blocks.rejected, 'blocks.rejected'),
      stale: count(blocks.stale, 'blocks.stale'),
      recent: parseBlocks(blocks.recent),
    },
    jobs: count(root.jobs, 'jobs'),
    qos: present(root.qos) ? parseQos(root.qos) : null,
    tickets: present(root.tickets) ? parseTickets(root.tickets) : null,
    load: present(root.load) ? parseLoad(root.load) : null,
    stratum: present(root.stratum) ? parseStratum(root.stratum) : null,
    relay: present(root.relay) ? parseRelayInfo(root.relay) : null,
    tunnel: present(root.tunnel) ? parseTunnel(root.tunnel) : null,
    peers: present(root.peers) ? parsePeers(root.peers) : null,
    peerApiRefused: present(root.peerApi)
      ? counts(object(root.peerApi, 'peerApi').refused, 'peerApi.refused')
      : null,
  };
}

/** @param {unknown} value @returns {FoundBlock[]} */
function parseBlocks(value) {
  return array(value, 'blocks.recent', MAX_BLOCKS).map((entry, i) => {
    const path = `blocks.recent[${i}]`;
    const block = object(entry, path);
    const result = string(block.result, `${path}.result`);
    if (!BLOCK_RESULTS.includes(result)) throw new InvalidData(`${path}.result: unknown result`);
    return {
      at: number(block.at, `${path}.at`),
      height: block.height === null ? null : count(block.height, `${path}.height`),
      hash: string(block.hash, `${path}.hash`, 128),
      result,
      reason: optionalString(block.reason, `${path}.reason`),
      count: count(block.count, `${path}.count`),
    };
  });
}

/** @param {unknown} value @returns {Load} */
function parseLoad(value) {
  const load = object(value, 'load');
  return {
    overloaded: counts(load.overloaded, 'load.overloaded'),
    circuits: counts(load.circuits, 'load.circuits'),
  };
}

/** @param {unknown} value @returns {Stratum} */
function parseStratum(value) {
  const stratum = object(value, 'stratum');
  return {
    clients: count(stratum.clients, 'stratum.clients'),
    dropped: counts(stratum.dropped, 'stratum.dropped'),
  };
}

/** @param {unknown} value @returns {RelayInfo} */
function parseRelayInfo(value) {
  const relay = object(value, 'relay');
  return {
    version: string(relay.version, 'relay.version', MAX_LABEL_CHARS),
    startedAt: number(relay.startedAt, 'relay.startedAt'),
    uptimeSeconds: count(relay.uptimeSeconds, 'relay.uptimeSeconds'),
  };
}

/** @param {unknown} value @returns {Tunnel} */
function parseTunnel(value) {
  const tunnel = object(value, 'tunnel');
  return {
    streams: counts(tunnel.streams, 'tunnel.streams'),
    opened: count(tunnel.opened, 'tunnel.opened'),
  };
}

/**
 * The relay's samples: times ascending, every series as long as the times.
 * @param {unknown} json
 * @returns {History}
 */
export function parseHistory(json) {
  const root = object(json, 'history');
  const times = array(root.times, 'history.times', MAX_SAMPLES).map((t, i) =>
    number(t, `history.times[${i}]`),
  );
  for (let i = 1; i < times.length; i++) {
    if ((times[i] ?? 0) < (times[i - 1] ?? 0)) {
      throw new InvalidData(`history.times[${i}]: earlier than the sample before`);
    }
  }
  const entries = Object.entries(object(root.series, 'history.series'));
  if (entries.length > MAX_SERIES) throw new InvalidData('history.series: too many series');
  /** @type {Record<string, (number | null)[]>} */
  const series = {};
  for (const [name, values] of entries) {
    const path = `history.series.${string(name, 'history.series', 2 * MAX_LABEL_CHARS)}`;
    const list = array(values, path, MAX_SAMPLES);
    if (list.length !== times.length) throw new InvalidData(`${path}: not one value per time`);
    series[name] = list.map((v, i) => (v === null ? null : number(v, `${path}[${i}]`)));
  }
  return {
    intervalSeconds: number(root.intervalSeconds, 'history.intervalSeconds'),
    capacity: count(root.capacity, 'history.capacity'),
    times,
    series,
  };
}

/** Backup relays (Protocol 2): reachability and the balances an operator watches. */
/** @param {unknown} value @returns {Peer[]} */
function parsePeers(value) {
  return array(value, 'peers', MAX_LABELS).map((entry, i) => {
    const peer = object(entry, `peers[${i}]`);
    const balance = object(peer.balance, `peers[${i}].balance`);
    if (peer.up !== null && typeof peer.up !== 'boolean') {
      throw new InvalidData(`peers[${i}].up: expected true, false or null`);
    }
    if (typeof peer.acceptTickets !== 'boolean') {
      throw new InvalidData(`peers[${i}].acceptTickets: expected true or false`);
    }
    const refusing = peer.refusing === null ? null : object(peer.refusing, `peers[${i}].refusing`);
    return {
      name: string(peer.name, `peers[${i}].name`, MAX_LABEL_CHARS),
      up: peer.up,
      acceptTickets: peer.acceptTickets,
      refusing: refusing && {
        reason: string(refusing.reason, `peers[${i}].refusing.reason`, MAX_LABEL_CHARS),
        code: count(refusing.code, `peers[${i}].refusing.code`),
      },
      refused: counts(peer.refused, `peers[${i}].refused`),
      lastContactAt: optionalNumber(peer.lastContactAt, `peers[${i}].lastContactAt`),
      lastError: optionalString(peer.lastError, `peers[${i}].lastError`),
      served: count(balance.served, `peers[${i}].balance.served`),
      unpaidToUs: count(balance.unpaidToUs, `peers[${i}].balance.unpaidToUs`),
      weOwe: count(balance.weOwe, `peers[${i}].balance.weOwe`),
      owedSync: count(balance.owedSync, `peers[${i}].balance.owedSync`),
      conflicts: count(balance.conflicts, `peers[${i}].balance.conflicts`),
    };
  });
}

/** @param {unknown} value @returns {QosClass[]} */
function parseQos(value) {
  const classes = array(object(value, 'qos').classes, 'qos.classes', MAX_LABELS);
  return classes.map((entry, i) => {
    const c = object(entry, `qos.classes[${i}]`);
    return {
      name: string(c.name, `qos.classes[${i}].name`, MAX_LABEL_CHARS),
      rateBps: count(c.rateBps, `qos.classes[${i}].rateBps`),
    };
  });
}

/** @param {unknown} value @returns {Tickets} */
function parseTickets(value) {
  const tickets = object(value, 'tickets');
  return {
    issued: count(tickets.issued, 'tickets.issued'),
    redeemed: count(tickets.redeemed, 'tickets.redeemed'),
    refused: counts(tickets.refused, 'tickets.refused'),
  };
}

/**
 * The fields the page shows. The signature is not checked here: the page is served by the
 * relay it describes, so a signature it verified would prove nothing more to its operator.
 * @param {unknown} json
 * @returns {Descriptor}
 */
export function parseDescriptor(json) {
  const root = object(json, 'descriptor');
  const tickets = object(root.tickets, 'tickets');
  const keys = array(tickets.keys, 'tickets.keys', 64).map((entry, i) => {
    const key = object(entry, `tickets.keys[${i}]`);
    return {
      keyId: hex(key.keyId, `tickets.keys[${i}].keyId`, 8),
      notBeforeDay: count(key.notBeforeDay, `tickets.keys[${i}].notBeforeDay`),
      notAfterDay: count(key.notAfterDay, `tickets.keys[${i}].notAfterDay`),
    };
  });
  const endpoints = root.endpoints === undefined ? {} : object(root.endpoints, 'endpoints');
  return {
    identity: hex(root.identity, 'identity', 32),
    onion:
      endpoints.onion === undefined ? null : onionHost(string(endpoints.onion, 'endpoints.onion')),
    algorithm: string(root.algorithm, 'algorithm', MAX_LABEL_CHARS),
    issuedAt: count(root.issuedAt, 'issuedAt'),
    price: count(tickets.price, 'tickets.price'),
    windowSeconds: count(tickets.windowSeconds, 'tickets.windowSeconds'),
    keys,
  };
}

/**
 * The host of the onion endpoint ("ws://abc….onion/v1/circuit" → "abc….onion"), the address an
 * operator hands out.
 * @param {string} url
 */
function onionHost(url) {
  const host = /^(?:wss?|https?):\/\/([a-z2-7]{56}\.onion)(?::\d{1,5})?(?:\/|$)/.exec(url)?.[1];
  if (host === undefined) throw new InvalidData('endpoints.onion: not an onion address');
  return host;
}
