import { describe, expect, it } from 'vitest';
import { Teardown } from '../../src/lib/teardown.js';

describe('Teardown', () => {
  it('stops in reverse order of adding, awaiting each stop', async () => {
    const order: string[] = [];
    const teardown = new Teardown();
    teardown.add(() => order.push('store'));
    teardown.add(async () => {
      await new Promise((resolve) => setImmediate(resolve));
      order.push('server');
    });
    teardown.add(() => order.push('listener'));
    await teardown.run();
    expect(order).toEqual(['listener', 'server', 'store']);
  });

  it('runs every stop even when one throws, then rethrows the first error', async () => {
    const order: string[] = [];
    const teardown = new Teardown();
    teardown.add(() => order.push('first added'));
    teardown.add(() => {
      throw new Error('second failed');
    });
    teardown.add(() => Promise.reject(new Error('third failed')));
    await expect(teardown.run()).rejects.toThrow('third failed');
    expect(order).toEqual(['first added']);
  });

  it('runs once: a second run waits for the first and stops nothing twice', async () => {
    let stops = 0;
    const teardown = new Teardown();
    teardown.add(() => stops++);
    await Promise.all([teardown.run(), teardown.run()]);
    await teardown.run();
    expect(stops).toBe(1);
    expect(() => teardown.add(() => undefined)).toThrow(/already ran/);
  });
});
