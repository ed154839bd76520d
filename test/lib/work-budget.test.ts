import { describe, expect, it } from 'vitest';
import { boundedRunner, QueueFullError } from '../../src/lib/bounded-runner.js';
import { WorkBudget } from '../../src/lib/work-budget.js';

describe('WorkBudget', () => {
  it('grants a burst, then refuses with whole seconds to wait, and refills at its rate', () => {
    let clock = 5_000;
    const budget = new WorkBudget({ perSecond: 4, burstSeconds: 0.5, clock: () => clock });
    expect([budget.take(), budget.take()]).toEqual([{ granted: true }, { granted: true }]);
    expect(budget.take()).toEqual({ granted: false, retryAfterSeconds: 1 });
    clock += 250;
    expect(budget.take()).toEqual({ granted: true });
    expect(budget.take().granted).toBe(false);
  });

  it('asks for longer waits when a unit takes longer than a second to come back', () => {
    let clock = 0;
    const budget = new WorkBudget({ perSecond: 0.4, burstSeconds: 2.5, clock: () => clock });
    expect(budget.take().granted).toBe(true);
    expect(budget.take()).toEqual({ granted: false, retryAfterSeconds: 3 });
    clock += 2_500;
    expect(budget.take().granted).toBe(true);
  });
});

describe('boundedRunner', () => {
  it('refuses beyond maxPending at once and takes work again as tasks finish', async () => {
    const finish: (() => void)[] = [];
    const runner = boundedRunner(
      (n: number) => new Promise<number>((resolve) => finish.push(() => resolve(n * 2))),
      2,
    );
    const a = runner.run(1);
    const b = runner.run(2);
    await expect(runner.run(3)).rejects.toBeInstanceOf(QueueFullError);
    expect(runner.pending()).toBe(2);
    finish.splice(0).forEach((f) => f());
    expect(await Promise.all([a, b])).toEqual([2, 4]);
    expect(runner.pending()).toBe(0);
    const c = runner.run(5);
    finish.splice(0).forEach((f) => f());
    expect(await c).toBe(10);
  });

  it('counts a task that fails, or throws before it starts, as done', async () => {
    const runner = boundedRunner((n: number) => {
      if (n === 0) throw new Error('at once');
      return Promise.reject(new Error('later'));
    }, 1);
    await expect(runner.run(0)).rejects.toThrow('at once');
    await expect(runner.run(1)).rejects.toThrow('later');
    expect(runner.pending()).toBe(0);
  });
});
