// @ts-check
/**
 * The dashboard's main loop: poll the relay's status and descriptor, keep a rolling history
 * in the page (the relay keeps none: it exposes totals and current rates only) and draw it.
 * Everything is fetched from the page's own origin; the server's Content-Security-Policy
 * would block anything else.
 */

import { ChartPanel } from './chart-panel.js';
import { formatCount, formatSi } from './format.js';
import { renderDescriptorGlance, renderPeers, renderStatusGlance } from './glance.js';
import { parseDescriptor, parseStatus } from './status.js';

/** @typedef {import('./status.js').Status} Status */

const POLL_MS = 2000;
const REQUEST_TIMEOUT_MS = 5000;
/** Ten minutes at one sample per poll. */
const HISTORY_SAMPLES = 300;

const GOOD = '#4ade80';
const BAD = '#f87171';
const BLUE = '#60a5fa';

/**
 * Counters that are 0 clutter the legend: show a reason once it has happened.
 * @param {Record<string, number>} values
 */
function nonZero(values) {
  return Object.fromEntries(Object.entries(values).filter(([, n]) => n > 0));
}

/**
 * Each chart: its element id, how it is drawn, and which numbers of a status it plots.
 * @type {{ id: string, format: (v: number) => string, counters?: boolean,
 *          colors?: Record<string, string>, label?: (name: string) => string,
 *          values: (s: Status) => Record<string, number> }[]}
 */
const CHARTS = [
  {
    id: 'chart-hashrate',
    format: formatSi,
    colors: { hashrate: BLUE },
    values: (s) => ({ hashrate: s.hashrate }),
  },
  {
    id: 'chart-shares',
    format: formatCount,
    counters: true,
    colors: { accepted: GOOD, duplicate: '#fbbf24', stale: '#fb923c', 'low-difficulty': BAD },
    label: (name) => (name === 'accepted' ? name : `rejected: ${name}`),
    values: (s) => ({ accepted: s.shares.accepted, ...nonZero(s.shares.rejected) }),
  },
  {
    id: 'chart-upstream',
    format: formatCount,
    counters: true,
    colors: { accepted: GOOD, rejected: BAD, blocks: '#c084fc' },
    values: (s) => ({
      accepted: s.forwarded.accepted,
      rejected: s.forwarded.rejected,
      blocks: s.blocks.found,
    }),
  },
  {
    id: 'chart-tickets',
    format: formatCount,
    counters: true,
    colors: { issued: BLUE, redeemed: GOOD, spent: BAD, badSignature: '#fb923c' },
    label: (name) => (name === 'issued' || name === 'redeemed' ? name : `refused: ${name}`),
    values: (s) =>
      s.tickets
        ? { issued: s.tickets.issued, redeemed: s.tickets.redeemed, ...nonZero(s.tickets.refused) }
        : {},
  },
  {
    id: 'chart-qos',
    format: formatSi,
    // The HTB's estimate decays exponentially and never quite reaches 0: below 1 bit/s is idle.
    values: (s) =>
      Object.fromEntries((s.qos ?? []).map((c) => [c.name, c.rateBps < 1 ? 0 : c.rateBps])),
  },
];

/** @param {string} id */
function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`dashboard: #${id} missing from the page`);
  return element;
}

/** @param {string} path relative to the page, so the dashboard also works behind a prefix */
async function getJson(path) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
  try {
    const response = await fetch(path, {
      cache: 'no-store',
      headers: { accept: 'application/json' },
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return /** @type {unknown} */ (await response.json());
  } finally {
    clearTimeout(timer);
  }
}

function start() {
  const connection = byId('connection');
  const glance = byId('glance');
  const keyRows = byId('ticket-keys');
  const peersCard = byId('peers');
  const peerRows = byId('peer-rows');
  const panels = CHARTS.map((chart) => ({
    chart,
    panel: new ChartPanel(byId(chart.id), {
      capacity: HISTORY_SAMPLES,
      format: chart.format,
      counters: chart.counters ?? false,
      ...(chart.colors ? { colors: chart.colors } : {}),
      ...(chart.label ? { label: chart.label } : {}),
    }),
  }));

  /** @param {'ok' | 'error'} state @param {string} text */
  const showConnection = (state, text) => {
    connection.dataset.state = state;
    connection.textContent = text;
  };

  const poll = async () => {
    const [status, descriptor] = await Promise.allSettled([
      getJson('v1/status').then(parseStatus),
      getJson('v1/descriptor').then(parseDescriptor),
    ]);
    const now = Date.now() / 1000;
    if (status.status === 'fulfilled') {
      for (const { chart, panel } of panels) panel.push(now, chart.values(status.value));
      renderStatusGlance(glance, status.value, now);
      renderPeers(peersCard, peerRows, status.value.peers);
    }
    if (descriptor.status === 'fulfilled') {
      renderDescriptorGlance(glance, keyRows, descriptor.value, now);
    }
    const failed = [status, descriptor].find((r) => r.status === 'rejected');
    if (failed?.status === 'rejected') {
      const reason = failed.reason instanceof Error ? failed.reason.message : String(failed.reason);
      showConnection('error', `relay unreachable or unreadable: ${reason}`);
    } else {
      showConnection('ok', `updated ${new Date(now * 1000).toLocaleTimeString()}`);
    }
  };

  const loop = () => {
    poll()
      .catch((err) => showConnection('error', String(err)))
      .finally(() => setTimeout(loop, POLL_MS));
  };
  loop();
}

try {
  start();
} catch (err) {
  const connection = document.getElementById('connection');
  if (connection) {
    connection.dataset.state = 'error';
    connection.textContent = `dashboard failed to start: ${String(err)}`;
  }
}
