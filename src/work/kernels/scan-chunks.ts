/**
 * Walks the nonces [nonceStart, nonceStart + count) through a kernel's scan export in calls of
 * at most `chunk` nonces, so a long scan is many short calls (see the kernels for why).
 * `scanChunk(start, n)` runs one call, collects its candidates and returns how many nonces it
 * really covered: a kernel stops early when its candidate buffer is nearly full, and the next
 * call resumes after the last nonce it covered.
 */
export function scanInChunks(
  nonceStart: number,
  count: number,
  chunk: number,
  scanChunk: (start: number, n: number) => number,
): void {
  let start = nonceStart;
  let left = count;
  while (left > 0) {
    const scanned = scanChunk(start, Math.min(left, chunk));
    if (scanned === 0) throw new Error('kernel scan made no progress');
    start += scanned;
    left -= scanned;
  }
}
