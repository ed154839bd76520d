import { createHash } from 'node:crypto';

export function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(data).digest());
}

/** SHA-256 applied twice: transaction ids, merkle nodes, and the sha256d block hash. */
export function sha256d(data: Uint8Array): Uint8Array {
  return sha256(sha256(data));
}
