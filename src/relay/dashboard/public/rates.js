// @ts-check
/**
 * Rates from the relay's history of totals (GET /v1/status/history keeps counters as totals,
 * so any two samples give the rate between them). Pure functions, no DOM: the tests import
 * this very file (test/relay/dashboard-format.test.ts).
 */

/** Seconds per unit of a rate: per second, minute, hour. */
export const PER_SECOND = 1;
export const PER_MINUTE = 60;
export const PER_HOUR = 3600;

/**
 * The rate between each sample and the one before it, `per` seconds (60: per minute); null
 * for the first sample, next to a missing value, or where a total went down (a restart).
 * @param {readonly number[]} times unix seconds, ascending
 * @param {readonly (number | null)[]} totals
 * @param {number} per
 * @returns {(number | null)[]}
 */
export function ratesOf(times, totals, per) {
  return times.map((time, i) => {
    if (i === 0) return null;
    const before = totals[i - 1];
    const now = totals[i];
    const seconds = time - (times[i - 1] ?? time);
    if (before == null || now == null || now < before || !(seconds > 0)) return null;
    return ((now - before) / seconds) * per;
  });
}

/**
 * The rate over the newest `windowSeconds` of a history: from the newest sample back to the
 * oldest one within the window (the whole history while it is shorter). null with fewer than
 * two samples or a total that went down.
 * @param {readonly number[]} times unix seconds, ascending
 * @param {readonly (number | null)[]} totals
 * @param {number} windowSeconds
 * @param {number} per
 * @returns {number | null}
 */
export function recentRate(times, totals, windowSeconds, per) {
  const last = times.length - 1;
  const newest = totals[last];
  const end = times[last];
  if (last < 1 || newest == null || end === undefined) return null;
  let first = last;
  while (first > 0 && end - (times[first - 1] ?? end) <= windowSeconds) first -= 1;
  if (first === last) first = last - 1;
  const oldest = totals[first];
  const start = times[first];
  if (oldest == null || start === undefined || newest < oldest || !(end > start)) return null;
  return ((newest - oldest) / (end - start)) * per;
}

/**
 * The series of one labelled name ("shares.rejected:stale" → label "stale"), by label, in the
 * order the relay sent them.
 * @param {Readonly<Record<string, readonly (number | null)[]>>} series
 * @param {string} name
 * @returns {Record<string, readonly (number | null)[]>}
 */
export function labelled(series, name) {
  const prefix = `${name}:`;
  /** @type {Record<string, readonly (number | null)[]>} */
  const out = {};
  for (const [key, values] of Object.entries(series)) {
    if (key.startsWith(prefix)) out[key.slice(prefix.length)] = values;
  }
  return out;
}

/**
 * Element-wise a − b, for a part of a total that is shown apart (rejected less stale); null
 * where either is.
 * @param {readonly (number | null)[]} a
 * @param {readonly (number | null)[]} b
 * @returns {(number | null)[]}
 */
export function minus(a, b) {
  return a.map((value, i) => {
    const other = b[i];
    return value == null || other == null ? null : value - other;
  });
}

/**
 * The newest value that is not null.
 * @param {readonly (number | null)[]} values
 * @returns {number | null}
 */
export function latest(values) {
  for (let i = values.length - 1; i >= 0; i--) {
    const value = values[i];
    if (value != null) return value;
  }
  return null;
}

/**
 * Element-wise sum of several series (a total over reasons); null where any is.
 * @param {readonly (readonly (number | null)[])[]} parts
 * @param {number} length
 * @returns {(number | null)[]}
 */
export function sum(parts, length) {
  return Array.from({ length }, (_, i) => {
    let total = 0;
    for (const part of parts) {
      const value = part[i];
      if (value == null) return null;
      total += value;
    }
    return total;
  });
}
