import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/relay/relay.js';
import { metricTypes } from '../helpers/metrics-text.js';
import { startTestRelay } from '../helpers/test-relay.js';

/**
 * What the operating guide and the Grafana dashboard say about /metrics, checked against the
 * real /metrics of a relay that has everything that registers metrics: the tunnel's classes, a
 * Stratum port and a peer. docs/operating.md's table lists every metric with its type and
 * labels, and every metric docs/grafana/powbridge.json queries exists.
 */

const root = join(import.meta.dirname, '..', '..');
const dataDir = mkdtempSync(join(tmpdir(), 'powbridge-metrics-docs-'));
let relay: Relay;
let exposition: string;

beforeAll(async () => {
  ({ relay } = await startTestRelay({
    dataDir,
    stratumListen: '127.0.0.1:0',
    // A peer nobody answers for: its metrics exist all the same.
    peers: [{ name: 'backup', url: 'http://127.0.0.1:1', identity: 'ab'.repeat(32) }],
    peering: { syncIntervalSeconds: 3600 },
  }));
  const response = await fetch(`${relay.url}/metrics`);
  expect(response.status).toBe(200);
  exposition = await response.text();
});

afterAll(async () => {
  await relay?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** prom-client's default process and Node metrics: the guide names them as two families. */
const DEFAULT_FAMILIES = /^powbridge_(process|nodejs)_/;

/** Label names of a metric's samples (`le` and `quantile` are the exposition's own). */
function sampleLabels(text: string, name: string): Set<string> {
  const labels = new Set<string>();
  const line = new RegExp(`^${name}\\{([^}]*)\\} `, 'gm');
  for (const match of text.matchAll(line)) {
    for (const pair of (match[1] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) {
      if (pair[1] !== undefined) labels.add(pair[1]);
    }
  }
  return labels;
}

interface TableRow {
  type: string;
  labels: string[];
}

/** The metrics table of "## Metrics and health": `name` | type | labels. */
function guideTable(): Map<string, TableRow> {
  const guide = readFileSync(join(root, 'docs', 'operating.md'), 'utf8');
  const section = guide.slice(guide.indexOf('## Metrics and health'));
  const body = section.slice(0, section.indexOf('\n## ', 1));
  const rows = new Map<string, TableRow>();
  for (const match of body.matchAll(/^\| `(powbridge_[a-z0-9_]+)` +\| (\w+) +\| ([^|]*)\|$/gm)) {
    const [, name = '', type = '', labels = ''] = match;
    expect(rows.has(name), `${name} listed twice`).toBe(false);
    rows.set(name, { type, labels: [...labels.matchAll(/`([a-z_]+)`/g)].map((m) => m[1] ?? '') });
  }
  return rows;
}

describe('docs/operating.md, the metrics table', () => {
  it('lists every metric of /metrics with its type, and nothing else', () => {
    const types = metricTypes(exposition);
    const exported = [...types.keys()].filter((name) => !DEFAULT_FAMILIES.test(name)).sort();
    const table = guideTable();
    expect([...table.keys()].sort()).toEqual(exported);
    for (const [name, row] of table)
      expect(`${name} ${row.type}`).toBe(`${name} ${types.get(name)}`);
    // The default families are there, and the guide names them.
    expect([...types.keys()].filter((name) => DEFAULT_FAMILIES.test(name)).length).toBeGreaterThan(
      5,
    );
    const guide = readFileSync(join(root, 'docs', 'operating.md'), 'utf8');
    expect(guide).toContain('`powbridge_process_*`');
    expect(guide).toContain('`powbridge_nodejs_*`');
  });

  it('gives each metric the labels of its series', () => {
    for (const [name, row] of guideTable()) {
      const labels = sampleLabels(exposition, name);
      // Every label a series carries is in the table (series may leave one out: an accepted
      // share has no reason).
      for (const label of labels) expect(row.labels, `${name} labels`).toContain(label);
      // And a table label is used by some series, where the metric has labelled series.
      if (labels.size > 0)
        expect([...labels].sort(), `${name} labels`).toEqual([...row.labels].sort());
    }
  });
});

// ---- the Grafana dashboard ----

/** PromQL's functions, aggregations and keywords: identifiers that are not metric names. */
const PROMQL_WORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'bool',
  'offset',
  'and',
  'or',
  'unless',
  'inf',
  'nan',
]);

/**
 * The metric names a PromQL expression selects. Grafana variables, strings, label matchers,
 * range and subquery brackets and grouping label lists are removed first; an identifier
 * followed by "(" is a function or an aggregation.
 */
function queriedMetrics(expr: string): string[] {
  const stripped = expr
    .replace(/\$\{[^}]*\}|\$[A-Za-z_]\w*/g, ' 1 ')
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names: string[] = [];
  for (const match of stripped.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?/g)) {
    const [, name = '', call] = match;
    if (call !== undefined || PROMQL_WORDS.has(name.toLowerCase())) continue;
    // A number's exponent (1e6) is part of the number, not a name.
    if (/[0-9.]$/.test(stripped.slice(0, match.index))) continue;
    names.push(name);
  }
  return [...new Set(names)];
}

/**
 * The sample names a scrape can hold: a counter or gauge by its own name; a histogram as
 * _bucket, _sum and _count; a summary as itself, _sum and _count.
 */
function seriesNames(types: Map<string, string>): Set<string> {
  const names = new Set<string>();
  for (const [name, type] of types) {
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
    else if (type === 'summary') for (const s of ['', '_sum', '_count']) names.add(name + s);
    else names.add(name);
  }
  return names;
}

interface Panel {
  type: string;
  id: number;
  title: string;
  targets?: { expr: string }[];
  panels?: Panel[];
}

interface Dashboard {
  uid: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; definition?: string }[] };
}

function dashboard(): Dashboard {
  return JSON.parse(
    readFileSync(join(root, 'docs', 'grafana', 'powbridge.json'), 'utf8'),
  ) as Dashboard;
}

/** Every PromQL query: panel targets (rows included) and the query variables. */
function dashboardQueries(board: Dashboard): { where: string; expr: string }[] {
  const panels = board.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
  return [
    ...panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: p.title, expr: t.expr }))),
    ...board.templating.list
      .filter((v) => v.type === 'query')
      .map((v) => ({
        where: `$${v.name}`,
        expr: (v.definition ?? '').replace(/^label_values\((.*),[^,]*\)$/, '$1'),
      })),
  ];
}

describe('the PromQL metric-name parser', () => {
  it('finds metric names and nothing else', () => {
    expect(
      queriedMetrics(
        'sum by (class) (rate(powbridge_qos_class_bytes_total{instance=~"$instance",kind="sent"}[$__rate_interval])) * 8',
      ),
    ).toEqual(['powbridge_qos_class_bytes_total']);
    expect(
      queriedMetrics('histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket[5m])))'),
    ).toEqual(['a_seconds_bucket']);
    expect(
      queriedMetrics(
        'rate(x_total[5m]) * $hashes_per_difficulty / on (peer) group_left(kind) y > 1e6',
      ),
    ).toEqual(['x_total', 'y']);
    expect(queriedMetrics('max by (peer, reason) (p{a="b{c}"}) > 0 unless q offset 5m')).toEqual([
      'p',
      'q',
    ]);
  });

  it('takes _bucket, _sum and _count only from histograms and summaries', () => {
    const names = seriesNames(
      new Map([
        ['h_seconds', 'histogram'],
        ['c_total', 'counter'],
        ['s', 'summary'],
      ]),
    );
    expect([...names].sort()).toEqual([
      'c_total',
      'h_seconds_bucket',
      'h_seconds_count',
      'h_seconds_sum',
      's',
      's_count',
      's_sum',
    ]);
    expect(names.has('c_total_count')).toBe(false);
    expect(names.has('h_seconds')).toBe(false);
  });
});

describe('docs/grafana/powbridge.json', () => {
  it('queries only metrics that exist in /metrics', () => {
    const available = seriesNames(metricTypes(exposition));
    const queries = dashboardQueries(dashboard());
    expect(queries.length).toBeGreaterThan(20);
    for (const { where, expr } of queries) {
      const names = queriedMetrics(expr);
      expect(names.length, `${where}: ${expr}`).toBeGreaterThan(0);
      for (const name of names) expect(available.has(name), `${where}: ${name}`).toBe(true);
    }
  });

  it('shows hash rate, shares, tickets, HTB bytes per class, refusals and peers', () => {
    const queried = new Set(
      dashboardQueries(dashboard()).flatMap(({ expr }) => queriedMetrics(expr)),
    );
    for (const name of [
      'powbridge_hashrate_hps',
      'powbridge_share_difficulty_total',
      'powbridge_shares_total',
      'powbridge_forwarded_total',
      'powbridge_tickets_total',
      'powbridge_qos_class_bytes_total',
      'powbridge_circuits_refused_total',
      'powbridge_overloaded_total',
      'powbridge_peer_up',
      'powbridge_peer_refusals_total',
    ]) {
      expect(queried.has(name), name).toBe(true);
    }
  });

  it('is one dashboard with unique panel ids and a Prometheus data source variable', () => {
    const board = dashboard();
    const panels = board.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    expect(board.uid).toBe('powbridge-relay');
    expect(board.templating.list.map((v) => v.name)).toEqual(
      expect.arrayContaining(['datasource', 'instance', 'hashes_per_difficulty']),
    );
  });
});
