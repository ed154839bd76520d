/**
 * Group commit: items submitted in the same turn of the event loop are committed together,
 * one commit at a time, and each submission settles only after the commit that holds it. With
 * one commit in flight, whatever arrives meanwhile waits for the next one, so a slow commit
 * (an fsync, a round trip to a database) makes the batches grow instead of the queue of
 * commits.
 */
export class GroupCommit<I, R> {
  private queue: { item: I; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
  private running = false;
  private idle: Promise<void> = Promise.resolve();

  /**
   * `commit` gets a batch and resolves one result per item, in order, once the batch is
   * committed; a rejection means none of the batch was committed.
   */
  constructor(
    private readonly commit: (items: readonly I[]) => Promise<readonly R[]>,
    private readonly maxBatch = 256,
  ) {
    if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new RangeError('bad maxBatch');
  }

  submit(item: I): Promise<R> {
    return new Promise((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (!this.running) {
        this.running = true;
        this.idle = new Promise((done) => setImmediate(() => void this.flush().then(done)));
      }
    });
  }

  /** Resolves once everything submitted so far has been committed (or refused). */
  drained(): Promise<void> {
    return this.idle;
  }

  private async flush(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      let results: readonly R[];
      try {
        results = await this.commit(batch.map((b) => b.item));
        if (results.length !== batch.length) throw new Error('group commit: result count');
      } catch (err) {
        for (const b of batch) b.reject(err);
        continue;
      }
      batch.forEach((b, i) => b.resolve(results[i] as R));
    }
    this.running = false;
  }
}
