// @ts-check
/**
 * One chart on the page: a rolling history of named series, drawn with uPlot, with a legend
 * of the latest values. The latest values and the number of samples are also written to the
 * element (`data-latest` as JSON, `data-points`), so tests and scrapers read numbers rather
 * than pixels.
 */

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
const PLOT_HEIGHT = 190;
/** The time axis spans at least this much, so a fresh page does not zoom into milliseconds. */
const MIN_SPAN_SECONDS = 60;
/** Tick steps for counts: whole numbers only. */
const COUNT_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 1e6];
const AXIS = {
  stroke: '#8b98a9',
  grid: { stroke: 'rgba(148, 163, 184, 0.12)', width: 1 },
  ticks: { stroke: 'rgba(148, 163, 184, 0.25)', width: 1, size: 4 },
  font: '11px system-ui, sans-serif',
};

/**
 * @typedef {object} PanelOptions
 * @property {number} capacity samples kept (older ones scroll out)
 * @property {(value: number) => string} format legend and axis labels
 * @property {Record<string, string>} [colors] fixed colours by series name
 * @property {(name: string) => string} [label] legend text of a series (default: its name)
 * @property {boolean} [counters] totals: drawn as steps; a series that appears late was 0
 */

export class ChartPanel {
  /** @type {number[]} */
  #times = [];
  /** @type {Map<string, (number | null)[]>} */
  #series = new Map();
  /** @type {UPlot | null} */
  #plot = null;
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
    this.#plotElement.dataset.empty = 'waiting for data…';
    new ResizeObserver(() => this.#resize()).observe(this.#plotElement);
  }

  /**
   * One sample for every series at `time` (unix seconds); a name not seen before adds a
   * series, one missing from `values` gets a gap.
   * @param {number} time
   * @param {Record<string, number>} values
   */
  push(time, values) {
    let added = false;
    for (const name of Object.keys(values)) {
      if (this.#series.has(name)) continue;
      const fill = this.#options.counters ? 0 : null;
      this.#series.set(
        name,
        this.#times.map(() => fill),
      );
      added = true;
    }
    this.#times.push(time);
    for (const [name, history] of this.#series) history.push(values[name] ?? null);
    if (this.#times.length > this.#options.capacity) {
      this.#times.shift();
      for (const history of this.#series.values()) history.shift();
    }
    this.#element.dataset.latest = JSON.stringify(values);
    this.#element.dataset.points = String(this.#times.length);
    this.#renderLegend(values);
    if (this.#series.size === 0) return;
    if (added || !this.#plot) this.#rebuild();
    else this.#plot.setData(this.#data());
  }

  /** @returns {import('uplot').AlignedData} */
  #data() {
    return [this.#times, ...this.#series.values()];
  }

  /** @param {string} name @param {number} index */
  #colorOf(name, index) {
    return this.#options.colors?.[name] ?? PALETTE[index % PALETTE.length] ?? '#94a3b8';
  }

  /** @param {Record<string, number>} values */
  #renderLegend(values) {
    const items = [...this.#series.keys()].map((name, index) => {
      const item = document.createElement('li');
      const swatch = document.createElement('span');
      swatch.className = 'swatch';
      swatch.style.background = this.#colorOf(name, index);
      const label = document.createElement('span');
      label.textContent = this.#options.label?.(name) ?? name;
      const value = document.createElement('span');
      value.className = 'value';
      const latest = values[name];
      value.textContent = latest === undefined ? '–' : this.#options.format(latest);
      item.append(swatch, label, value);
      return item;
    });
    this.#legend.replaceChildren(...items);
  }

  /** First sample or a new series: build the plot anew (styles depend on the series count). */
  #rebuild() {
    this.#plot?.destroy();
    delete this.#plotElement.dataset.empty;
    const UPlot = uPlotClass();
    const format = this.#options.format;
    const counters = this.#options.counters ?? false;
    const stepped = UPlot.paths.stepped?.({ align: 1 });
    // Fills of several series stack into mud; one series reads better filled.
    const filled = this.#series.size === 1;
    /** @type {UPlotOptions} */
    const options = {
      width: Math.max(this.#plotElement.clientWidth, 200),
      height: PLOT_HEIGHT,
      legend: { show: false },
      cursor: { drag: { x: true, y: false } },
      scales: {
        x: { time: true, range: (_u, min, max) => [Math.min(min, max - MIN_SPAN_SECONDS), max] },
        // Always from zero: a counter creeping from 1000 to 1001 must not look like a cliff.
        y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      axes: [
        { ...AXIS },
        {
          ...AXIS,
          size: 56,
          values: (_u, splits) => splits.map((v) => format(v)),
          ...(counters ? { incrs: COUNT_STEPS } : {}),
        },
      ],
      series: [
        {},
        ...[...this.#series.keys()].map((name, index) => {
          const color = this.#colorOf(name, index);
          return {
            label: this.#options.label?.(name) ?? name,
            stroke: color,
            width: 2,
            ...(filled ? { fill: `${color}26` } : {}),
            spanGaps: false,
            /** @type {(u: UPlot, v: number | null) => string} */
            value: (_u, v) => (v == null ? '–' : format(v)),
            ...(counters && stepped ? { paths: stepped } : {}),
          };
        }),
      ],
    };
    this.#plot = new UPlot(options, this.#data(), this.#plotElement);
  }

  #resize() {
    if (!this.#plot) return;
    const width = Math.max(this.#plotElement.clientWidth, 200);
    if (width !== this.#plot.width) this.#plot.setSize({ width, height: PLOT_HEIGHT });
  }
}
