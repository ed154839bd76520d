import { encodePoint, encodeScalar, G } from '../../src/tickets/group.js';
import {
  challengeHash,
  clientChallenge,
  clientUnblind,
  generateSignerKey,
  infoPoint,
  signerCommit,
  signerRespond,
  ticketInfo,
  ticketMessage,
  verifierKey,
} from '../../src/tickets/scheme.js';
import { encodeTicket } from '../../src/tickets/ticket.js';
import { fixedRandom } from '../helpers/fixed-random.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const sc = (s: bigint) => hex(encodeScalar(s));

/**
 * The published vectors: everything derived from one seed, so another implementation can
 * reproduce each step. Randomness is drawn in this order: x (64 bytes), u, s, d (64 each),
 * x_c (32), t1..t4 (64 each) — 64-byte draws reduced mod q as in randomScalar.
 */
export function buildTicketVectors(seed = 'powbridge ticket vectors v1', day = 20_413) {
  const random = fixedRandom(seed);
  const key = generateSignerKey(random);
  const info = ticketInfo(key.keyId, day);
  const z = infoPoint(info);
  const { session, commitment } = signerCommit(z, random);
  const xc = random(32);
  const msg = ticketMessage(xc);
  const verifier = verifierKey(encodePoint(key.y));
  const { e, blinding } = clientChallenge(verifier, z, info, commitment, msg, random);
  const response = signerRespond(key, session, e);
  const signature = clientUnblind(verifier, z, commitment, response, blinding);
  const hInput = { alpha: G, beta: G.double(), z, y: key.y };
  return {
    about:
      'powbridge ticket scheme vectors (docs/design.md §6.1). Scalars are 32-byte little-endian, points 32-byte ristretto255. Randomness: SHA-256(seed/counter) stream; draw order x, u, s, d, x_c, t1, t2, t3, t4 (scalars from 64 bytes mod q).',
    seed,
    day,
    F: { info: hex(info), dst: 'powbridge-v1-ao-F', z: hex(encodePoint(z)) },
    H: {
      dst: 'powbridge-v1-ao-H',
      alpha: hex(encodePoint(hInput.alpha)),
      beta: hex(encodePoint(hInput.beta)),
      z: hex(encodePoint(z)),
      y: hex(encodePoint(key.y)),
      info: hex(info),
      msg: hex(msg),
      h: sc(challengeHash(hInput.alpha, hInput.beta, z, key.y, info, msg)),
    },
    issuance: {
      x: sc(key.x),
      y: hex(encodePoint(key.y)),
      keyId: hex(key.keyId),
      u: sc(session.u),
      s: sc(session.s),
      d: sc(session.d),
      a: hex(encodePoint(commitment.a)),
      b: hex(encodePoint(commitment.b)),
      xc: hex(xc),
      msg: hex(msg),
      t1: sc(blinding.t1),
      t2: sc(blinding.t2),
      t3: sc(blinding.t3),
      t4: sc(blinding.t4),
      e: sc(e),
      r: sc(response.r),
      c: sc(response.c),
      sResponse: sc(response.s),
      dResponse: sc(response.d),
      rho: sc(signature.rho),
      omega: sc(signature.omega),
      sigma: sc(signature.sigma),
      delta: sc(signature.delta),
      ticket: encodeTicket({ keyId: key.keyId, day, xc, signature }),
    },
  };
}
