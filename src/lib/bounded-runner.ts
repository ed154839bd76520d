/**
 * A cap on work handed to a pool of worker threads: at most `maxPending` tasks in flight
 * (running plus waiting). Beyond it a task is refused at once with QueueFullError instead of
 * joining a queue that grows with the flood (and with it memory and every caller's wait).
 */

export class QueueFullError extends Error {
  override name = 'QueueFullError';
}

export interface BoundedRunner<T, R> {
  run(task: T): Promise<R>;
  /** Tasks running or waiting now. */
  pending(): number;
}

export function boundedRunner<T, R>(
  run: (task: T) => Promise<R>,
  maxPending: number,
): BoundedRunner<T, R> {
  if (!Number.isInteger(maxPending) || maxPending < 1) {
    throw new RangeError('bounded runner: maxPending must be a positive integer');
  }
  let pending = 0;
  return {
    run(task) {
      if (pending >= maxPending) return Promise.reject(new QueueFullError('queue full'));
      pending += 1;
      let started: Promise<R>;
      try {
        started = run(task);
      } catch (err) {
        pending -= 1;
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
      return started.finally(() => {
        pending -= 1;
      });
    },
    pending: () => pending,
  };
}
