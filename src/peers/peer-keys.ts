import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hexToBytes } from '@noble/hashes/utils.js';
import { RSA_SCHEME } from '../protocol/messages.js';
import {
  type DescriptorKey,
  type SignedDescriptor,
  verifyDescriptor,
} from '../tickets/descriptor.js';
import {
  type AcceptedKey,
  type IssuingKey,
  type IssuingRsaKey,
  type Keyring,
  utcDay,
} from '../tickets/keyring.js';
import { rsaPublicKey } from '../tickets/rsa-scheme.js';
import { verifierKey } from '../tickets/scheme.js';

/**
 * The ticket keys of our peers (docs/design.md §7): taken only from a peer's descriptor that verifies
 * against the identity pinned in our config, and cached on disk so a relay restarted while
 * its peer is down still accepts that peer's tickets (the whole point of a backup). Keys of
 * both schemes are taken (docs/design.md §6.5): a peer may issue either, or be changing over.
 */

/** Where verified peer descriptors are cached, under the relay's data directory. */
export const PEER_KEYS_DIR = 'peers';

/** A ticket is redeemable on its issue day and the next: a key verifies one day past its last. */
const GRACE_DAYS = 1;

/** A verified descriptor's key entry as a key we verify tickets with. */
function acceptedKey(k: DescriptorKey, owner: string): AcceptedKey {
  const days = { notBeforeDay: k.notBeforeDay, notAfterDay: k.notAfterDay, owner };
  const publicKey = hexToBytes(k.publicKey);
  return k.scheme === RSA_SCHEME
    ? { scheme: 'rsa', key: rsaPublicKey(publicKey), ...days }
    : { scheme: 'ao', key: verifierKey(publicKey), ...days };
}

interface PeerKeys {
  descriptor: SignedDescriptor;
  keys: Map<string, AcceptedKey>;
}

export class PeerKeyDirectory {
  private readonly byPeer = new Map<string, PeerKeys>();

  constructor(
    /** `<dataDir>/peers`: one verified descriptor per peer. */
    private readonly dir: string,
    private readonly now: () => number,
  ) {}

  /** Load cached descriptors of configured peers; a damaged or foreign one is skipped. */
  loadCached(peers: readonly { name: string; identity: string }[]): string[] {
    const problems: string[] = [];
    for (const peer of peers) {
      let text: string;
      try {
        text = readFileSync(this.file(peer.name), 'utf8');
      } catch {
        continue;
      }
      try {
        this.accept(peer.name, peer.identity, text);
      } catch (err) {
        problems.push(`${peer.name}: cached descriptor refused: ${(err as Error).message}`);
      }
    }
    return problems;
  }

  /** Verify a freshly fetched descriptor, adopt its keys and cache it. */
  update(name: string, identity: string, text: string): SignedDescriptor {
    const descriptor = this.accept(name, identity, text);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const tmp = `${this.file(name)}.tmp`;
    writeFileSync(tmp, text, { mode: 0o600 });
    renameSync(tmp, this.file(name));
    return descriptor;
  }

  descriptor(name: string): SignedDescriptor | undefined {
    return this.byPeer.get(name)?.descriptor;
  }

  /** Does `name` own the key `keyIdHex` (any key it listed, still valid or not)? */
  owns(name: string, keyIdHex: string): boolean {
    return this.byPeer.get(name)?.keys.has(keyIdHex) ?? false;
  }

  /** A peer's key that still verifies today, with the peer's name as owner. */
  acceptedKey(keyIdHex: string): AcceptedKey | undefined {
    const today = utcDay(this.now());
    for (const { keys } of this.byPeer.values()) {
      const key = keys.get(keyIdHex);
      if (key && today >= key.notBeforeDay && today <= key.notAfterDay + GRACE_DAYS) return key;
    }
    return undefined;
  }

  private accept(name: string, identity: string, text: string): SignedDescriptor {
    const descriptor = verifyDescriptor(text, identity);
    const keys = new Map<string, AcceptedKey>();
    for (const k of descriptor.tickets.keys) keys.set(k.keyId, acceptedKey(k, name));
    this.byPeer.set(name, { descriptor, keys });
    return descriptor;
  }

  private file(name: string): string {
    return join(this.dir, `${name}.descriptor.json`);
  }
}

/** Our own keys first, then the keys of peers whose tickets we accept. */
export class PeeredKeyring implements Keyring {
  constructor(
    private readonly own: Keyring,
    private readonly peers: PeerKeyDirectory,
    private readonly accepting: (peer: string) => boolean,
  ) {}

  issuingKey(day: number): IssuingKey | null {
    return this.own.issuingKey(day);
  }

  issuingRsaKey(day: number): IssuingRsaKey | null {
    return this.own.issuingRsaKey?.(day) ?? null;
  }

  acceptedKey(keyIdHex: string): AcceptedKey | undefined {
    const own = this.own.acceptedKey(keyIdHex);
    if (own) return own;
    const peer = this.peers.acceptedKey(keyIdHex);
    return peer && this.accepting(peer.owner) ? peer : undefined;
  }
}
