import { GroupCommit } from '../lib/group-commit.js';
import type { SpendRequest, SpendResult, SpentLog } from '../storage/spent-log.js';

/**
 * Group commit for the spent store: spends requested in the same turn of the event loop go
 * into one transaction, so one fsync covers them all. With synchronous=FULL an fsync costs
 * about a millisecond here, which would otherwise cap redemptions near 1,000/s per disk; on
 * PostgreSQL a commit also costs a round trip. One batch is in flight at a time: spends that
 * arrive meanwhile go into the next (src/lib/group-commit.ts).
 */
export class SpendBatcher {
  private readonly group: GroupCommit<SpendRequest, SpendResult>;

  constructor(store: Pick<SpentLog, 'trySpendMany'>, maxBatch = 256) {
    // A rejected batch rolled back: none of its serials was recorded.
    this.group = new GroupCommit((requests) => store.trySpendMany(requests), maxBatch);
  }

  spend(request: SpendRequest): Promise<SpendResult> {
    return this.group.submit(request);
  }
}
