// @ts-check
/** Number, time and key formatting for the dashboard; pure functions, no DOM. */

const SI_PREFIXES = ['', 'k', 'M', 'G', 'T', 'P', 'E'];

/**
 * 1234567 → "1.23 M", 0.25 → "0.25", 9.54e-7 → "9.54e-7": three significant digits, for
 * rates and difficulties that span many magnitudes.
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
  const digits = scaled >= 100 ? 0 : scaled >= 10 ? 1 : 2;
  const text = scaled.toFixed(digits).replace(/\.?0+$/, '');
  const prefix = SI_PREFIXES[exponent] ?? '';
  return `${value < 0 ? '-' : ''}${text}${prefix ? ` ${prefix}` : ''}`;
}

/** Whole counts with digit grouping: 12345 → "12,345". @param {number} value */
export function formatCount(value) {
  return Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : '–';
}

/** 3725 → "1h 2m"; 42 → "42s". @param {number} seconds */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '–';
  const s = Math.floor(seconds);
  const days = Math.floor(s / 86_400);
  const hours = Math.floor((s % 86_400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  if (days > 0) return `${days}d ${hours}h`;
  if (hours > 0) return `${hours}h ${minutes}m`;
  if (minutes > 0) return `${minutes}m ${s % 60}s`;
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
