import type { SpendRequest, SpendResult, SpentStore } from './spent-store.js';

/**
 * Group commit for the spent store: spends requested in the same turn of the event loop go
 * into one transaction, so one fsync covers them all. With synchronous=FULL an fsync costs
 * about a millisecond here, which would otherwise cap redemptions near 1,000/s per disk.
 */
export class SpendBatcher {
  private queue: {
    request: SpendRequest;
    resolve: (r: SpendResult) => void;
    reject: (e: unknown) => void;
  }[] = [];
  private scheduled = false;

  constructor(
    private readonly store: SpentStore,
    private readonly maxBatch = 256,
  ) {}

  spend(request: SpendRequest): Promise<SpendResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ request, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      let results: SpendResult[];
      try {
        results = this.store.trySpendMany(batch.map((b) => b.request));
      } catch (err) {
        // The transaction rolled back: none of these serials was recorded.
        for (const b of batch) b.reject(err);
        continue;
      }
      batch.forEach((b, i) => b.resolve(results[i] as SpendResult));
    }
  }
}
