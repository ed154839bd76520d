// @ts-check
/**
 * The "at a glance" cards: upstream state, relay identity and terms, ticket keys. Fields are
 * elements marked `data-field` in index.html; text goes in with textContent only, never as
 * markup. The card container also carries the key facts as attributes for tests.
 */

import {
  formatCount,
  formatDay,
  formatDuration,
  formatSi,
  formatTimestamp,
  utcDay,
} from './format.js';

/** @typedef {import('./status.js').Status} Status */
/** @typedef {import('./status.js').Descriptor} Descriptor */
/** @typedef {import('./status.js').TicketKey} TicketKey */
/** @typedef {import('./status.js').Peer} Peer */

/**
 * @param {HTMLElement} root
 * @param {string} field
 * @param {string} text
 */
function setField(root, field, text) {
  const element = root.querySelector(`[data-field="${field}"]`);
  if (element) element.textContent = text;
}

/**
 * @param {HTMLElement} root the #glance section
 * @param {Status} status
 * @param {number} now unix seconds
 */
export function renderStatusGlance(root, status, now) {
  const { upstream } = status;
  setField(root, 'upstream.state', upstream.state);
  const badge = root.querySelector('[data-field="upstream.state"]');
  if (badge instanceof HTMLElement) badge.dataset.state = upstream.state;
  setField(root, 'upstream.since', `${formatDuration(now - upstream.since)} ago`);
  setField(root, 'upstream.url', upstream.url ?? 'unknown');
  setField(
    root,
    'upstream.difficulty',
    upstream.difficulty === null ? '–' : formatSi(upstream.difficulty),
  );
  setField(root, 'clients', formatCount(status.clients));
  setField(root, 'jobs', formatCount(status.jobs));
  setField(root, 'forwarded.lastRejectReason', status.forwarded.lastRejectReason ?? 'none');
  root.dataset.upstreamState = upstream.state;
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
 * @param {HTMLElement} root the #glance section
 * @param {HTMLElement} keyRows the ticket keys table body
 * @param {Descriptor} descriptor
 * @param {number} now unix seconds
 */
export function renderDescriptorGlance(root, keyRows, descriptor, now) {
  setField(root, 'identity', descriptor.identity);
  setField(root, 'algorithm', descriptor.algorithm);
  setField(root, 'tickets.price', `${formatSi(descriptor.price)} credit`);
  setField(root, 'tickets.window', formatDuration(descriptor.windowSeconds));
  setField(root, 'descriptor.issuedAt', `signed ${formatTimestamp(descriptor.issuedAt)}`);
  root.dataset.identity = descriptor.identity;
  root.dataset.keyIds = descriptor.keys.map((k) => k.keyId).join(',');

  const today = utcDay(now);
  const rows = descriptor.keys.map((key) => {
    const row = document.createElement('tr');
    const id = document.createElement('td');
    id.className = 'mono';
    id.textContent = key.keyId;
    const validity = document.createElement('td');
    validity.textContent =
      key.notBeforeDay === key.notAfterDay
        ? formatDay(key.notBeforeDay)
        : `${formatDay(key.notBeforeDay)} – ${formatDay(key.notAfterDay)}`;
    const state = document.createElement('td');
    const badge = document.createElement('span');
    badge.className = 'badge';
    badge.dataset.state = keyState(key, today);
    badge.textContent = badge.dataset.state;
    state.append(badge);
    row.append(id, validity, state);
    return row;
  });
  if (rows.length === 0) {
    const row = document.createElement('tr');
    const cell = document.createElement('td');
    cell.colSpan = 3;
    cell.className = 'muted';
    cell.textContent = 'no ticket keys';
    row.append(cell);
    rows.push(row);
  }
  keyRows.replaceChildren(...rows);
}

/**
 * The backup relays card: hidden without peers; one row per peer with its reachability and
 * the numbers an operator acts on (what it owes, what we owe, unsynced, double spends).
 * @param {HTMLElement} card
 * @param {HTMLElement} rows the peers table body
 * @param {Peer[] | null} peers
 */
export function renderPeers(card, rows, peers) {
  card.hidden = peers === null || peers.length === 0;
  if (!peers) return;
  card.dataset.peers = JSON.stringify(
    peers.map((p) => ({ name: p.name, up: p.up, conflicts: p.conflicts })),
  );
  rows.replaceChildren(
    ...peers.map((peer) => {
      const row = document.createElement('tr');
      const name = document.createElement('td');
      name.textContent = peer.name;
      const state = document.createElement('td');
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.dataset.state = peer.up === null ? 'connecting' : peer.up ? 'live' : 'down';
      badge.textContent = peer.up === null ? 'unknown' : peer.up ? 'up' : 'down';
      state.append(badge);
      const cells = [peer.served, peer.unpaidToUs, peer.weOwe, peer.owedSync, peer.conflicts].map(
        (n) => {
          const cell = document.createElement('td');
          cell.textContent = formatCount(n);
          return cell;
        },
      );
      row.append(name, state, ...cells);
      return row;
    }),
  );
}
