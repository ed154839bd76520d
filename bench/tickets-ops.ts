import { csprng, encodePoint, Point } from '../src/tickets/group.js';
import {
  clientChallenge,
  clientUnblind,
  generateSignerKey,
  InfoPointCache,
  infoPoint,
  type Signature,
  signerCommit,
  signerRespond,
  ticketInfo,
  ticketMessage,
  verifierKey,
  verifySignature,
} from '../src/tickets/scheme.js';

/** The ticket operations bench/tickets.ts measures, shared with its worker threads. */

const random = csprng;
const DAY = 20_413;
const key = generateSignerKey(random);
const info = ticketInfo(key.keyId, DAY);
const zBytes = encodePoint(infoPoint(info));
const yBytes = encodePoint(key.y);

/** Signer side of one issuance: commit (g^u, g^s·z^d) and respond. */
export function issuanceOp(tables: boolean): () => void {
  const cached = new InfoPointCache().get(key.keyId, DAY).z;
  return () => {
    // Without tables z is a fresh point each time, as if nothing were cached.
    const z = tables ? cached : Point.fromBytes(zBytes);
    const { session } = signerCommit(z, random);
    signerRespond(key, session, 12345n);
  };
}

/** One complete ticket to verify again and again. */
function sampleTicket(): { msg: Uint8Array; signature: Signature } {
  const verifier = verifierKey(yBytes);
  const z = infoPoint(info);
  const { session, commitment } = signerCommit(z, random);
  const msg = ticketMessage(random(32));
  const { e, blinding } = clientChallenge(verifier, z, info, commitment, msg, random);
  const signature = clientUnblind(
    verifier,
    z,
    commitment,
    signerRespond(key, session, e),
    blinding,
  );
  return { msg, signature };
}

export function verificationOp(tables: boolean): () => void {
  const { msg, signature } = sampleTicket();
  const verifier = verifierKey(yBytes);
  const z = new InfoPointCache().get(key.keyId, DAY).z;
  return () => {
    const ok = tables
      ? verifySignature(verifier, z, info, msg, signature)
      : verifySignature(
          { y: Point.fromBytes(yBytes), keyId: key.keyId },
          Point.fromBytes(zBytes),
          info,
          msg,
          signature,
        );
    if (!ok) throw new Error('benchmark ticket does not verify');
  };
}
