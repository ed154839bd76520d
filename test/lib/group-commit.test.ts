import { describe, expect, it } from 'vitest';
import { GroupCommit } from '../../src/lib/group-commit.js';

/** A commit the test finishes by hand, recording the batches it was given. */
function manualCommits() {
  const batches: number[][] = [];
  const pending: { finish: () => void; fail: (err: Error) => void }[] = [];
  const commit = (items: readonly number[]) => {
    batches.push([...items]);
    return new Promise<number[]>((resolve, reject) => {
      pending.push({ finish: () => resolve(items.map((i) => i * 10)), fail: reject });
    });
  };
  return { batches, pending, commit };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('GroupCommit', () => {
  it('commits what one turn submits in one batch, and the next turn waits for that commit', async () => {
    const { batches, pending, commit } = manualCommits();
    const group = new GroupCommit(commit);
    const first = [1, 2, 3].map((i) => group.submit(i));
    await turn();
    expect(batches).toEqual([[1, 2, 3]]);
    // Arriving while the first commit is in flight: queued, not committed beside it.
    const second = [4, 5].map((i) => group.submit(i));
    await turn();
    expect(batches).toHaveLength(1);
    pending[0]?.finish();
    expect(await Promise.all(first)).toEqual([10, 20, 30]);
    await turn();
    expect(batches).toEqual([
      [1, 2, 3],
      [4, 5],
    ]);
    pending[1]?.finish();
    expect(await Promise.all(second)).toEqual([40, 50]);
  });

  it('splits a large turn into batches of at most maxBatch, one after the other', async () => {
    const sizes: number[] = [];
    const counting = new GroupCommit((items: readonly number[]) => {
      sizes.push(items.length);
      return Promise.resolve([...items]);
    }, 2);
    expect(await Promise.all([1, 2, 3, 4, 5].map((i) => counting.submit(i)))).toEqual([
      1, 2, 3, 4, 5,
    ]);
    expect(sizes).toEqual([2, 2, 1]);
    expect(() => new GroupCommit(() => Promise.resolve([]), 0)).toThrow(RangeError);
  });

  it('a failed commit rejects every item of its batch and no other', async () => {
    const { pending, commit } = manualCommits();
    const group = new GroupCommit(commit);
    const failing = [1, 2].map((i) => group.submit(i));
    await turn();
    const later = group.submit(3);
    pending[0]?.fail(new Error('disk full'));
    for (const f of failing) await expect(f).rejects.toThrow('disk full');
    await turn();
    pending[1]?.finish();
    expect(await later).toBe(30);
  });

  it('a commit that answers the wrong number of results fails its batch', async () => {
    const group = new GroupCommit((items: readonly number[]) =>
      Promise.resolve(items.slice(1).map(String)),
    );
    await expect(group.submit(1)).rejects.toThrow(/result count/);
  });

  it('drained() resolves once everything submitted so far is committed', async () => {
    const { pending, commit } = manualCommits();
    const group = new GroupCommit(commit);
    await group.drained();
    let done = false;
    const write = group.submit(1).then(() => (done = true));
    const drained = group.drained();
    await turn();
    expect(done).toBe(false);
    pending[0]?.finish();
    await drained;
    expect(done).toBe(true);
    await write;
  });
});
