import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import { AO_SCHEME, RSA_SCHEME } from '../../src/protocol/messages.js';
import { relayDescriptor } from '../../src/relay/http-api.js';
import {
  buildDescriptor,
  canonicalJson,
  type DescriptorKey,
  DescriptorError,
  type DescriptorSigner,
  descriptorSigningBytes,
  type SignedDescriptor,
  verifyDescriptor,
} from '../../src/tickets/descriptor.js';
import { encodePoint } from '../../src/tickets/group.js';
import { KeyPin, PinError } from '../../src/tickets/key-pin.js';
import { KeyStore } from '../../src/tickets/key-store.js';
import { generateSignerKey } from '../../src/tickets/scheme.js';
import { fixedRandom } from '../helpers/fixed-random.js';
import { fixtureRsaKeys, rsaFixtureKeys } from '../helpers/rsa-keys.js';

const DAY = 20_413;
const at = (day: number, hour = 12) => day * 86_400 + hour * 3600;

function signer(seedByte: number): DescriptorSigner {
  const secret = new Uint8Array(32).fill(seedByte);
  return {
    publicKeyHex: bytesToHex(ed25519.getPublicKey(secret)),
    sign: (message) => ed25519.sign(message, secret),
  };
}

function ticketKey(seed: string, notBeforeDay: number, notAfterDay: number): DescriptorKey {
  const key = generateSignerKey(fixedRandom(seed));
  return {
    keyId: bytesToHex(key.keyId),
    scheme: AO_SCHEME,
    publicKey: bytesToHex(encodePoint(key.y)),
    notBeforeDay,
    notAfterDay,
  };
}

/** Fixture RSA key `index` listed for the given days. */
function rsaTicketKey(index: number, notBeforeDay: number, notAfterDay: number): DescriptorKey {
  const key = rsaFixtureKeys()[index];
  if (!key) throw new Error(`no fixture RSA key ${index}`);
  return {
    keyId: bytesToHex(key.keyId),
    scheme: RSA_SCHEME,
    publicKey: bytesToHex(key.spki),
    notBeforeDay,
    notAfterDay,
  };
}

const BASE = relayDescriptor({
  algorithm: 'scrypt',
  initialDifficulty: 2 ** -10,
  ticketDifficulty: 1,
  vardiffTargetSeconds: 15,
});
const KEY_A = ticketKey('a', DAY, DAY + 4);
const KEY_B = ticketKey('b', DAY + 5, DAY + 34);
const RELAY = signer(1);

function build(keys: DescriptorKey[] = [KEY_A, KEY_B], identity = RELAY): SignedDescriptor {
  return buildDescriptor({
    base: BASE,
    identity,
    keys,
    price: 64,
    windowSeconds: 600,
    issuedAt: at(DAY),
  });
}

/** Sign arbitrary content, for descriptors buildDescriptor itself would refuse. */
function signRaw(content: Record<string, unknown>, identity = RELAY): Record<string, unknown> {
  const unsigned = { ...content, identity: identity.publicKeyHex };
  return { ...unsigned, signature: bytesToHex(identity.sign(descriptorSigningBytes(unsigned))) };
}

const clone = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

/** Paths to every leaf of a JSON value. */
function leaves(value: unknown, path: (string | number)[] = []): (string | number)[][] {
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).flatMap(([k, v]) =>
      leaves(v, [...path, Array.isArray(value) ? Number(k) : k]),
    );
  }
  return [path];
}

function changeLeaf(root: unknown, path: (string | number)[]): void {
  let node = root as Record<string | number, unknown>;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, unknown>;
  const last = path.at(-1) as string | number;
  const v = node[last];
  if (typeof v === 'number') node[last] = v + 1;
  else if (typeof v === 'string') {
    const c = v.at(-1) === '0' ? '1' : '0';
    node[last] = v.slice(0, -1) + c;
  } else node[last] = !v;
}

describe('canonical JSON', () => {
  it('sorts keys (UTF-16 order), drops whitespace, writes numbers as JSON.stringify', () => {
    expect(canonicalJson({ b: 1, a: [true, null, 'x'], c: { z: 0.5, y: -1e21, é: 1, Z: 2 } })).toBe(
      '{"a":[true,null,"x"],"b":1,"c":{"Z":2,"y":-1e+21,"z":0.5,"é":1}}',
    );
    // RFC 8785 §3.2.3: a code point above U+FFFF sorts by its UTF-16 surrogates.
    expect(canonicalJson({ '\u{1F600}': 1, '\uFB33': 2 })).toBe('{"\u{1F600}":1,"\uFB33":2}');
    expect(canonicalJson('a"\n\u0001')).toBe('"a\\"\\n\\u0001"');
  });

  it.each([
    ['NaN', NaN],
    ['Infinity', { a: Infinity }],
    ['undefined', { a: undefined }],
    ['bigint', [1n]],
    ['Date', new Date(0)],
    ['function', { f: () => 1 }],
  ])('refuses %s', (_name, value) => {
    expect(() => canonicalJson(value)).toThrow(DescriptorError);
  });

  it('refuses absurd nesting instead of overflowing the stack', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100; i++) deep = [deep];
    expect(() => canonicalJson(deep)).toThrow(/nested too deeply/);
  });
});

describe('signed descriptor', () => {
  it('carries the relay fields, identity, keys and terms, and verifies under the identity', () => {
    const descriptor = build();
    expect(descriptor).toMatchObject({
      version: 1,
      algorithm: 'scrypt',
      endpoints: { circuit: '/v1/circuit' },
      difficulty: { initial: 2 ** -10, ticketDifficulty: 1, vardiffTargetSeconds: 15 },
      identity: RELAY.publicKeyHex,
      issuedAt: at(DAY),
      tickets: { price: 64, windowSeconds: 600, keys: [KEY_A, KEY_B] },
      backupRelays: [],
    });
    expect(descriptor.tickets.expiry).toMatch(/issue day and the next UTC day/);
    const verified = verifyDescriptor(descriptor, RELAY.publicKeyHex);
    expect(verified.tickets.keys).toEqual([KEY_A, KEY_B]);
    expect(
      verifyDescriptor(JSON.stringify(descriptor), ed25519.getPublicKey(new Uint8Array(32).fill(1)))
        .identity,
    ).toBe(RELAY.publicKeyHex);
  });

  it('is a fixed vector: canonical bytes and Ed25519 signature (for other implementations)', () => {
    const descriptor = build([KEY_A]);
    const text = new TextDecoder().decode(descriptorSigningBytes(descriptor));
    expect(text).toBe(
      'powbridge/descriptor/v1\n' +
        '{"algorithm":"scrypt","backupRelays":[],"difficulty":{"initial":0.0009765625,' +
        '"ticketDifficulty":1,"vardiffTargetSeconds":15},"endpoints":{"circuit":"/v1/circuit"},' +
        `"identity":"${RELAY.publicKeyHex}","issuedAt":${at(DAY)},"tickets":{"expiry":` +
        `${JSON.stringify(descriptor.tickets.expiry)},"keys":[{"keyId":"${KEY_A.keyId}",` +
        `"notAfterDay":${DAY + 4},"notBeforeDay":${DAY},"publicKey":"${KEY_A.publicKey}",` +
        `"scheme":"ao-ristretto255"}],` +
        '"price":64,"windowSeconds":600},"version":1}',
    );
    expect(RELAY.publicKeyHex).toBe(
      '8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c',
    );
    expect(descriptor.signature).toMatchInlineSnapshot(
      `"e9ad7e70a7f17dc36b06f87aea26cb9be21af87a57ffdbd0e7682e656b25c59a7431673f6d56dad99328ee5816dc3d905cf13034a5a185fb4f4abc208fe3460d"`,
    );
  });

  it('verifies whatever the whitespace and key order on the wire', () => {
    const descriptor = build();
    const reordered = Object.fromEntries(Object.entries(descriptor).reverse());
    expect(() =>
      verifyDescriptor(JSON.stringify(reordered, null, 2), RELAY.publicKeyHex),
    ).not.toThrow();
  });

  it('fails on any change to any field', () => {
    const descriptor = build();
    const paths = leaves(descriptor).filter((p) => p[0] !== 'identity');
    expect(paths.length).toBeGreaterThan(15);
    for (const path of paths) {
      const changed = clone(descriptor);
      changeLeaf(changed, path);
      expect(() => verifyDescriptor(changed, RELAY.publicKeyHex), path.join('.')).toThrow(
        DescriptorError,
      );
    }
  });

  it('fails on a changed key, price, added field, reordered key list, or one flipped byte', () => {
    const descriptor = build();
    const variants: [string, (d: SignedDescriptor) => unknown][] = [
      [
        'key swapped',
        (d) => ({
          ...d,
          tickets: { ...d.tickets, keys: [KEY_A, ticketKey('c', DAY + 5, DAY + 34)] },
        }),
      ],
      ['price', (d) => ({ ...d, tickets: { ...d.tickets, price: 1 } })],
      ['added field', (d) => ({ ...d, note: 'hi' })],
      ['key removed', (d) => ({ ...d, tickets: { ...d.tickets, keys: [KEY_A] } })],
      ['keys reordered', (d) => ({ ...d, tickets: { ...d.tickets, keys: [KEY_B, KEY_A] } })],
      [
        'backup relay added',
        (d) => ({ ...d, backupRelays: [{ identity: '11'.repeat(32), url: 'http://x' }] }),
      ],
    ];
    for (const [name, change] of variants) {
      expect(() => verifyDescriptor(change(clone(descriptor)), RELAY.publicKeyHex), name).toThrow(
        /bad signature/,
      );
    }
    const text = JSON.stringify(descriptor);
    const sigAt = text.indexOf(descriptor.signature) + 10;
    const flipped =
      text.slice(0, sigAt) + (text[sigAt] === 'a' ? 'b' : 'a') + text.slice(sigAt + 1);
    expect(() => verifyDescriptor(flipped, RELAY.publicKeyHex)).toThrow(/bad signature/);
  });

  it('fails under another identity, even when re-signed by it', () => {
    const descriptor = build();
    const other = signer(2);
    expect(() => verifyDescriptor(descriptor, other.publicKeyHex)).toThrow(/not the pinned/);
    const forged = build([KEY_A, KEY_B], other);
    expect(() => verifyDescriptor(forged, RELAY.publicKeyHex)).toThrow(/not the pinned/);
    // Claiming the pinned identity but signed by another key.
    const { signature: _s, identity: _i, ...content } = forged;
    const lying = { ...content, identity: RELAY.publicKeyHex, signature: forged.signature };
    expect(() => verifyDescriptor(lying, RELAY.publicKeyHex)).toThrow(/bad signature/);
  });

  it('checks structure and keys even when correctly signed', () => {
    const { signature: _s, identity: _i, ...content } = build();
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['missing tickets', { ...content, tickets: undefined }, /tickets/],
      ['bad version', { ...content, version: 2 }, /version/],
      [
        'key id of another key',
        { ...content, tickets: { ...content.tickets, keys: [{ ...KEY_A, keyId: KEY_B.keyId }] } },
        /key id does not match/,
      ],
      [
        'not a point',
        {
          ...content,
          tickets: { ...content.tickets, keys: [{ ...KEY_A, publicKey: 'ff'.repeat(32) }] },
        },
        /not a valid ristretto255 point/,
      ],
      [
        'two keys for a day',
        {
          ...content,
          tickets: { ...content.tickets, keys: [KEY_A, { ...KEY_B, notBeforeDay: DAY + 4 }] },
        },
        /both valid on day/,
      ],
      [
        'reversed days',
        {
          ...content,
          tickets: { ...content.tickets, keys: [{ ...KEY_A, notBeforeDay: DAY + 9 }] },
        },
        /notAfterDay/,
      ],
      [
        'upper-case hex',
        {
          ...content,
          tickets: { ...content.tickets, keys: [{ ...KEY_A, keyId: KEY_A.keyId.toUpperCase() }] },
        },
        /keyId/,
      ],
      ['non-positive price', { ...content, tickets: { ...content.tickets, price: 0 } }, /price/],
    ];
    for (const [name, value, message] of cases) {
      const clean = JSON.parse(JSON.stringify(value)) as Record<string, unknown>;
      expect(() => verifyDescriptor(signRaw(clean), RELAY.publicKeyHex), name).toThrow(message);
    }
    expect(() => verifyDescriptor('{"version":', RELAY.publicKeyHex)).toThrow(/not valid JSON/);
    expect(() => verifyDescriptor('x'.repeat(70_000), RELAY.publicKeyHex)).toThrow(/too large/);
    expect(() => verifyDescriptor(build(), 'abcd')).toThrow(/pinned identity/);
  });

  it('build refuses a base that sets signed fields, and keys its clients would refuse', () => {
    expect(() =>
      buildDescriptor({
        base: { ...BASE, signature: 'x' },
        identity: RELAY,
        keys: [],
        price: 1,
        windowSeconds: 600,
        issuedAt: 0,
      }),
    ).toThrow(/must not set "signature"/);
    expect(() => build([KEY_A, { ...KEY_B, notBeforeDay: DAY }])).toThrow(/both valid/);
  });
});

describe('signed descriptor: two schemes', () => {
  const RSA_A = rsaTicketKey(0, DAY, DAY + 29);
  const RSA_B = rsaTicketKey(1, DAY + 30, DAY + 59);

  it('lists keys of both schemes, each with its scheme, on the same days', () => {
    const descriptor = build([KEY_A, RSA_A, KEY_B, RSA_B]);
    expect(descriptor.tickets.keys.map((k) => k.scheme)).toEqual([
      AO_SCHEME,
      RSA_SCHEME,
      AO_SCHEME,
      RSA_SCHEME,
    ]);
    const verified = verifyDescriptor(JSON.stringify(descriptor), RELAY.publicKeyHex);
    expect(verified.tickets.keys).toEqual([KEY_A, RSA_A, KEY_B, RSA_B]);
    expect(RSA_A.publicKey).toHaveLength(294 * 2); // SPKI DER of a 2048-bit key
  });

  it('refuses two keys of one scheme on a day, as build and as a client', () => {
    expect(() => build([RSA_A, { ...RSA_B, notBeforeDay: DAY + 29 }])).toThrow(
      /both valid on day .*one issuing key per scheme per day/,
    );
    const { signature: _s, identity: _i, ...content } = build([RSA_A]);
    const two = {
      ...content,
      tickets: { ...content.tickets, keys: [RSA_A, { ...RSA_B, notBeforeDay: DAY }] },
    };
    expect(() => verifyDescriptor(signRaw(clone(two)), RELAY.publicKeyHex)).toThrow(
      /both valid on day/,
    );
  });

  it('checks RSA and scheme fields even when correctly signed', () => {
    const { signature: _s, identity: _i, ...content } = build([KEY_A]);
    const withKeys = (keys: unknown[]) =>
      clone({ ...content, tickets: { ...content.tickets, keys } });
    const spki = RSA_A.publicKey;
    const cases: [string, unknown[], RegExp][] = [
      ['RSA key id of another key', [{ ...RSA_A, keyId: RSA_B.keyId }], /key id does not match/],
      [
        'truncated SPKI',
        [{ ...RSA_A, publicKey: spki.slice(0, -2) }],
        /not a 2048-bit RSA public key/,
      ],
      [
        'an AO point as RSA key',
        [{ ...KEY_A, scheme: RSA_SCHEME }],
        /not a 2048-bit RSA public key/,
      ],
      [
        'an SPKI as AO key',
        [{ ...RSA_A, scheme: AO_SCHEME }],
        /publicKey: expected 32 bytes of hex for ao-ristretto255/,
      ],
      ['unknown scheme', [{ ...KEY_A, scheme: 'rsa' }], /scheme: expected "ao-ristretto255" or/],
      [
        'SPKI over 600 bytes',
        [{ ...RSA_A, publicKey: spki + '00'.repeat(310) }],
        /publicKey: expected 32 to 600 bytes/,
      ],
      ['a key listed twice', [KEY_A, KEY_A], /listed twice/],
    ];
    for (const [name, keys, message] of cases) {
      expect(() => verifyDescriptor(signRaw(withKeys(keys)), RELAY.publicKeyHex), name).toThrow(
        message,
      );
    }
  });

  it('accepts a descriptor from before schemes: entries without scheme are Abe–Okamoto', () => {
    const { signature: _s, identity: _i, ...content } = build([KEY_A, KEY_B]);
    const old = clone({
      ...content,
      tickets: { ...content.tickets, keys: [KEY_A, KEY_B].map(({ scheme: _x, ...k }) => k) },
    });
    const signed = signRaw(old);
    const verified = verifyDescriptor(JSON.stringify(signed), RELAY.publicKeyHex);
    expect(verified.tickets.keys).toEqual([KEY_A, KEY_B]);
    // The signature covers exactly what was sent: a scheme added on the way breaks it.
    const keys = (signed.tickets as { keys: Record<string, unknown>[] }).keys;
    keys[0] = Object.assign({}, keys[0], { scheme: AO_SCHEME });
    expect(() => verifyDescriptor(signed, RELAY.publicKeyHex)).toThrow(/bad signature/);
  });
});

describe('key pinning', () => {
  it('accepts listed keys only for their days, with their public keys', () => {
    const pin = new KeyPin(RELAY.publicKeyHex);
    pin.accept(JSON.stringify(build()), at(DAY));
    expect(pin.check({ keyId: KEY_A.keyId, publicKey: KEY_A.publicKey, day: DAY })).toMatchObject(
      KEY_A,
    );
    expect(pin.check({ keyId: KEY_B.keyId, day: DAY + 5 })).toMatchObject(KEY_B);
    expect(() => pin.check({ keyId: KEY_A.keyId, day: DAY + 5 })).toThrow(
      /outside its listed days/,
    );
    expect(() => pin.check({ keyId: KEY_A.keyId, publicKey: KEY_B.publicKey, day: DAY })).toThrow(
      PinError,
    );
    const unknown = ticketKey('u', DAY, DAY);
    expect(() => pin.check({ keyId: unknown.keyId, day: DAY })).toThrow(/does not list/);
  });

  it('refuses a descriptor signed by another relay', () => {
    const pin = new KeyPin(RELAY.publicKeyHex);
    expect(() => pin.accept(build([KEY_A], signer(3)), at(DAY))).toThrow(/not the pinned/);
  });

  it('refuses a changed key id ↔ public key mapping, changing nothing', () => {
    const pin = new KeyPin(RELAY.publicKeyHex);
    pin.update([KEY_A], at(DAY));
    const before = pin.toJSON();
    // A relay that ground a key-id collision (8 bytes: about 2^32 work).
    expect(() => pin.update([{ ...KEY_A, publicKey: KEY_B.publicKey }], at(DAY + 1))).toThrow(
      /changed the public key/,
    );
    expect(pin.toJSON()).toEqual(before);
  });

  it('refuses a descriptor that puts a second key on a day, or rewrites days already seen', () => {
    const pin = new KeyPin(RELAY.publicKeyHex);
    const a = ticketKey('a', DAY, DAY + 29);
    pin.update([a], at(DAY + 3));
    // Another key for the same days, the old one silently dropped from the list.
    expect(() => pin.update([ticketKey('x', DAY, DAY + 29)], at(DAY + 3))).toThrow(/both be valid/);
    // The old key cut back before days on which it was listed, a new key on those days.
    expect(() =>
      pin.update([{ ...a, notAfterDay: DAY + 1 }, ticketKey('x', DAY + 2, DAY + 31)], at(DAY + 4)),
    ).toThrow(/days already begun/);
    expect(pin.pinned()).toEqual([{ ...a, seenDay: DAY + 3 }]);
  });

  it('follows an honest rotation, even when the client looks only later', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'powbridge-pin-'));
    try {
      let clock = at(DAY);
      const store = await KeyStore.open(dataDir, {
        now: () => clock,
        generateRsaKey: fixtureRsaKeys(),
      });
      const current = () =>
        buildDescriptor({
          base: BASE,
          identity: store.identity,
          keys: store.ticketKeys(),
          price: 64,
          windowSeconds: 600,
          issuedAt: clock,
        });
      const pin = new KeyPin(store.identity.publicKeyHex);
      pin.accept(current(), clock);
      const [first] = store.ticketKeys();
      clock = at(DAY + 4);
      const { created } = await store.rotate();
      clock = at(DAY + 10);
      pin.accept(JSON.stringify(current()), clock);
      expect(pin.check({ keyId: first!.keyId, day: DAY + 4 })).toBeDefined();
      expect(() => pin.check({ keyId: first!.keyId, day: DAY + 5 })).toThrow(PinError);
      expect(
        pin.check({ keyId: created.keyId, publicKey: created.publicKey, day: DAY + 10 }),
      ).toBeDefined();
      // The first key's tickets have expired; both sides drop it.
      expect(await store.prune()).toEqual([first!.keyId]);
      pin.prune(clock);
      expect(pin.pinned().map((k) => k.keyId)).toEqual([created.keyId]);
      pin.accept(current(), clock);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('tolerates the relay clock being a few minutes behind at midnight', () => {
    const pin = new KeyPin(RELAY.publicKeyHex);
    const a = ticketKey('a', DAY, DAY + 29);
    // Our clock says 00:05 on DAY+4; the relay is still on DAY+3 and rotates then.
    pin.update([a], at(DAY + 4, 0) + 300);
    expect(() =>
      pin.update(
        [{ ...a, notAfterDay: DAY + 3 }, ticketKey('b', DAY + 4, DAY + 33)],
        at(DAY + 4, 1),
      ),
    ).not.toThrow();
  });

  it('pins the scheme of each key: an offer under another scheme is refused', () => {
    const rsa = rsaTicketKey(0, DAY, DAY + 29);
    const pin = new KeyPin(RELAY.publicKeyHex);
    pin.accept(build([KEY_A, rsa]), at(DAY));
    expect(
      pin.check({ keyId: rsa.keyId, publicKey: rsa.publicKey, day: DAY, scheme: RSA_SCHEME }),
    ).toMatchObject(rsa);
    expect(pin.check({ keyId: KEY_A.keyId, day: DAY, scheme: AO_SCHEME })).toMatchObject(KEY_A);
    expect(() => pin.check({ keyId: rsa.keyId, day: DAY, scheme: AO_SCHEME })).toThrow(
      `relay offered ticket key ${rsa.keyId} as ao-ristretto255, but its descriptor lists it as rsapbssa-sha384-pss-deterministic`,
    );
    expect(() => pin.check({ keyId: KEY_A.keyId, day: DAY, scheme: RSA_SCHEME })).toThrow(PinError);
  });

  it('refuses a key id that changes scheme, and two keys of one scheme on a day', () => {
    const pin = new KeyPin(RELAY.publicKeyHex);
    pin.update([KEY_A], at(DAY));
    const before = pin.toJSON();
    expect(() => pin.update([{ ...KEY_A, scheme: RSA_SCHEME }], at(DAY))).toThrow(
      /changed the scheme of ticket key .* from ao-ristretto255 to rsapbssa/,
    );
    expect(pin.toJSON()).toEqual(before);
    // A change-over: an RSA key on the AO key's days is fine; a second RSA key on them is not.
    const rsa = rsaTicketKey(0, DAY, DAY + 29);
    pin.update([KEY_A, rsa], at(DAY));
    expect(() => pin.update([KEY_A, rsa, rsaTicketKey(1, DAY + 3, DAY + 9)], at(DAY))).toThrow(
      /would both be valid on day .*one issuing key per scheme per day/,
    );
    expect(pin.pinned().map((k) => k.keyId)).toEqual([KEY_A.keyId, rsa.keyId]);
  });

  it('restores saved state from before schemes as Abe–Okamoto keys', () => {
    const { scheme: _s, ...legacy } = KEY_A;
    const pin = KeyPin.fromJSON({
      identity: RELAY.publicKeyHex,
      keys: [{ ...legacy, seenDay: DAY }],
    });
    expect(pin.pinned()).toEqual([{ ...KEY_A, seenDay: DAY }]);
    expect(pin.check({ keyId: KEY_A.keyId, day: DAY, scheme: AO_SCHEME })).toMatchObject(KEY_A);
    expect(() => pin.check({ keyId: KEY_A.keyId, day: DAY, scheme: RSA_SCHEME })).toThrow(PinError);
    pin.accept(build([KEY_A, rsaTicketKey(0, DAY, DAY + 4)]), at(DAY));
  });

  it('follows a relay changing over from ao to rsa', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'powbridge-pin-'));
    try {
      let clock = at(DAY);
      const now = () => clock;
      const ao = await KeyStore.open(dataDir, { now, scheme: 'ao' });
      const descriptor = (store: KeyStore) =>
        buildDescriptor({
          base: BASE,
          identity: store.identity,
          keys: store.ticketKeys(),
          price: 64,
          windowSeconds: 600,
          issuedAt: clock,
        });
      const pin = new KeyPin(ao.identity.publicKeyHex);
      pin.accept(descriptor(ao), clock);
      clock = at(DAY + 2);
      const store = await KeyStore.open(dataDir, { now, generateRsaKey: fixtureRsaKeys() });
      await store.maintain();
      pin.accept(JSON.stringify(descriptor(store)), clock);
      const [aoKey, rsaKey] = store.ticketKeys();
      expect(pin.check({ keyId: aoKey!.keyId, day: DAY + 2, scheme: AO_SCHEME })).toBeDefined();
      expect(
        pin.check({
          keyId: rsaKey!.keyId,
          publicKey: rsaKey!.publicKey,
          day: DAY + 2,
          scheme: RSA_SCHEME,
        }),
      ).toBeDefined();
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('saves and restores its state, refusing garbage', () => {
    const pin = new KeyPin(RELAY.publicKeyHex);
    pin.accept(build(), at(DAY));
    const restored = KeyPin.fromJSON(JSON.parse(JSON.stringify(pin)));
    expect(restored.toJSON()).toEqual(pin.toJSON());
    expect(restored.check({ keyId: KEY_B.keyId, day: DAY + 6 })).toMatchObject(KEY_B);
    expect(() => KeyPin.fromJSON({ identity: 'x', keys: [] })).toThrow(/malformed/);
  });
});
