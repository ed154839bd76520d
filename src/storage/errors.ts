/**
 * The two ways a store can fail that a client may simply retry, whatever the engine behind it
 * (SQLite or PostgreSQL). Anything else a store throws is a bug or a broken disk.
 */

/** The spent store stayed locked by other writers past the busy timeout; nothing was recorded. */
export class SpentStoreBusyError extends Error {
  override name = 'SpentStoreBusyError';
}

/**
 * The database could not be reached, or the connection broke mid-statement. A write that was
 * under way may or may not have committed (the answer to COMMIT is what was lost): a retried
 * spend then finds the serial spent, the same loss as a crash between spend and answer.
 */
export class StorageUnavailableError extends Error {
  override name = 'StorageUnavailableError';
}
