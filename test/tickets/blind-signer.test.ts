import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BatchingSigner,
  BatchSigner,
  type BlindSigner,
  BlindSignerBusy,
  createBlindSignerPool,
  inlineBlindSigner,
  nodeRsaOps,
  type RsaOps,
  signBatch,
  type SignTask,
} from '../../src/tickets/blind-signer.js';
import { TicketFormatError } from '../../src/tickets/group.js';
import {
  bigIntToBytes,
  blind,
  finalize,
  MODULUS_BYTES,
  rsaPrivateKey,
  RsaSigner,
  SigningFailure,
  ticketInfoV2,
  verify,
  type RsaPrivateKey,
} from '../../src/tickets/rsa-scheme.js';
import { ticketMessageV2 } from '../../src/tickets/ticket-v2.js';
import { readVectorsFile } from './rsa-vector-build.js';

// The pool's tests load dist/workers/rsa-sign.js: run `npm run build` after changing src/.

const published = readVectorsFile();
const big = (s: string) => BigInt(`0x${s}`);
const key = rsaPrivateKey(big(published.powbridge.key.p), big(published.powbridge.key.q));
const otherKey = rsaPrivateKey(big(published.draft.key.p), big(published.draft.key.q));
const DAY = published.powbridge.day;
/** Three (key, day) groups: two days of one key, and a second key. */
const GROUPS = [
  { k: key, day: DAY },
  { k: key, day: DAY + 1 },
  { k: otherKey, day: DAY },
];
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

function at<T>(xs: readonly T[], i: number): T {
  const x = xs[i];
  if (x === undefined) throw new Error(`no element ${i}`);
  return x;
}

/** A deterministic block below any 2048-bit modulus (top two bits clear). */
function block(label: string): Uint8Array {
  const parts = [0, 1, 2, 3].map((j) => createHash('sha512').update(`${label}/${j}`).digest());
  const out = new Uint8Array(Buffer.concat(parts));
  out[0] = (out[0] ?? 0) & 0x3f;
  return out;
}

const blocks = (label: string, count: number) =>
  Array.from({ length: count }, (_, i) => block(`${label}-${i}`));

/** What the one-signature-at-a-time signer returns: the reference every batch must match. */
function reference(k: RsaPrivateKey, day: number, msg: Uint8Array): string {
  return hex(new RsaSigner(k).sign(day, msg));
}

/** nodeRsaOps with a fault on chosen messages, and a count of public operations. */
function faultyOps(corrupt: (msg: Uint8Array, sig: Uint8Array) => Uint8Array | null) {
  const counts = { public: 0 };
  const ops: RsaOps = {
    private(derived, msg) {
      const sig = nodeRsaOps.private(derived, msg);
      return corrupt(msg, sig) ?? sig;
    },
    public(derived, sig) {
      counts.public += 1;
      return nodeRsaOps.public(derived, sig);
    },
  };
  return { ops, counts };
}

function flipLastBit(sig: Uint8Array): Uint8Array {
  const bad = new Uint8Array(sig);
  bad[MODULUS_BYTES - 1] = (bad[MODULUS_BYTES - 1] ?? 0) ^ 1;
  return bad;
}

/** Corrupts the signature of the message with `target`'s bytes (the pool copies messages). */
const flipLastBitOf = (target: Uint8Array) => (msg: Uint8Array, sig: Uint8Array) =>
  Buffer.from(msg).equals(Buffer.from(target)) ? flipLastBit(sig) : null;

const hexOrNull = (sigs: (Uint8Array | null)[]) => sigs.map((s) => (s === null ? null : hex(s)));

describe('signBatch: one check for a batch (docs/design.md §6.5)', () => {
  const derived = new RsaSigner(key).derived(DAY);

  it('signs a clean batch with one public operation, as one-by-one signing would', () => {
    const msgs = blocks('clean', 8);
    const { ops, counts } = faultyOps(() => null);
    const sigs = signBatch(key, derived, msgs, ops);
    expect(counts.public).toBe(1);
    expect(hexOrNull(sigs)).toEqual(msgs.map((m) => reference(key, DAY, m)));
  });

  it('withholds exactly the faulty signature and releases the others', () => {
    const msgs = blocks('fault', 8);
    const { ops, counts } = faultyOps(flipLastBitOf(at(msgs, 2)));
    const sigs = signBatch(key, derived, msgs, ops);
    expect(hexOrNull(sigs)).toEqual(msgs.map((m, i) => (i === 2 ? null : reference(key, DAY, m))));
    // The screen failed, so every signature was then checked on its own.
    expect(counts.public).toBe(1 + msgs.length);
  });

  it('withholds a faulty signature that is not below the modulus', () => {
    const msgs = blocks('too-large', 4);
    const { ops } = faultyOps((msg, sig) =>
      msg === msgs[1] ? new Uint8Array(MODULUS_BYTES).fill(0xff) : sig,
    );
    const sigs = signBatch(key, derived, msgs, ops);
    expect(hexOrNull(sigs)).toEqual(msgs.map((m, i) => (i === 1 ? null : reference(key, DAY, m))));
  });

  it('checks a lone message with the plain check', () => {
    const msg = block('lone');
    const { ops, counts } = faultyOps(flipLastBitOf(msg));
    expect(signBatch(key, derived, [msg], ops)).toEqual([null]);
    expect(counts.public).toBe(1);
  });

  // 0 zeroes both products: any fault in another signature would pass the screen. It is
  // checked alone, outside the product.
  it('lets no message 0 hide a fault in another', () => {
    const msgs = [new Uint8Array(MODULUS_BYTES), ...blocks('zero', 3)];
    const { ops } = faultyOps(flipLastBitOf(at(msgs, 2)));
    expect(hexOrNull(signBatch(key, derived, msgs, ops))).toEqual(
      msgs.map((m, i) => (i === 2 ? null : reference(key, DAY, m))),
    );
  });
});

async function expectFormatErrors(signer: BlindSigner, k: RsaPrivateKey): Promise<void> {
  for (const bad of [new Uint8Array(255), new Uint8Array(257)]) {
    await expect(signer.sign(k, DAY, bad)).rejects.toThrow(TicketFormatError);
    await expect(signer.sign(k, DAY, bad)).rejects.toThrow(/must be 256 bytes/);
  }
  const modulus = bigIntToBytes(k.n, MODULUS_BYTES);
  await expect(signer.sign(k, DAY, modulus)).rejects.toThrow(/out of range/);
  for (const day of [-1, 1.5, 2 ** 32]) {
    await expect(signer.sign(k, day, block('good'))).rejects.toThrow(/day must be a uint32/);
  }
}

describe('inlineBlindSigner', () => {
  it('signs as RsaSigner does, refuses bad blocks and days, and refuses after close', async () => {
    const signer = inlineBlindSigner();
    const msg = block('inline');
    expect(hex(await signer.sign(key, DAY, msg))).toBe(reference(key, DAY, msg));
    await expectFormatErrors(signer, key);
    await signer.close();
    await expect(signer.sign(key, DAY, msg)).rejects.toThrow(/closed/);
  });
});

/** An in-process runner: BatchSigner on this thread, a tick later, every task recorded. */
function recordingRunner(ops: RsaOps = nodeRsaOps) {
  const tasks: SignTask[] = [];
  const batchSigner = new BatchSigner(ops);
  const run = async (task: SignTask) => {
    tasks.push(task);
    await new Promise((resolve) => setImmediate(resolve));
    return batchSigner.sign(task);
  };
  return { run, tasks };
}

describe('BatchingSigner: batches per (key, day)', () => {
  it('keeps two keys and two days apart while batching whatever waits', async () => {
    const { run, tasks } = recordingRunner();
    const signer = new BatchingSigner(run, { concurrency: 1 });
    const requests = blocks('groups', 30).map((msg, i) => ({ msg, ...at(GROUPS, i % 3) }));
    const sigs = await Promise.all(requests.map((r) => signer.sign(r.k, r.day, r.msg)));
    expect(sigs.map(hex)).toEqual(requests.map((r) => reference(r.k, r.day, r.msg)));
    // Every task holds only messages sent for its own (key, day), and batches did form.
    const groupOf = new Map(requests.map((r) => [hex(r.msg), `${hex(r.k.keyId)}:${r.day}`]));
    for (const task of tasks) {
      for (const msg of task.blindedMsgs) {
        expect(groupOf.get(hex(msg))).toBe(`${hex(task.key.keyId)}:${task.day}`);
      }
    }
    expect(tasks.length).toBeLessThan(requests.length);
    expect(Math.max(...tasks.map((t) => t.blindedMsgs.length))).toBeGreaterThan(1);
  });

  it('rejects SigningFailure for exactly the request whose signature failed', async () => {
    const msgs = blocks('batch-fault', 12);
    const faulty = at(msgs, 7);
    const { run, tasks } = recordingRunner(faultyOps(flipLastBitOf(faulty)).ops);
    const signer = new BatchingSigner(run, { concurrency: 1 });
    const results = await Promise.allSettled(msgs.map((m) => signer.sign(key, DAY, m)));
    const outcome = results.map((r) =>
      r.status === 'fulfilled' ? hex(r.value) : r.reason instanceof SigningFailure,
    );
    expect(outcome).toEqual(msgs.map((m) => (m === faulty ? true : reference(key, DAY, m))));
    // The faulty one shared its batch with others: the screen, not a lone check, caught it.
    const faultyTask = tasks.find((t) => t.blindedMsgs.some((m) => hex(m) === hex(faulty)));
    expect(faultyTask?.blindedMsgs.length).toBeGreaterThan(1);
  });

  it('refuses with BlindSignerBusy beyond maxQueue; close() rejects what waits', async () => {
    let stopRunning = (_err: Error) => {};
    const signer = new BatchingSigner(
      () => new Promise<never>((_resolve, reject) => (stopRunning = reject)),
      {
        concurrency: 1,
        maxQueue: 2,
        stop: () => {
          stopRunning(new Error('stopped'));
          return Promise.resolve();
        },
      },
    );
    const msgs = blocks('busy', 4);
    const running = signer.sign(key, DAY, at(msgs, 0));
    const waiting = [signer.sign(key, DAY, at(msgs, 1)), signer.sign(key, DAY, at(msgs, 2))];
    expect(signer.queued()).toBe(2);
    await expect(signer.sign(key, DAY, at(msgs, 3))).rejects.toThrow(BlindSignerBusy);
    const settled = Promise.allSettled([running, ...waiting]);
    await signer.close();
    const reasons = (await settled).map((r) => (r.status === 'rejected' ? String(r.reason) : ''));
    expect(reasons).toEqual([
      'Error: stopped',
      'Error: blind signer: closed',
      'Error: blind signer: closed',
    ]);
    await expect(signer.sign(key, DAY, at(msgs, 3))).rejects.toThrow(/closed/);
  });
});

describe('createBlindSignerPool (worker threads, dist/workers/rsa-sign.js)', () => {
  const open: BlindSigner[] = [];
  const pool = (options: { threads?: number; maxQueue?: number }) => {
    const signer = createBlindSignerPool(options);
    open.push(signer);
    return signer;
  };
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
  });

  it('signs as the inline signer does; the tickets finalize and verify with the library', async () => {
    const signer = pool({ threads: 2 });
    const info = ticketInfoV2(DAY);
    const clients = await Promise.all(
      [1, 2, 3].map(async (i) => {
        const msg = ticketMessageV2(key.keyId, DAY, new Uint8Array(32).fill(i));
        return { msg, ...(await blind(key.spki, info, msg)) };
      }),
    );
    const msgs = [...clients.map((c) => c.blindedMsg), ...blocks('pool', 40)];
    const sigs = await Promise.all(msgs.map((m) => signer.sign(key, DAY, m)));
    const inline = inlineBlindSigner();
    const inlineSigs = await Promise.all(msgs.map((m) => inline.sign(key, DAY, m)));
    expect(sigs.map(hex)).toEqual(inlineSigs.map(hex));
    for (const [i, c] of clients.entries()) {
      const signature = await finalize(key.spki, info, c.msg, at(sigs, i), c.inv);
      expect(await verify(key.spki, info, c.msg, signature)).toBe(true);
      expect(await verify(key.spki, ticketInfoV2(DAY + 1), c.msg, signature)).toBe(false);
    }
  });

  it('keeps two keys and two days apart when their requests wait together', async () => {
    const signer = pool({ threads: 1 });
    const same = block('same message');
    const requests = Array.from({ length: 24 }, (_, i) => ({
      ...at(GROUPS, i % 3),
      msg: i < 3 ? same : block(`pool-groups-${i}`),
    }));
    const sigs = await Promise.all(requests.map((r) => signer.sign(r.k, r.day, r.msg)));
    expect(sigs.map(hex)).toEqual(requests.map((r) => reference(r.k, r.day, r.msg)));
    // One message, three (key, day)s: three different signatures.
    expect(new Set(sigs.slice(0, 3).map(hex)).size).toBe(3);
  });

  it('refuses with BlindSignerBusy beyond maxQueue, then signs what it accepted', async () => {
    const signer = pool({ threads: 1, maxQueue: 3 });
    const msgs = blocks('pool-busy', 5);
    const accepted = msgs.slice(0, 4).map((m) => signer.sign(key, DAY, m)); // 1 signing, 3 wait
    await expect(signer.sign(key, DAY, at(msgs, 4))).rejects.toThrow(BlindSignerBusy);
    const sigs = await Promise.all(accepted);
    expect(sigs.map(hex)).toEqual(msgs.slice(0, 4).map((m) => reference(key, DAY, m)));
  });

  it('close() rejects the requests still waiting and any later one', async () => {
    const signer = pool({ threads: 1 });
    const msgs = blocks('pool-close', 10);
    const settled = Promise.allSettled(msgs.map((m) => signer.sign(key, DAY, m)));
    await signer.close();
    // The first went to the worker at once; the nine behind it were waiting.
    const waited = (await settled).slice(1);
    expect(waited.map((r) => (r.status === 'rejected' ? String(r.reason) : r.status))).toEqual(
      Array(9).fill('Error: blind signer: closed'),
    );
    await expect(signer.sign(key, DAY, at(msgs, 0))).rejects.toThrow(/closed/);
  });

  it('refuses bad blocks and days before they reach a worker', async () => {
    await expectFormatErrors(pool({ threads: 1 }), key);
  });
});
