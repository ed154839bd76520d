// @ts-check
/**
 * The dashboard's main loop: poll the relay's status and descriptor for the cards, and its
 * history (GET /v1/status/history, kept by the relay, so a page load shows the past) for the
 * charts and the rates beside the totals. Everything is fetched from the page's own origin;
 * the server's Content-Security-Policy would block anything else.
 */

import { ChartPanel } from './chart-panel.js';
import { formatSi, formatUnit } from './format.js';
import { renderDescriptor, renderRates, renderStatus } from './glance.js';
import {
  labelled,
  minus,
  PER_HOUR,
  PER_MINUTE,
  PER_SECOND,
  ratesOf,
  recentRate,
  sum,
} from './rates.js';
import { parseDescriptor, parseHistory, parseStatus } from './status.js';
import { renderBlocks, renderKeys, renderPeers } from './tables.js';

/** @typedef {import('./status.js').History} History */
/** @typedef {readonly (number | null)[]} Values */

const POLL_MS = 2000;
const REQUEST_TIMEOUT_MS = 5000;
/** About one sample per pixel of a wide chart: the first load asks for no more. */
const FIRST_LOAD_SAMPLES = 1500;
/** The rates beside the totals: over the last five minutes of history. */
const RATE_WINDOW_SECONDS = 300;
/** A young relay's charts span at least two minutes, so a few samples are not stretched wide. */
const MIN_SPAN_SECONDS = 120;

const GOOD = '#4ade80';
const BAD = '#f87171';
const STALE = '#94a3b8';
const BLUE = '#60a5fa';
const AMBER = '#fbbf24';
const PURPLE = '#c084fc';
/** The default tunnel classes (docs/design.md §8), one colour each in both tunnel charts. */
const CLASS_COLORS = { root: STALE, free: BLUE, paid: PURPLE, group1: GOOD, group4: AMBER };

/**
 * Rates of what the upstream made of forwarded shares or found blocks: accepted, stale,
 * rejected for another reason.
 * @param {History} h
 * @param {'forwarded' | 'blocks'} name
 * @param {number} per
 * @returns {Record<string, Values>}
 */
function upstreamOutcomes(h, name, per) {
  return {
    accepted: ratesOf(h.times, column(h, `${name}.accepted`), per),
    stale: ratesOf(h.times, column(h, `${name}.stale`), per),
    // The status counts stale among the rejected: the chart shows them apart.
    rejected: ratesOf(
      h.times,
      minus(column(h, `${name}.rejected`), column(h, `${name}.stale`)),
      per,
    ),
  };
}

/**
 * Rates of the labelled series that ever moved in the history (a reason that never happened
 * would only clutter the legend).
 * @param {History} h
 * @param {string} name
 * @param {number} per
 * @returns {Record<string, Values>}
 */
function movedRates(h, name, per) {
  /** @type {Record<string, Values>} */
  const out = {};
  for (const [label, totals] of Object.entries(labelled(h.series, name))) {
    const rates = ratesOf(h.times, totals, per);
    if (rates.some((r) => r !== null && r > 0)) out[label] = rates;
  }
  return out;
}

/**
 * @param {History} h
 * @param {string} name
 * @returns {Values}
 */
function column(h, name) {
  return h.series[name] ?? h.times.map(() => null);
}

/**
 * Each chart: its element id, how its numbers read, and the series it draws from the
 * relay's history. Counters are kept as totals there, so every chart of counts plots the rate
 * between two samples; gauges (hash rate, open streams) are plotted as sampled.
 * @type {{ id: string, format: (v: number) => string, stepped?: boolean,
 *          colors?: Record<string, string>, label?: (name: string) => string,
 *          series: (h: History) => Record<string, Values> }[]}
 */
const CHARTS = [
  {
    id: 'chart-hashrate',
    format: formatSi,
    colors: { hashrate: BLUE },
    label: () => 'relay estimate',
    series: (h) => ({ hashrate: column(h, 'hashrate') }),
  },
  {
    id: 'chart-shares',
    format: formatSi,
    stepped: true,
    colors: { accepted: GOOD, stale: STALE, duplicate: AMBER, 'low-difficulty': BAD },
    label: (name) => (name === 'accepted' ? name : `rejected: ${name}`),
    series: (h) => ({
      accepted: ratesOf(h.times, column(h, 'shares.accepted'), PER_MINUTE),
      ...movedRates(h, 'shares.rejected', PER_MINUTE),
    }),
  },
  {
    id: 'chart-upstream',
    format: formatSi,
    stepped: true,
    colors: { accepted: GOOD, stale: STALE, rejected: BAD },
    series: (h) => upstreamOutcomes(h, 'forwarded', PER_MINUTE),
  },
  {
    id: 'chart-blocks',
    format: formatSi,
    stepped: true,
    colors: { accepted: GOOD, stale: STALE, rejected: BAD },
    series: (h) => upstreamOutcomes(h, 'blocks', PER_HOUR),
  },
  {
    id: 'chart-tickets',
    format: formatSi,
    stepped: true,
    colors: { issued: BLUE, redeemed: GOOD, spent: BAD, badSignature: '#fb923c' },
    label: (name) => (name === 'issued' || name === 'redeemed' ? name : `refused: ${name}`),
    series: (h) =>
      h.series['tickets.issued']
        ? {
            issued: ratesOf(h.times, column(h, 'tickets.issued'), PER_HOUR),
            redeemed: ratesOf(h.times, column(h, 'tickets.redeemed'), PER_HOUR),
            ...movedRates(h, 'tickets.refused', PER_HOUR),
          }
        : {},
  },
  {
    id: 'chart-load',
    format: formatSi,
    stepped: true,
    colors: { 'busy (38)': AMBER, 'full (37)': BAD },
    series: (h) => {
      const n = h.times.length;
      const busy = sum(Object.values(labelled(h.series, 'load.overloaded')), n);
      const all = {
        'busy (38)': ratesOf(h.times, busy, PER_MINUTE),
        'full (37)': ratesOf(h.times, column(h, 'load.circuits:refusedFull'), PER_MINUTE),
        'cap reached': ratesOf(h.times, column(h, 'load.circuits:refusedUnregistered'), PER_MINUTE),
        'too slow': ratesOf(h.times, column(h, 'load.circuits:registerTimeouts'), PER_MINUTE),
        ...Object.fromEntries(
          Object.entries(movedRates(h, 'stratum.dropped', PER_MINUTE)).map(([reason, rates]) => [
            `stratum: ${reason}`,
            rates,
          ]),
        ),
      };
      const moved = Object.entries(all).filter(([, rates]) =>
        rates.some((r) => r !== null && r > 0),
      );
      // Nothing refused: one flat line says so better than an empty box.
      return moved.length > 0 ? Object.fromEntries(moved) : { 'busy (38)': all['busy (38)'] };
    },
  },
  {
    id: 'chart-qos',
    format: formatSi,
    stepped: true,
    colors: CLASS_COLORS,
    series: (h) =>
      Object.fromEntries(
        Object.entries(labelled(h.series, 'qos.bytesSent')).map(([name, bytes]) => [
          name,
          ratesOf(h.times, bytes, 8 * PER_SECOND),
        ]),
      ),
  },
  {
    id: 'chart-streams',
    format: formatSi,
    stepped: true,
    colors: CLASS_COLORS,
    series: (h) => labelled(h.series, 'tunnel.streams'),
  },
];

/**
 * The rates beside the totals on the cards: over the last five minutes of history.
 * @param {History} h
 * @returns {Record<string, string>}
 */
function cardRates(h) {
  /** @param {Values} totals @param {number} per @param {string} unit */
  const rate = (totals, per, unit) =>
    formatUnit(recentRate(h.times, totals, RATE_WINDOW_SECONDS, per), unit);
  const rejected = sum(Object.values(labelled(h.series, 'shares.rejected')), h.times.length);
  return {
    'shares.accepted': rate(column(h, 'shares.accepted'), PER_MINUTE, '/min'),
    'shares.rejected': rate(rejected, PER_MINUTE, '/min'),
    'forwarded.accepted': rate(column(h, 'forwarded.accepted'), PER_MINUTE, '/min'),
    'tickets.issued': rate(column(h, 'tickets.issued'), PER_HOUR, '/h'),
    'tickets.redeemed': rate(column(h, 'tickets.redeemed'), PER_HOUR, '/h'),
  };
}

/**
 * Add newer samples to the history the page holds; drop what the relay itself no longer
 * keeps (older than its capacity).
 * @param {History | null} held
 * @param {History} update
 * @returns {History}
 */
function merge(held, update) {
  if (!held) return update;
  const n = held.times.length;
  const m = update.times.length;
  const names = new Set([...Object.keys(held.series), ...Object.keys(update.series)]);
  /** @type {Record<string, (number | null)[]>} */
  const series = {};
  for (const name of names) {
    series[name] = [
      ...(held.series[name] ?? Array.from({ length: n }, () => null)),
      ...(update.series[name] ?? Array.from({ length: m }, () => null)),
    ];
  }
  const times = [...held.times, ...update.times];
  const newest = times.at(-1) ?? 0;
  const oldest = newest - update.capacity * update.intervalSeconds;
  const drop = times.findIndex((t) => t > oldest);
  const from = drop < 0 ? times.length : drop;
  return {
    intervalSeconds: update.intervalSeconds,
    capacity: update.capacity,
    times: times.slice(from),
    series: Object.fromEntries(Object.entries(series).map(([k, v]) => [k, v.slice(from)])),
  };
}

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
  const blockRows = byId('block-rows');
  const peersCard = byId('peers');
  const peerRows = byId('peer-rows');
  const panels = CHARTS.map((chart) => ({
    chart,
    panel: new ChartPanel(byId(chart.id), {
      format: chart.format,
      stepped: chart.stepped ?? false,
      ...(chart.colors ? { colors: chart.colors } : {}),
      ...(chart.label ? { label: chart.label } : {}),
    }),
  }));
  /** @type {History | null} */
  let history = null;
  /** @type {string | null} */
  let algorithm = null;
  let renders = 0;

  /** @param {'ok' | 'error'} state @param {string} text */
  const showConnection = (state, text) => {
    connection.dataset.state = state;
    connection.textContent = text;
  };

  /** @param {History} h */
  const drawHistory = (h) => {
    for (const { chart, panel } of panels) panel.show(h.times, chart.series(h), MIN_SPAN_SECONDS);
    renderRates(document, cardRates(h));
    document.body.dataset.historySamples = String(h.times.length);
  };

  const poll = async () => {
    const since = history?.times.at(-1);
    const historyPath =
      since === undefined
        ? `v1/status/history?maxSamples=${FIRST_LOAD_SAMPLES}`
        : `v1/status/history?since=${since}`;
    const [descriptor, status, update] = await Promise.allSettled([
      getJson('v1/descriptor').then(parseDescriptor),
      getJson('v1/status').then(parseStatus),
      getJson(historyPath).then(parseHistory),
    ]);
    const now = Date.now() / 1000;
    if (descriptor.status === 'fulfilled') {
      algorithm = descriptor.value.algorithm;
      renderDescriptor(document, glance, descriptor.value);
      renderKeys(keyRows, descriptor.value, now);
    }
    if (status.status === 'fulfilled') {
      renderStatus(document, glance, status.value, algorithm, now);
      renderBlocks(blockRows, status.value.blocks.recent);
      renderPeers(peersCard, peerRows, status.value.peers, status.value.peerApiRefused, now);
      renders += 1;
      document.body.dataset.statusRenders = String(renders);
    }
    if (update.status === 'fulfilled' && (history === null || update.value.times.length > 0)) {
      history = merge(history, update.value);
      drawHistory(history);
    }
    const failed = [status, descriptor, update].find((r) => r.status === 'rejected');
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
