// @ts-check
/**
 * Validation of what the relay answers at /v1/status and /v1/descriptor. The page trusts its
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
 *   served: number,
 *   unpaidToUs: number,
 *   weOwe: number,
 *   owedSync: number,
 *   conflicts: number,
 * }} Peer
 * @typedef {{
 *   upstream: Upstream,
 *   clients: number,
 *   hashrate: number,
 *   shares: { accepted: number, rejected: Record<string, number> },
 *   forwarded: { accepted: number, rejected: number, lastRejectReason: string | null },
 *   blocks: { found: number, accepted: number, rejected: number },
 *   jobs: number,
 *   qos: QosClass[] | null,
 *   tickets: Tickets | null,
 *   peers: Peer[] | null,
 * }} Status
 * @typedef {{ keyId: string, notBeforeDay: number, notAfterDay: number }} TicketKey
 * @typedef {{
 *   identity: string,
 *   algorithm: string,
 *   issuedAt: number,
 *   price: number,
 *   windowSeconds: number,
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
    shares: {
      accepted: count(shares.accepted, 'shares.accepted'),
      rejected: counts(shares.rejected, 'shares.rejected'),
    },
    forwarded: {
      accepted: count(forwarded.accepted, 'forwarded.accepted'),
      rejected: count(forwarded.rejected, 'forwarded.rejected'),
      lastRejectReason:
        forwarded.lastRejectReason === null
          ? null
          : string(forwarded.lastRejectReason, 'forwarded.lastRejectReason'),
    },
    blocks: {
      found: count(blocks.found, 'blocks.found'),
      accepted: count(blocks.accepted, 'blocks.accepted'),
      rejected: count(blocks.rejected, 'blocks.rejected'),
    },
    jobs: count(root.jobs, 'jobs'),
    qos: root.qos === undefined ? null : parseQos(root.qos),
    tickets: root.tickets === undefined ? null : parseTickets(root.tickets),
    peers: root.peers === undefined || root.peers === null ? null : parsePeers(root.peers),
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
    return {
      name: string(peer.name, `peers[${i}].name`, MAX_LABEL_CHARS),
      up: peer.up,
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
  return {
    identity: hex(root.identity, 'identity', 32),
    algorithm: string(root.algorithm, 'algorithm', MAX_LABEL_CHARS),
    issuedAt: count(root.issuedAt, 'issuedAt'),
    price: count(tickets.price, 'tickets.price'),
    windowSeconds: count(tickets.windowSeconds, 'tickets.windowSeconds'),
    keys,
  };
}
