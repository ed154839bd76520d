// @ts-check
/**
 * One chart on the page: named series over the relay's sample times, drawn with uPlot, with
 * a legend of the newest values. The newest values and the number of samples are also
 * written to the element (`data-latest` as JSON, `data-points`), so tests and scrapers read
 * numbers rather than pixels.
 */

import { latest } from './rates.js';

/** @typedef {import('uplot')} UPlot */
/** @typedef {import('uplot').Options} UPlotOptions */

/** uPlot's IIFE build sets a global (index.html loads it before the modules run). */
function uPlotClass() {
  const { uPlot } = /** @type {{ uPlot?: typeof import('uplot') }} */ (
    /** @type {unknown} */ (globalThis)
  );
  if (!uPlot) throw new Error('the charting library did not load');
  return uPlot;
}

const PALETTE = [
  '#60a5fa',
  '#4ade80',
  '#f87171',
  '#fbbf24',
  '#c084fc',
  '#22d3ee',
  '#fb923c',
  '#f472b6',
  '#a3e635',
  '#94a3b8',
];
const PLOT_HEIGHT = 180;
const AXIS = {
  stroke: '#8b98a9',
  grid: { stroke: 'rgba(148, 163, 184, 0.12)', width: 1 },
  ticks: { stroke: 'rgba(148, 163, 184, 0.25)', width: 1, size: 4 },
  font: '11px system-ui, sans-serif',
};

/** @param {number} n */
const pad = (n) => String(n).padStart(2, '0');

/**
 * Time-axis labels in the browser's time zone, one line each: "14:05:30" for ticks under a
 * minute apart, "14:05" up to a day, "12-06" beyond (uPlot's default two-line labels collide
 * on a narrow chart).
 * @param {number[]} splits unix seconds
 * @param {number} step seconds between ticks
 */
function timeLabels(splits, step) {
  return splits.map((seconds) => {
    const t = new Date(seconds * 1000);
    if (step >= 86_400) return `${pad(t.getMonth() + 1)}-${pad(t.getDate())}`;
    const clock = `${pad(t.getHours())}:${pad(t.getMinutes())}`;
    return step % 60 === 0 ? clock : `${clock}:${pad(t.getSeconds())}`;
  });
}

/**
 * @typedef {object} PanelOptions
 * @property {(value: number) => string} format legend and axis labels
 * @property {Record<string, string>} [colors] fixed colours by series name
 * @property {(name: string) => string} [label] legend text of a series (default: its name)
 * @property {boolean} [stepped] values hold over the interval that ends at their time (rates
 *   between two samples, counts): drawn as steps
 */

export class ChartPanel {
  /** @type {UPlot | null} */
  #plot = null;
  /** The series names the plot was built for (a new set needs a new plot). */
  #names = '';
  /** @type {import('uplot').AlignedData} */
  #data = [[]];
  #span = 0;
  #element;
  #plotElement;
  #legend;
  #options;

  /**
   * @param {HTMLElement} element an `.chart` with a `.legend` list and a `.plot` box
   * @param {PanelOptions} options
   */
  constructor(element, options) {
    this.#element = element;
    this.#options = options;
    this.#plotElement = /** @type {HTMLElement} */ (element.querySelector('.plot'));
    this.#legend = /** @type {HTMLElement} */ (element.querySelector('.legend'));
    this.#plotElement.dataset.empty = 'waiting for the relay…';
    new ResizeObserver(() => this.#resize()).observe(this.#plotElement);
  }

  /**
   * Draw these series over these times (unix seconds, ascending); the time axis spans at
   * least `minSpanSeconds`, so a young relay's few samples are not stretched across the page.
   * @param {readonly number[]} times
   * @param {Record<string, readonly (number | null)[]>} series
   * @param {number} minSpanSeconds
   */
  show(times, series, minSpanSeconds) {
    const names = Object.keys(series);
    const newest = Object.fromEntries(names.map((name) => [name, latest(series[name] ?? [])]));
    this.#element.dataset.latest = JSON.stringify(newest);
    this.#element.dataset.points = String(times.length);
    this.#renderLegend(names, newest);
    this.#data = [[...times], ...names.map((name) => [...(series[name] ?? [])])];
    this.#span = minSpanSeconds;
    if (times.length < 2 || names.length === 0) {
      this.#plot?.destroy();
      this.#plot = null;
      this.#names = '';
      this.#plotElement.dataset.empty =
        names.length === 0 ? 'nothing to show yet' : 'one sample so far: the next one draws a line';
      return;
    }
    const key = names.join('\n');
    if (this.#plot && key === this.#names) this.#plot.setData(this.#data);
    else this.#rebuild(names);
    this.#names = key;
  }

  /** @param {string} name @param {number} index */
  #colorOf(name, index) {
    return this.#options.colors?.[name] ?? PALETTE[index % PALETTE.length] ?? '#94a3b8';
  }

  /** @param {string[]} names @param {Record<string, number | null>} newest */
  #renderLegend(names, newest) {
    const items = names.map((name, index) => {
      const item = document.createElement('li');
      const swatch = document.createElement('span');
      swatch.className = 'swatch';
      swatch.style.background = this.#colorOf(name, index);
      const label = document.createElement('span');
      label.textContent = this.#options.label?.(name) ?? name;
      const value = document.createElement('span');
      value.className = 'value';
      const last = newest[name];
      value.textContent = last == null ? '–' : this.#options.format(last);
      item.append(swatch, label, value);
      return item;
    });
    this.#legend.replaceChildren(...items);
  }

  /**
   * A new set of series: build the plot anew (styles depend on the series).
   * @param {string[]} names
   */
  #rebuild(names) {
    this.#plot?.destroy();
    delete this.#plotElement.dataset.empty;
    const UPlot = uPlotClass();
    const format = this.#options.format;
    // A rate belongs to the interval that ends at its sample: hold it back to the one before.
    const stepped = this.#options.stepped ? UPlot.paths.stepped?.({ align: -1 }) : undefined;
    // Fills of several series stack into mud; one series reads better filled.
    const filled = names.length === 1;
    /** @type {UPlotOptions} */
    const options = {
      width: Math.max(this.#plotElement.clientWidth, 200),
      height: PLOT_HEIGHT,
      legend: { show: false },
      cursor: { drag: { x: true, y: false } },
      scales: {
        x: { time: true, range: (_u, min, max) => [Math.min(min, max - this.#span), max] },
        // Always from zero: a rate creeping from 1000 to 1001 must not look like a cliff.
        y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      axes: [
        {
          ...AXIS,
          space: 64,
          values: (_u, splits, _axis, _space, step) => timeLabels(splits, step),
        },
        { ...AXIS, size: 56, values: (_u, splits) => splits.map((v) => format(v)) },
      ],
      series: [
        {},
        ...names.map((name, index) => {
          const color = this.#colorOf(name, index);
          return {
            label: this.#options.label?.(name) ?? name,
            stroke: color,
            width: 2,
            points: { show: false },
            ...(filled ? { fill: `${color}26` } : {}),
            spanGaps: false,
            /** @type {(u: UPlot, v: number | null) => string} */
            value: (_u, v) => (v == null ? '–' : format(v)),
            ...(stepped ? { paths: stepped } : {}),
          };
        }),
      ],
    };
    this.#plot = new UPlot(options, this.#data, this.#plotElement);
  }

  #resize() {
    if (!this.#plot) return;
    const width = Math.max(this.#plotElement.clientWidth, 200);
    if (width !== this.#plot.width) this.#plot.setSize({ width, height: PLOT_HEIGHT });
  }
}
