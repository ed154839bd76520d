import { readFileSync } from 'node:fs';
import { randomBytes, webcrypto } from 'node:crypto';
import { RSAPBSSA } from '@cloudflare/blindrsa-ts';
import { csprng } from '../src/tickets/group.js';
import { blindMessage, finalizeSignature } from '../src/tickets/rsa-blind.js';
import {
  bigIntToBytes,
  blind,
  deriveKeyPair,
  finalize,
  modInverse,
  MODULUS_BYTES,
  rsaPrivateKey,
  RsaSigner,
  RsaVerifier,
  ticketInfoV2,
  type RsaPrivateKey,
} from '../src/tickets/rsa-scheme.js';
import { ticketMessageV2 } from '../src/tickets/ticket-v2.js';
import { median, medianRate, type Report } from './lib/report.js';

/**
 * Tickets v2 for bench/tickets.ts, the scheme alone (docs/design.md §6.5), one thread: the
 * day's key derivation; the relay's sign + check through node:crypto against the reference
 * library's pure-JS BlindSign (the baseline, same run); the client's blind + finalize, ours
 * (src/tickets/rsa-blind.ts) and the library's; verification with node:crypto and the library.
 * The key is the 2048-bit safe-prime key stored in test/vectors/tickets-v2.json.
 */

const LIBRARY_SIGNS = 6;
const CLIENT_ROUNDS = 30;

export function storedKey(): RsaPrivateKey {
  const file = new URL('../test/vectors/tickets-v2.json', import.meta.url);
  const { key } = (
    JSON.parse(readFileSync(file, 'utf8')) as { powbridge: { key: { p: string; q: string } } }
  ).powbridge;
  return rsaPrivateKey(BigInt(`0x${key.p}`), BigInt(`0x${key.q}`));
}

/** Milliseconds per call of an operation: median over `rounds` sequential calls. */
async function perCall(op: () => unknown, rounds: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const start = performance.now();
    await op();
    times.push(performance.now() - start);
  }
  return median(times);
}

function libraryPrivateKey(key: RsaPrivateKey): Promise<webcrypto.CryptoKey> {
  const { n, e, p, q } = key;
  const d = modInverse(e, (p - 1n) * (q - 1n));
  const b64 = (x: bigint, bytes: number) =>
    Buffer.from(bigIntToBytes(x, bytes)).toString('base64url');
  const half = MODULUS_BYTES / 2;
  const jwk = {
    kty: 'RSA',
    n: b64(n, MODULUS_BYTES),
    e: b64(e, 3),
    d: b64(d, MODULUS_BYTES),
    p: b64(p, half),
    q: b64(q, half),
    dp: b64(d % (p - 1n), half),
    dq: b64(d % (q - 1n), half),
    qi: b64(modInverse(q, p), half),
  };
  return webcrypto.subtle.importKey('jwk', jwk, { name: 'RSA-PSS', hash: 'SHA-384' }, true, [
    'sign',
  ]);
}

/** Prints the scheme's figures; returns the one-thread sign + check rate (tickets/s). */
export async function rsaSchemeFigures(
  report: Report,
  key: RsaPrivateKey,
  day: number,
  { reps, sliceMs }: { reps: number; sliceMs: number },
): Promise<number> {
  const info = ticketInfoV2(day);
  const deriveMs = median(
    Array.from({ length: 10 }, (_, k) => {
      const start = performance.now();
      deriveKeyPair(key, ticketInfoV2(day + 1 + k)); // a new day each time: nothing cached
      return performance.now() - start;
    }),
  );
  report.figure("RSA day's key derivation (e', d' by BigInt, JWK import)", deriveMs, 'ms');

  // Genuine blinded messages, so the signers see realistic inputs.
  const pool = Array.from({ length: 16 }, () => {
    const msg = ticketMessageV2(key.keyId, day, randomBytes(32));
    return { msg, ...blindMessage(key, info, msg, csprng) };
  });
  const signer = new RsaSigner(key);
  signer.derived(day); // the per-day cache is warm, as on a running relay

  const suite = RSAPBSSA.SHA384.PSS.Deterministic();
  const libraryKey = await libraryPrivateKey(key);
  let j = 0;
  const libraryMs = await perCall(
    () =>
      suite.blindSign(libraryKey, pool[j++ % pool.length]?.blindedMsg ?? new Uint8Array(), info),
    LIBRARY_SIGNS,
  );
  const libraryRate = 1000 / libraryMs;
  report.figure('RSA issuance, library BlindSign, 1 thread (baseline)', libraryRate, 'tickets/s');
  let i = 0;
  const inlineRate = medianRate(
    () => signer.sign(day, pool[i++ % pool.length]?.blindedMsg ?? new Uint8Array()),
    sliceMs,
    reps,
  );
  report.figure('RSA issuance, sign + check, node:crypto, 1 thread', inlineRate, 'tickets/s', [
    'library BlindSign',
    libraryRate,
  ]);

  // The client's part: blind and finalize timed, the relay's signature between them not.
  const client = async (fast: boolean) => {
    const blindTimes: number[] = [];
    const finalizeTimes: number[] = [];
    for (let round = 0; round < CLIENT_ROUNDS; round++) {
      const msg = ticketMessageV2(key.keyId, day, randomBytes(32));
      const t0 = performance.now();
      const { blindedMsg, inv } = fast
        ? blindMessage(key, info, msg, csprng)
        : await blind(key.spki, info, msg);
      blindTimes.push(performance.now() - t0);
      const blindSig = signer.sign(day, blindedMsg);
      const t1 = performance.now();
      if (fast) finalizeSignature(key, info, msg, blindSig, inv);
      else await finalize(key.spki, info, msg, blindSig, inv);
      finalizeTimes.push(performance.now() - t1);
    }
    return { blindMs: median(blindTimes), finalizeMs: median(finalizeTimes) };
  };
  const library = await client(false);
  const ours = await client(true);
  const libraryMsPerTicket = library.blindMs + library.finalizeMs;
  report.figure('RSA client blind, library', library.blindMs, 'ms');
  report.figure('RSA client blind + finalize, library (baseline)', libraryMsPerTicket, 'ms');
  report.figure('RSA client blind, rsa-blind.ts', ours.blindMs, 'ms');
  report.figure('RSA client finalize, rsa-blind.ts', ours.finalizeMs, 'ms');
  report.figure(
    'RSA client blind + finalize, rsa-blind.ts, per ticket',
    ours.blindMs + ours.finalizeMs,
    'ms',
    ['library blind + finalize', libraryMsPerTicket],
  );

  const entry = pool[0];
  if (entry === undefined) throw new Error('empty pool');
  const signature = finalizeSignature(
    key,
    info,
    entry.msg,
    signer.sign(day, entry.blindedMsg),
    entry.inv,
  );
  const libraryPublic = await webcrypto.subtle.importKey(
    'spki',
    key.spki,
    { name: 'RSA-PSS', hash: 'SHA-384' },
    true,
    ['verify'],
  );
  const libraryVerifyMs = await perCall(
    () => suite.verify(libraryPublic, signature, entry.msg, info),
    CLIENT_ROUNDS,
  );
  const libraryVerifyRate = 1000 / libraryVerifyMs;
  report.figure('RSA verification, library (baseline)', libraryVerifyRate, 'tickets/s');
  const verifier = new RsaVerifier(key);
  const verifyRate = medianRate(
    () => {
      if (!verifier.verify(day, entry.msg, signature)) throw new Error('verification failed');
    },
    sliceMs,
    reps,
  );
  report.figure('RSA verification, node:crypto, 1 thread', verifyRate, 'tickets/s', [
    'library verify',
    libraryVerifyRate,
  ]);
  return inlineRate;
}
