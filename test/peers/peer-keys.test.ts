import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AO_SCHEME, RSA_SCHEME } from '../../src/protocol/messages.js';
import { PeeredKeyring, PeerKeyDirectory } from '../../src/peers/peer-keys.js';
import { relayDescriptor } from '../../src/relay/http-api.js';
import {
  buildDescriptor,
  type DescriptorSigner,
  type ListedKey,
} from '../../src/tickets/descriptor.js';
import { encodePoint } from '../../src/tickets/group.js';
import type { Keyring } from '../../src/tickets/keyring.js';
import { generateSignerKey } from '../../src/tickets/scheme.js';
import { fixedRandom } from '../helpers/fixed-random.js';
import { rsaFixtureKeys } from '../helpers/rsa-keys.js';

/**
 * A peer's ticket keys (docs/design.md §7) of both schemes (§6.5): taken from its verified
 * descriptor, cached on disk, and accepted while their tickets can be redeemed.
 */

const DAY = 20_413;
const at = (day: number, hour = 12) => day * 86_400 + hour * 3600;

const secret = new Uint8Array(32).fill(7);
const PEER: DescriptorSigner = {
  publicKeyHex: bytesToHex(ed25519.getPublicKey(secret)),
  sign: (message) => ed25519.sign(message, secret),
};
const aoKey = generateSignerKey(fixedRandom('peer-ao'));
const rsaKey = rsaFixtureKeys()[2]!;
const AO_ENTRY: ListedKey = {
  keyId: bytesToHex(aoKey.keyId),
  scheme: AO_SCHEME,
  publicKey: bytesToHex(encodePoint(aoKey.y)),
  notBeforeDay: DAY,
  notAfterDay: DAY + 4,
};
const RSA_ENTRY: ListedKey = {
  keyId: bytesToHex(rsaKey.keyId),
  scheme: RSA_SCHEME,
  publicKey: bytesToHex(rsaKey.spki),
  notBeforeDay: DAY + 2,
  notAfterDay: DAY + 31,
};

function descriptorText(keys: ListedKey[]): string {
  return JSON.stringify(
    buildDescriptor({
      base: relayDescriptor({
        algorithm: 'sha256d',
        initialDifficulty: 1,
        ticketDifficulty: 1,
        vardiffTargetSeconds: 15,
      }),
      identity: PEER,
      keys,
      price: 1,
      windowSeconds: 600,
      issuedAt: at(DAY),
    }),
  );
}

let dir: string;
let clock: number;
const now = () => clock;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'powbridge-peer-keys-'));
  clock = at(DAY + 3);
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('peer keys', () => {
  it("takes a peer's keys of both schemes from its descriptor, public parts only", () => {
    const peers = new PeerKeyDirectory(join(dir, 'peers'), now);
    peers.update('r1', PEER.publicKeyHex, descriptorText([AO_ENTRY, RSA_ENTRY]));

    const rsa = peers.acceptedKey(RSA_ENTRY.keyId);
    expect(rsa).toMatchObject({
      scheme: 'rsa',
      owner: 'r1',
      notBeforeDay: DAY + 2,
      notAfterDay: DAY + 31,
    });
    expect(rsa?.key).toEqual({ n: rsaKey.n, e: rsaKey.e, spki: rsaKey.spki, keyId: rsaKey.keyId });
    const ao = peers.acceptedKey(AO_ENTRY.keyId);
    expect(ao).toMatchObject({ scheme: 'ao', owner: 'r1', notAfterDay: DAY + 4 });
    if (!ao || ao.scheme === 'rsa') throw new Error('expected the AO key');
    expect(bytesToHex(encodePoint(ao.key.y))).toBe(AO_ENTRY.publicKey);
    expect(peers.owns('r1', RSA_ENTRY.keyId)).toBe(true);
    expect(peers.owns('r2', RSA_ENTRY.keyId)).toBe(false);

    // Accepted while their tickets can be redeemed: the AO key until the day after its last.
    clock = at(DAY + 5);
    expect(peers.acceptedKey(AO_ENTRY.keyId)).toBeDefined();
    clock = at(DAY + 6);
    expect(peers.acceptedKey(AO_ENTRY.keyId)).toBeUndefined();
    expect(peers.acceptedKey(RSA_ENTRY.keyId)).toBeDefined();
    clock = at(DAY + 1);
    expect(peers.acceptedKey(RSA_ENTRY.keyId)).toBeUndefined(); // not yet issuing
  });

  it('a relay restarted while its peer is down still knows its RSA keys (the cache)', () => {
    const cacheDir = join(dir, 'peers');
    new PeerKeyDirectory(cacheDir, now).update(
      'r1',
      PEER.publicKeyHex,
      descriptorText([RSA_ENTRY]),
    );
    expect(statSync(join(cacheDir, 'r1.descriptor.json')).mode & 0o777).toBe(0o600);
    const restarted = new PeerKeyDirectory(cacheDir, now);
    expect(restarted.loadCached([{ name: 'r1', identity: PEER.publicKeyHex }])).toEqual([]);
    expect(restarted.acceptedKey(RSA_ENTRY.keyId)).toMatchObject({ scheme: 'rsa', owner: 'r1' });
    // A cache that does not verify under the configured identity is skipped, with the reason.
    const other = bytesToHex(ed25519.getPublicKey(new Uint8Array(32).fill(8)));
    const foreign = new PeerKeyDirectory(cacheDir, now);
    expect(foreign.loadCached([{ name: 'r1', identity: other }])).toEqual([
      expect.stringMatching(/^r1: cached descriptor refused: .*not the pinned/),
    ]);
    expect(foreign.acceptedKey(RSA_ENTRY.keyId)).toBeUndefined();
    expect(readFileSync(join(cacheDir, 'r1.descriptor.json'), 'utf8')).toContain(RSA_SCHEME);
  });

  it("the peered keyring issues with our own keys of both schemes and accepts the peer's", () => {
    const peers = new PeerKeyDirectory(join(dir, 'peers'), now);
    peers.update('r1', PEER.publicKeyHex, descriptorText([AO_ENTRY, RSA_ENTRY]));
    const ownRsa = rsaFixtureKeys()[3]!;
    const own: Keyring = {
      issuingKey: () => null,
      issuingRsaKey: (day) => ({ key: ownRsa, notBeforeDay: day, notAfterDay: day }),
      acceptedKey: () => undefined,
    };
    let trusted = true;
    const keyring = new PeeredKeyring(own, peers, () => trusted);
    expect(keyring.issuingRsaKey(DAY + 3)?.key).toBe(ownRsa);
    expect(keyring.issuingKey(DAY + 3)).toBeNull();
    expect(keyring.acceptedKey(RSA_ENTRY.keyId)).toMatchObject({ scheme: 'rsa', owner: 'r1' });
    trusted = false;
    expect(keyring.acceptedKey(RSA_ENTRY.keyId)).toBeUndefined();
    // An own keyring without RSA keys issues none.
    const aoOnly = new PeeredKeyring(
      { issuingKey: () => null, acceptedKey: () => undefined },
      peers,
      () => true,
    );
    expect(aoOnly.issuingRsaKey(DAY)).toBeNull();
  });
});
