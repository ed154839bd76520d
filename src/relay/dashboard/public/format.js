// @ts-check
/**
 * Number, time and key formatting for the dashboard; pure functions, no DOM, so the tests
 * import this very file (test/relay/dashboard-format.test.ts).
 */

const SI_PREFIXES = ['', 'k', 'M', 'G', 'T', 'P', 'E'];

/**
 * Three significant digits with an SI prefix, for rates and difficulties that span many
 * magnitudes: 100 → "100", 150 → "150", 1e5 → "100 k", 1234567 → "1.23 M", 0.25 → "0.25",
 * 2^-16 → "1.53e-5". Only zeros after a decimal point are dropped ("1.50 k" → "1.5 k").
 * @param {number} value
 */
export function formatSi(value) {
  if (!Number.isFinite(value)) return '–';
  const abs = Math.abs(value);
  if (abs === 0) return '0';
  if (abs < 0.001) return value.toExponential(2).replace(/\.?0+e/, 'e');
  if (abs < 1) return String(Number(value.toPrecision(3)));
  let exponent = 0;
  let scaled = abs;
  while (scaled >= 999.5 && exponent < SI_PREFIXES.length - 1) {
    scaled /= 1000;
    exponent += 1;
  }
  const digits = scaled >= 99.95 ? 0 : scaled >= 9.995 ? 1 : 2;
  const text = trimFraction(scaled.toFixed(digits));
  const prefix = SI_PREFIXES[exponent] ?? '';
  return `${value < 0 ? '-' : ''}${text}${prefix ? ` ${prefix}` : ''}`;
}

/** "1.50" → "1.5", "2.00" → "2", "100" → "100": zeros go only after a decimal point. @param {string} text */
function trimFraction(text) {
  return text.includes('.') ? text.replace(/0+$/, '').replace(/\.$/, '') : text;
}

/** Whole counts with digit grouping: 12345 → "12,345". @param {number} value */
export function formatCount(value) {
  return Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : '–';
}

/**
 * A value with its unit, the SI prefix joined to it: formatUnit(1320, 'H/s') → "1.32 kH/s",
 * formatUnit(150, 'H/s') → "150 H/s", formatUnit(2.5, '/min') → "2.5/min"; "–" when unknown
 * (null: not enough history yet).
 * @param {number | null} value
 * @param {string} unit
 */
export function formatUnit(value, unit) {
  if (value === null || !Number.isFinite(value)) return '–';
  const text = formatSi(value);
  if (unit.startsWith('/')) return `${text}${unit}`;
  // "1.32 k" + "H/s" → "1.32 kH/s"; "150" + "H/s" → "150 H/s".
  return /[a-zA-Z]$/.test(text) ? `${text}${unit}` : `${text} ${unit}`;
}

/**
 * 3725 → "1h 2m", 600 → "10m", 42 → "42s": two units at most, a zero second one left out.
 * @param {number} seconds
 */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '–';
  const s = Math.floor(seconds);
  const days = Math.floor(s / 86_400);
  const hours = Math.floor((s % 86_400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  /** @param {number} big @param {string} bigUnit @param {number} small @param {string} smallUnit */
  const two = (big, bigUnit, small, smallUnit) =>
    small > 0 ? `${big}${bigUnit} ${small}${smallUnit}` : `${big}${bigUnit}`;
  if (days > 0) return two(days, 'd', hours, 'h');
  if (hours > 0) return two(hours, 'h', minutes, 'm');
  if (minutes > 0) return two(minutes, 'm', s % 60, 's');
  return `${s}s`;
}

/** UTC day number (days since 1970-01-01) → "2025-06-01". @param {number} day */
export function formatDay(day) {
  return new Date(day * 86_400_000).toISOString().slice(0, 10);
}

/** Unix seconds → "2025-06-01 12:00:00 UTC". @param {number} seconds */
export function formatTimestamp(seconds) {
  return `${new Date(seconds * 1000).toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** The UTC day of a unix time in seconds. @param {number} seconds */
export function utcDay(seconds) {
  return Math.floor(seconds / 86_400);
}

/** A long hex id shortened for a table cell: "000000a1b2…e5f6". @param {string} hex */
export function shortHex(hex) {
  return hex.length > 20 ? `${hex.slice(0, 12)}…${hex.slice(-6)}` : hex;
}
