// @ts-check
/**
 * The "at a glance" cards and the page header: upstream, mining, relay, tickets, load. Fields
 * are elements marked `data-field` (totals and states, straight from /v1/status) and
 * `data-rate` (rates from the relay's history) in index.html; text goes in with textContent
 * only, never as markup. Key facts are also set as attributes on #glance for tests.
 */

import { formatCount, formatDuration, formatSi, formatTimestamp, formatUnit } from './format.js';

/** @typedef {import('./status.js').Status} Status */
/** @typedef {import('./status.js').Descriptor} Descriptor */

/** Expected hashes per share of difficulty 1: 2^256 / the diff-1 target (src/relay/stats.ts). */
const HASHES_PER_DIFFICULTY = /** @type {Record<string, string>} */ ({
  sha256d: '2³²',
  scrypt: '2¹⁶',
});

/**
 * @param {ParentNode} root
 * @param {string} field
 * @param {string} text
 * @param {string} [title]
 */
export function setField(root, field, text, title) {
  for (const element of root.querySelectorAll(`[data-field="${field}"]`)) {
    element.textContent = text;
    if (title !== undefined && element instanceof HTMLElement) element.title = title;
  }
}

/**
 * "(stale 2, duplicate 1)" for the reasons that happened; "" when none did.
 * @param {Record<string, number>} counts
 */
export function reasonsText(counts) {
  const parts = Object.entries(counts)
    .filter(([, n]) => n > 0)
    .map(([reason, n]) => `${reason} ${formatCount(n)}`);
  return parts.length > 0 ? `(${parts.join(', ')})` : '';
}

/** 300 → "5 min", 90 → "90 s". @param {number} seconds */
function spanText(seconds) {
  return seconds % 60 === 0 ? `${seconds / 60} min` : `${formatCount(seconds)} s`;
}

/** @param {Record<string, number>} counts */
function total(counts) {
  return Object.values(counts).reduce((sum, n) => sum + n, 0);
}

/**
 * @param {ParentNode} root the page
 * @param {HTMLElement} glance the #glance section
 * @param {Status} status
 * @param {string | null} algorithm from the descriptor, for the hash-rate note
 * @param {number} now unix seconds
 */
export function renderStatus(root, glance, status, algorithm, now) {
  const { upstream, shares, forwarded, blocks } = status;
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
  setField(root, 'jobs', formatCount(status.jobs));
  setField(root, 'forwarded.lastRejectReason', forwarded.lastRejectReason ?? 'none');

  setField(root, 'clients', formatCount(status.clients));
  for (const element of root.querySelectorAll('[data-show="stratum"]')) {
    if (element instanceof HTMLElement) element.hidden = status.stratum === null;
  }
  setField(root, 'stratum.clients', formatCount(status.stratum?.clients ?? 0));
  setField(root, 'hashrate', formatUnit(status.hashrate, 'H/s'));
  const span = spanText(status.hashrateWindowSeconds);
  const perDifficulty = algorithm ? (HASHES_PER_DIFFICULTY[algorithm] ?? null) : null;
  setField(
    root,
    'hashrate.explained',
    `Σ accepted share difficulty${perDifficulty ? ` × ${perDifficulty}` : ''} ÷ ${span}. ` +
      'Below what miners print: their hashes on stale jobs and rejected shares never count ' +
      'here, and few shares make it noisy.',
  );
  setField(root, 'shares.accepted', formatCount(shares.accepted));
  setField(root, 'shares.rejected', formatCount(total(shares.rejected)));
  setField(root, 'shares.rejected.reasons', reasonsText(shares.rejected));
  setField(root, 'forwarded.accepted', formatCount(forwarded.accepted));
  setField(root, 'forwarded.stale', formatCount(forwarded.stale));
  setField(root, 'forwarded.rejected', formatCount(forwarded.rejected - forwarded.stale));
  setField(root, 'blocks.found', formatCount(blocks.found));
  setField(root, 'blocks.accepted', formatCount(blocks.accepted));
  setField(root, 'blocks.stale', formatCount(blocks.stale));
  setField(root, 'blocks.rejected', formatCount(blocks.rejected - blocks.stale));

  const { tickets } = status;
  setField(root, 'tickets.issued', tickets ? formatCount(tickets.issued) : '–');
  setField(root, 'tickets.redeemed', tickets ? formatCount(tickets.redeemed) : '–');
  setField(root, 'tickets.refused', tickets ? formatCount(total(tickets.refused)) : '–');
  setField(root, 'tickets.refused.reasons', tickets ? reasonsText(tickets.refused) : '');

  const { load, stratum } = status;
  for (const [group, counts] of Object.entries(load ?? {})) {
    for (const [name, n] of Object.entries(counts)) {
      setField(root, `load.${group}.${name}`, formatCount(n));
    }
  }
  setField(
    root,
    'stratum.dropped',
    stratum ? `${formatCount(total(stratum.dropped))} dropped` : 'no Stratum port',
  );
  setField(root, 'stratum.dropped.reasons', stratum ? reasonsText(stratum.dropped) : '');

  const { relay } = status;
  setField(root, 'relay.version', relay ? `v${relay.version}` : '–');
  setField(root, 'relay.version.full', relay ? relay.version : '–');
  setField(root, 'relay.uptime', relay ? formatDuration(relay.uptimeSeconds) : '–');
  setField(root, 'relay.startedAt', relay ? formatTimestamp(relay.startedAt) : '–');
  glance.dataset.upstreamState = upstream.state;
}

/**
 * The rates beside the totals, from the relay's history.
 * @param {ParentNode} root
 * @param {Record<string, string>} rates text by `data-rate` name
 */
export function renderRates(root, rates) {
  for (const element of root.querySelectorAll('[data-rate]')) {
    if (!(element instanceof HTMLElement)) continue;
    const text = rates[element.dataset.rate ?? ''];
    element.textContent = text === undefined ? '' : `· ${text}`;
  }
}

/**
 * @param {ParentNode} root the page
 * @param {HTMLElement} glance the #glance section
 * @param {Descriptor} descriptor
 */
export function renderDescriptor(root, glance, descriptor) {
  setField(root, 'identity', descriptor.identity);
  setField(root, 'algorithm', descriptor.algorithm);
  setField(root, 'onion', descriptor.onion ?? 'no onion service');
  setField(root, 'onion.full', descriptor.onion ?? 'none (tor.control not set)');
  const credits = descriptor.price === 1 ? 'credit' : 'credits';
  setField(root, 'tickets.price', `${formatSi(descriptor.price)} ${credits}`);
  setField(root, 'tickets.window', `${formatDuration(descriptor.windowSeconds)} per ticket`);
  setField(root, 'descriptor.issuedAt', `signed ${formatTimestamp(descriptor.issuedAt)}`);
  glance.dataset.identity = descriptor.identity;
  glance.dataset.keyIds = descriptor.keys.map((k) => k.keyId).join(',');
}
