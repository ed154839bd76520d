/**
 * Run synchronous work now and hand its outcome over as a promise: for a synchronous store
 * (better-sqlite3) behind an asynchronous interface. The work is done before this returns; a
 * throw becomes a rejection, as from an async function.
 */
export function runNow<T>(work: () => T): Promise<T> {
  return new Promise((resolve) => resolve(work()));
}
