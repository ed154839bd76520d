// @ts-check
/**
 * The page's tables: ticket keys, blocks found and backup relays. Rows are built with
 * createElement and textContent only; each table's container also carries its key facts as
 * a `data-*` attribute (JSON) for tests.
 */

import {
  formatCount,
  formatDay,
  formatDuration,
  formatTimestamp,
  shortHex,
  utcDay,
} from './format.js';
import { reasonsText, setField } from './glance.js';

/** @typedef {import('./status.js').Descriptor} Descriptor */
/** @typedef {import('./status.js').TicketKey} TicketKey */
/** @typedef {import('./status.js').FoundBlock} FoundBlock */
/** @typedef {import('./status.js').Peer} Peer */

/**
 * A table cell with text, optionally a class and a tooltip.
 * @param {string} text
 * @param {{ className?: string, title?: string }} [options]
 */
function cell(text, options = {}) {
  const td = document.createElement('td');
  td.textContent = text;
  if (options.className) td.className = options.className;
  if (options.title) td.title = options.title;
  return td;
}

/**
 * A cell holding a coloured badge (the colours come from `data-state` in dashboard.css).
 * @param {string} text
 * @param {string} state
 * @param {string} [title]
 */
function badgeCell(text, state, title) {
  const td = document.createElement('td');
  const badge = document.createElement('span');
  badge.className = 'badge';
  badge.dataset.state = state;
  badge.textContent = text;
  if (title) badge.title = title;
  td.append(badge);
  return td;
}

/**
 * One row spanning the table, for "nothing here yet".
 * @param {number} columns
 * @param {string} text
 */
function emptyRow(columns, text) {
  const row = document.createElement('tr');
  const td = cell(text, { className: 'muted' });
  td.colSpan = columns;
  row.append(td);
  return row;
}

/**
 * What a key is doing today: issuing, not yet, still redeeming yesterday's tickets (a ticket
 * is redeemable on its issue day and the next), or done.
 * @param {TicketKey} key
 * @param {number} today
 */
function keyState(key, today) {
  if (today < key.notBeforeDay) return 'upcoming';
  if (today <= key.notAfterDay) return 'issuing';
  if (today === key.notAfterDay + 1) return 'redeeming';
  return 'expired';
}

/**
 * @param {HTMLElement} body the ticket keys table body
 * @param {Descriptor} descriptor
 * @param {number} now unix seconds
 */
export function renderKeys(body, descriptor, now) {
  const today = utcDay(now);
  const rows = descriptor.keys.map((key) => {
    const row = document.createElement('tr');
    const validity =
      key.notBeforeDay === key.notAfterDay
        ? formatDay(key.notBeforeDay)
        : `${formatDay(key.notBeforeDay)} – ${formatDay(key.notAfterDay)}`;
    const state = keyState(key, today);
    row.append(cell(key.keyId, { className: 'mono' }), cell(validity), badgeCell(state, state));
    return row;
  });
  body.replaceChildren(...(rows.length > 0 ? rows : [emptyRow(3, 'no ticket keys')]));
}

/** Badge colours of the block results: a stale block is not an error. */
const BLOCK_STATES = /** @type {Record<string, string>} */ ({
  accepted: 'live',
  stale: 'idle',
  rejected: 'down',
  unsubmitted: 'connecting',
});

const BLOCK_TITLES = /** @type {Record<string, string>} */ ({
  accepted: 'the pool or node took it',
  stale: 'too late: the height was already solved (or the node had it already)',
  rejected: 'the pool or node refused it: look at the reason',
  unsubmitted: 'met the network target but not the upstream difficulty, so it was not sent',
});

/** Rows of the blocks-found list shown (the relay keeps a few more, see /v1/status). */
export const SHOWN_BLOCKS = 10;

/**
 * The blocks-found list, newest first; a run of stale blocks at one height is one row.
 * @param {HTMLElement} body the blocks table body
 * @param {FoundBlock[]} blocks
 */
export function renderBlocks(body, blocks) {
  const rows = blocks.slice(0, SHOWN_BLOCKS).map((block) => {
    const row = document.createElement('tr');
    const result = block.count > 1 ? `${block.result} ×${formatCount(block.count)}` : block.result;
    row.append(
      cell(formatTimestamp(block.at).replace(' UTC', '')),
      cell(block.height === null ? 'unknown' : formatCount(block.height)),
      cell(shortHex(block.hash), { className: 'mono', title: block.hash }),
      badgeCell(result, BLOCK_STATES[block.result] ?? 'idle', BLOCK_TITLES[block.result]),
      cell(block.reason ?? '', { className: 'muted' }),
    );
    return row;
  });
  body.replaceChildren(...(rows.length > 0 ? rows : [emptyRow(5, 'none found yet')]));
}

/** Why every ticket of a peer is refused now, as an operator reads it (docs/operating.md). */
const REFUSING = /** @type {Record<string, string>} */ ({
  notAccepted: 'not accepted here (acceptTickets = false)',
  unpaidLimit: 'its unpaid bills reached maxUnpaid',
  peerRefused: 'it refuses our reservations',
  offline: 'unreachable, and acceptWhenOffline = false',
});

/**
 * The backup relays card: hidden without peers; one row per peer with its link, whether its
 * tickets are accepted here (and if not why, with the code clients get), and the numbers an
 * operator acts on.
 * @param {HTMLElement} card
 * @param {HTMLElement} body the peers table body
 * @param {Peer[] | null} peers
 * @param {Record<string, number> | null} apiRefused peer API requests refused unauthenticated
 * @param {number} now unix seconds
 */
export function renderPeers(card, body, peers, apiRefused, now) {
  card.hidden = peers === null || peers.length === 0;
  if (!peers) return;
  card.dataset.peers = JSON.stringify(
    peers.map((p) => ({
      name: p.name,
      up: p.up,
      accepting: p.acceptTickets,
      refusing: p.refusing?.reason ?? null,
      conflicts: p.conflicts,
    })),
  );
  body.replaceChildren(
    ...peers.map((peer) => {
      const row = document.createElement('tr');
      const link = peer.up === null ? 'unknown' : peer.up ? 'up' : 'down';
      const linkState = peer.up === null ? 'connecting' : peer.up ? 'live' : 'down';
      const tickets = peer.refusing
        ? badgeCell(
            `refusing (${peer.refusing.code})`,
            'down',
            REFUSING[peer.refusing.reason] ?? peer.refusing.reason,
          )
        : badgeCell('accepting', 'live');
      if (peer.refusing) {
        const why = document.createElement('span');
        why.className = 'muted why';
        why.textContent = REFUSING[peer.refusing.reason] ?? peer.refusing.reason;
        tickets.append(why);
      }
      const refused = Object.values(peer.refused).reduce((sum, n) => sum + n, 0);
      const contact =
        peer.lastContactAt === null
          ? 'never'
          : `${formatDuration(Math.max(0, now - peer.lastContactAt))} ago`;
      row.append(
        cell(peer.name),
        badgeCell(link, linkState, peer.lastError ?? undefined),
        tickets,
        cell(formatCount(refused), { title: reasonsText(peer.refused) || 'none' }),
        ...[peer.served, peer.unpaidToUs, peer.weOwe, peer.owedSync, peer.conflicts].map((n) =>
          cell(formatCount(n)),
        ),
        cell(contact, peer.lastError ? { title: peer.lastError } : {}),
      );
      return row;
    }),
  );
  const refusedApi = apiRefused ? Object.values(apiRefused).reduce((s, n) => s + n, 0) : 0;
  setField(
    card,
    'peerApi.refused',
    apiRefused
      ? `Peer API requests refused before they authenticated: ${formatCount(refusedApi)} ${reasonsText(apiRefused)}`.trim()
      : '',
  );
}
