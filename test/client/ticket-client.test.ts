import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { CircuitClient } from '../../src/client/circuit-client.js';
import { TicketClient } from '../../src/client/ticket-client.js';
import { TicketLoop, type TicketSource } from '../../src/client/ticket-loop.js';
import { Wallet } from '../../src/client/wallet.js';
import { RpcError, RpcErrorCode } from '../../src/protocol/errors.js';
import { encodeError, encodeResult, parseFrame } from '../../src/protocol/jsonrpc.js';
import {
  RSA_SCHEME,
  type RegisterResult,
  type RsaTicketTerms,
} from '../../src/protocol/messages.js';
import {
  rsaPrivateKey,
  RsaSigner,
  RsaVerifier,
  type RsaPrivateKey,
} from '../../src/tickets/rsa-scheme.js';
import { SignatureError } from '../../src/tickets/scheme.js';
import { decodeTicketV2, ticketMessageV2 } from '../../src/tickets/ticket-v2.js';
import { fixedRandom } from '../helpers/fixed-random.js';
import { readVectorsFile } from '../tickets/rsa-vector-build.js';

const vectors = readVectorsFile();
const big = (s: string) => BigInt(`0x${s}`);
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const key = rsaPrivateKey(big(vectors.powbridge.key.p), big(vectors.powbridge.key.q));
const draftKey = rsaPrivateKey(big(vectors.draft.key.p), big(vectors.draft.key.q));
const signer = new RsaSigner(key);
const DAY = vectors.powbridge.day;
/** Noon UTC of the vectors' day. */
const NOON = DAY * 86_400 + 43_200;

function termsOf(k: RsaPrivateKey, day = DAY): RsaTicketTerms {
  return {
    scheme: RSA_SCHEME,
    keyId: hex(k.keyId),
    publicKey: hex(k.spki),
    day,
    price: 1,
    windowSeconds: 600,
  };
}

interface Seen {
  method: string;
  params: Record<string, unknown>;
}

/** What the fake relay does with ticket.issue: sign it honestly, refuse it, or tamper. */
type Issue = (params: { keyId: string; day: number; blindedMsg: string }) => unknown;

const honest: Issue = ({ day, blindedMsg }) => ({
  blindSig: hex(signer.sign(day, new Uint8Array(Buffer.from(blindedMsg, 'hex')))),
});

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * A tiny relay on loopback that answers only ticket.issue, with the vector key's signer: the
 * client under test speaks the real wire (CircuitClient, the schemas) to it.
 */
async function fakeRelay(issue: Issue = honest): Promise<{ circuit: CircuitClient; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((resolve) => server.once('listening', resolve));
  server.on('connection', (ws) => {
    ws.on('message', (data: Buffer) => {
      const frame = parseFrame(data.toString('utf8'), 1 << 20);
      if (frame.kind !== 'request') return;
      const { id, method } = frame.message;
      const params = frame.message.params ?? {};
      seen.push({ method, params });
      try {
        if (method !== 'ticket.issue') throw new RpcError(RpcErrorCode.methodNotFound, method);
        ws.send(encodeResult(id, issue(params as Parameters<Issue>[0])));
      } catch (err) {
        ws.send(encodeError(id, err instanceof RpcError ? err : new RpcError(-32603, String(err))));
      }
    });
  });
  const { port } = server.address() as AddressInfo;
  const circuit = await CircuitClient.connect(`ws://127.0.0.1:${port}/v1/circuit`);
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  cleanups.push(() => circuit.close());
  return { circuit, seen };
}

describe('TicketClient, partially blind RSA (docs/design.md §6.5)', () => {
  it('one ticket.issue gives the published vector ticket, byte for byte, from the same draws', async () => {
    const { circuit, seen } = await fakeRelay();
    let opened = 0;
    const client = new TicketClient(termsOf(key), {
      random: fixedRandom(vectors.powbridge.seed),
      now: () => NOON,
    });
    const issued = await client.obtain(circuit, () => (opened += 1));
    expect(issued).toEqual({
      ticket: vectors.powbridge.ticket,
      keyId: vectors.powbridge.key.keyId,
      day: DAY,
    });
    expect(seen).toEqual([
      {
        method: 'ticket.issue',
        params: {
          keyId: vectors.powbridge.key.keyId,
          day: DAY,
          blindedMsg: vectors.powbridge.blinded_msg,
        },
      },
    ]);
    expect(opened).toBe(1);
  });

  it('tickets from the CSPRNG verify under the relay key and differ each time', async () => {
    const { circuit } = await fakeRelay();
    const client = new TicketClient(termsOf(key), { now: () => NOON });
    const verifier = new RsaVerifier(key);
    const serials = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const ticket = decodeTicketV2((await client.obtain(circuit)).ticket);
      expect(ticket.day).toBe(DAY);
      const msg = ticketMessageV2(ticket.keyId, ticket.day, ticket.nonce);
      expect(verifier.verify(DAY, msg, ticket.signature)).toBe(true);
      serials.add(hex(ticket.nonce));
    }
    expect(serials.size).toBe(3);
  });

  it('a blind signature that does not finalise is a SignatureError; the price was still taken', async () => {
    const tampered: Issue = (params) => {
      const { blindSig } = honest(params) as { blindSig: string };
      return { blindSig: `${blindSig.slice(0, -2)}${blindSig.endsWith('00') ? '01' : '00'}` };
    };
    const foreignDay: Issue = ({ day, blindedMsg }) =>
      honest({ keyId: '', day: day + 1, blindedMsg });
    for (const issue of [tampered, foreignDay]) {
      const { circuit } = await fakeRelay(issue);
      let opened = 0;
      const obtained = new TicketClient(termsOf(key), { now: () => NOON }).obtain(
        circuit,
        () => (opened += 1),
      );
      await expect(obtained).rejects.toThrow(SignatureError);
      await expect(obtained).rejects.toThrow(/does not verify/);
      expect(opened).toBe(1);
    }
  });

  it('a refusal from the relay (34, not enough credit) passes through; nothing was taken', async () => {
    const { circuit } = await fakeRelay(() => {
      throw new RpcError(RpcErrorCode.notEnoughCredit, 'not enough credit for a ticket');
    });
    let opened = 0;
    await expect(
      new TicketClient(termsOf(key), { now: () => NOON }).obtain(circuit, () => (opened += 1)),
    ).rejects.toMatchObject({ code: RpcErrorCode.notEnoughCredit });
    expect(opened).toBe(0);
  });

  it('terms whose key id is not their public key’s are refused at construction', () => {
    expect(() => new TicketClient({ ...termsOf(key), keyId: hex(draftKey.keyId) })).toThrow(
      /key id does not match the public key/,
    );
    expect(() => new TicketClient({ ...termsOf(key), publicKey: hex(draftKey.spki) })).toThrow(
      SignatureError,
    );
    // Not an RSA SPKI at all.
    expect(() => new TicketClient({ ...termsOf(key), publicKey: 'ab'.repeat(40) })).toThrow(/SPKI/);
  });

  it('a terms day ahead of today is refused before any request', async () => {
    const { circuit, seen } = await fakeRelay();
    for (const day of [DAY + 1, DAY + 30]) {
      await expect(
        new TicketClient(termsOf(key, day), { now: () => NOON }).obtain(circuit),
      ).rejects.toThrow(new SignatureError(`relay offered day ${day}, not today (${DAY})`));
    }
    expect(seen).toEqual([]);
  });

  it('asks for the terms day around midnight, and for today once the terms day is past', async () => {
    const { circuit, seen } = await fakeRelay();
    const cases: [termsDay: number, now: number, asked: number][] = [
      [DAY, NOON, DAY],
      [DAY - 1, DAY * 86_400 + 120, DAY - 1], // 00:02, within the skew: the terms' day
      [DAY, DAY * 86_400 - 120, DAY], // 23:58 of the day before: the relay is ahead
      [DAY - 1, NOON, DAY], // a circuit registered yesterday: today
      [DAY - 9, NOON, DAY],
    ];
    for (const [termsDay, now, asked] of cases) {
      const issued = await new TicketClient(termsOf(key, termsDay), { now: () => now }).obtain(
        circuit,
      );
      expect(issued.day).toBe(asked);
      expect(decodeTicketV2(issued.ticket).day).toBe(asked);
    }
    expect(seen.map((s) => s.params.day)).toEqual(cases.map(([, , asked]) => asked));
  });
});

describe('TicketLoop with RSA terms', () => {
  function source(circuit: CircuitClient, terms: RsaTicketTerms): TicketSource & { spent: number } {
    const registered: RegisterResult = {
      algorithm: 'sha256d',
      extranonce1: '00000001',
      extranonce2Size: 4,
      difficulty: 1,
      versionMask: null,
      ticket: terms,
    };
    let credit = 1;
    let spent = 0;
    return {
      get credit() {
        return credit;
      },
      get spent() {
        return spent;
      },
      registered,
      circuit,
      noteSpent(amount) {
        credit -= amount;
        spent += amount;
      },
    };
  }

  function wallet(): Wallet {
    const dir = mkdtempSync(join(tmpdir(), 'powbridge-ticket-client-'));
    const w = Wallet.open(join(dir, 'wallet.sqlite'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    cleanups.push(() => w.close());
    return w;
  }

  const today = Math.floor(Date.now() / 86_400_000);
  const relayUrl = 'ws://relay.test/v1/circuit';

  it('stores the v2 ticket in the wallet before reporting it', async () => {
    const { circuit, seen } = await fakeRelay();
    const w = wallet();
    const src = source(circuit, termsOf(key, today));
    const loop = new TicketLoop({ source: src, wallet: w, relayUrl });
    cleanups.push(() => loop.close());
    const reported = new Promise<string>((resolve) =>
      loop.once('ticket', (t) =>
        resolve(w.list().find((row) => row.ticket === t.ticket)?.state ?? 'absent'),
      ),
    );
    loop.poke();
    expect(await reported).toBe('unspent');
    expect(seen.map((s) => s.method)).toEqual(['ticket.issue']);
    expect(src.spent).toBe(1);
    expect(loop.tickets).toBe(1);
    expect(w.list()).toMatchObject([{ keyId: hex(key.keyId), day: today, state: 'unspent' }]);
  });

  it('a blind signature that does not verify is reported, and nothing is stored', async () => {
    const { circuit } = await fakeRelay((params) => honest({ ...params, day: params.day + 1 }));
    const w = wallet();
    const src = source(circuit, termsOf(key, today));
    const loop = new TicketLoop({ source: src, wallet: w, relayUrl, retryMs: 60_000 });
    cleanups.push(() => loop.close());
    loop.poke();
    await loop.close();
    expect(loop.lastError).toBe('issued ticket does not verify');
    expect(loop.tickets).toBe(0);
    expect(w.counts()).toEqual({ unspent: 0, spent: 0, expired: 0 });
    expect(src.spent).toBe(1);
  });
});
