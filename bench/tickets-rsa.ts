import { readFileSync } from 'node:fs';
import { randomBytes, webcrypto } from 'node:crypto';
import { RSAPBSSA } from '@cloudflare/blindrsa-ts';
import { benchOptions, median, medianRate } from './lib/report.js';
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

/**
 * Tickets v2, the scheme alone (docs/design.md §6.5): the relay's BlindSign through node:crypto
 * (raw RSA with CRT under the day's cached derived key, plus the public-operation check) against
 * the reference library's pure-JS BlindSign (the baseline, same run); the day's key derivation;
 * the client's blind + finalize (the library); verification with node:crypto and the library.
 * One thread. The key is the 2048-bit safe-prime key stored in test/vectors/tickets-v2.json.
 *
 *   node --import tsx bench/tickets-rsa.ts [--json] [--reps 5] [--slice 1]
 */

const { report, reps: REPS, sliceMs: SLICE_MS } = benchOptions('tickets-rsa');
const LIBRARY_SIGNS = 6;
const CLIENT_ROUNDS = 30;

function storedKey(): RsaPrivateKey {
  const file = new URL('../test/vectors/tickets-v2.json', import.meta.url);
  const { key } = (
    JSON.parse(readFileSync(file, 'utf8')) as { powbridge: { key: { p: string; q: string } } }
  ).powbridge;
  return rsaPrivateKey(BigInt(`0x${key.p}`), BigInt(`0x${key.q}`));
}

/** Milliseconds per call of an async operation: median over `rounds` sequential calls. */
async function perCall(op: () => Promise<unknown>, rounds: number): Promise<number> {
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

async function main(): Promise<void> {
  report.say(
    `tickets-rsa: Node ${process.versions.node}, median of ${REPS} × ${SLICE_MS / 1000} s`,
  );
  const key = storedKey();
  const day = 20_413;
  const info = ticketInfoV2(day);

  const deriveTimes = Array.from({ length: 10 }, (_, k) => {
    const start = performance.now();
    deriveKeyPair(key, ticketInfoV2(day + k)); // a new day each time: nothing cached
    return performance.now() - start;
  });
  const deriveMs = median(deriveTimes);
  report.figure(
    "day's key derivation (e', d' by BigInt, JWK import), once per day",
    deriveMs,
    'ms',
  );

  // A pool of genuine blinded messages, so the signer sees realistic inputs.
  const pool: { msg: Uint8Array; blindedMsg: Uint8Array; inv: Uint8Array }[] = [];
  for (let i = 0; i < 16; i++) {
    const msg = ticketMessageV2(key.keyId, day, randomBytes(32));
    pool.push({ msg, ...(await blind(key.spki, info, msg)) });
  }
  const signer = new RsaSigner(key);
  signer.derived(day); // the per-day cache is warm, as on a running relay

  const suite = RSAPBSSA.SHA384.PSS.Deterministic();
  const libraryKey = await libraryPrivateKey(key);
  const blindedMsgs = pool.map((p) => p.blindedMsg);
  let j = 0;
  const libraryMs = await perCall(
    () =>
      suite.blindSign(libraryKey, blindedMsgs[j++ % blindedMsgs.length] ?? new Uint8Array(), info),
    LIBRARY_SIGNS,
  );
  const libraryRate = 1000 / libraryMs;
  report.figure('issuance BlindSign, library pure JS (baseline)', libraryRate, 'tickets/s');

  let i = 0;
  const nodeRate = medianRate(
    () => {
      const entry = pool[i++ % pool.length];
      if (entry !== undefined) signer.sign(day, entry.blindedMsg);
    },
    SLICE_MS,
    REPS,
  );
  report.figure('issuance sign + check, node:crypto', nodeRate, 'tickets/s', [
    'library BlindSign',
    libraryRate,
  ]);
  report.figure('issuance sign + check, node:crypto, per ticket', 1000 / nodeRate, 'ms');

  // The client's part only: blind and finalize timed, the relay's signature in between not.
  const blindTimes: number[] = [];
  const finalizeTimes: number[] = [];
  for (let round = 0; round < CLIENT_ROUNDS; round++) {
    const msg = ticketMessageV2(key.keyId, day, randomBytes(32));
    const t0 = performance.now();
    const { blindedMsg, inv } = await blind(key.spki, info, msg);
    blindTimes.push(performance.now() - t0);
    const blindSig = signer.sign(day, blindedMsg);
    const t1 = performance.now();
    await finalize(key.spki, info, msg, blindSig, inv);
    finalizeTimes.push(performance.now() - t1);
  }
  const blindMs = median(blindTimes);
  const finalizeMs = median(finalizeTimes);
  report.figure('client blind (library), per ticket', blindMs, 'ms');
  report.figure('client finalize (library), per ticket', finalizeMs, 'ms');
  report.figure('client blind + finalize (library), per ticket', blindMs + finalizeMs, 'ms');

  const entry = pool[0];
  if (entry === undefined) throw new Error('empty pool');
  const blindSig = signer.sign(day, entry.blindedMsg);
  const signature = await finalize(key.spki, info, entry.msg, blindSig, entry.inv);
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
  report.figure('verification, library (baseline)', libraryVerifyRate, 'tickets/s');
  const verifier = new RsaVerifier(key);
  const verifyRate = medianRate(
    () => {
      if (!verifier.verify(day, entry.msg, signature)) throw new Error('verification failed');
    },
    SLICE_MS,
    REPS,
  );
  report.figure('verification, node:crypto (derived key cached per day)', verifyRate, 'tickets/s', [
    'library verify',
    libraryVerifyRate,
  ]);
}

await main();
