import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { beforeEach, describe, expect, it } from 'vitest';
import { peerConfigSchema, peeringConfigSchema } from '../../src/peers/peer-config.js';
import { PeerRoster } from '../../src/peers/peer-roster.js';
import { refusingReason } from '../../src/peers/ticket-gate.js';
import { PeerTicketTally } from '../../src/peers/ticket-tally.js';
import { makeIdentity } from '../../src/tickets/key-format.js';

/**
 * Which of a peer's tickets are refused here and why (docs/design.md §7): counted from the
 * roster's events, told in the log once per episode, and the state /v1/status shows.
 */

const peer = (options: Record<string, unknown> = {}) =>
  peerConfigSchema.parse({
    name: 'r1',
    url: 'http://127.0.0.1:1',
    identity: makeIdentity(randomBytes(32)).publicKeyHex,
    ...options,
  });

let roster: PeerRoster;
let tally: PeerTicketTally;
let lines: { msg: string; peer?: string; reason?: string; code?: number; err?: string }[];

beforeEach(() => {
  lines = [];
  roster = new PeerRoster({
    peers: [peer()],
    settings: peeringConfigSchema.parse({}),
    identity: makeIdentity(randomBytes(32)),
    now: () => 1_700_000_000,
  });
  tally = new PeerTicketTally(
    roster,
    pino(
      { level: 'info' },
      { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) },
    ),
  );
});

describe('PeerTicketTally', () => {
  it('counts refusals by reason and logs once when a reason starts, once when it ends', () => {
    for (let i = 0; i < 3; i++) roster.emit('refused', { peer: 'r1', reason: 'unpaidLimit' });
    roster.emit('refused', { peer: 'r1', reason: 'spent' });
    roster.emit('refused', { peer: 'r1', reason: 'offline', detail: 'peer r1: unreachable' });
    roster.emit('refused', { peer: 'r1', reason: 'offline' });
    roster.emit('served', { peer: 'r1', offline: false });
    roster.emit('served', { peer: 'r1', offline: false });
    expect(tally.refused('r1')).toEqual({
      notAccepted: 0,
      unpaidLimit: 3,
      peerRefused: 0,
      offline: 2,
      spent: 1,
      unknownKey: 0,
    });
    expect(lines).toMatchObject([
      { msg: "refusing the peer's tickets", peer: 'r1', reason: 'unpaidLimit', code: 36 },
      { msg: "refusing the peer's tickets", reason: 'offline', code: 33, err: /unreachable/ },
      { msg: "accepting the peer's tickets again", peer: 'r1' },
    ]);
    expect(lines).toHaveLength(3);
  });

  it('knows the peer refuses us until an exchange works or it stops answering', () => {
    expect(tally.refusesUs('r1')).toBe(false);
    roster.contact(
      'r1',
      'peer r1 did not authenticate our request (unknown_peer, unsigned answer)',
    );
    roster.emit('refused', { peer: 'r1', reason: 'peerRefused' });
    expect(tally.refusesUs('r1')).toBe(true);
    roster.contact('r1', 'another refusal');
    expect(tally.refusesUs('r1')).toBe(true);
    roster.contact('r1', null);
    expect(tally.refusesUs('r1')).toBe(false);
    roster.emit('refused', { peer: 'r1', reason: 'peerRefused' });
    roster.lost('r1', 'peer r1: unreachable');
    expect(tally.refusesUs('r1')).toBe(false);
  });
});

describe('refusingReason', () => {
  const online = { up: true, refusesUs: false };

  it('accepts by default, and offline with acceptWhenOffline', () => {
    expect(refusingReason(peer(), 0, online)).toBeNull();
    expect(refusingReason(peer(), 0, { up: null, refusesUs: false })).toBeNull();
    expect(refusingReason(peer(), 0, { up: false, refusesUs: false })).toBeNull();
    expect(refusingReason(peer({ maxUnpaid: 5 }), 4, online)).toBeNull();
  });

  it('names the first reason that holds, in the order the gate checks', () => {
    const strict = peer({ acceptWhenOffline: false, maxUnpaid: 5 });
    const everything = { up: false, refusesUs: true };
    expect(refusingReason(peer({ acceptTickets: false }), 9, everything)).toBe('notAccepted');
    expect(refusingReason(strict, 5, everything)).toBe('unpaidLimit');
    expect(refusingReason(strict, 4, everything)).toBe('offline');
    expect(refusingReason(strict, 4, { up: true, refusesUs: true })).toBe('peerRefused');
  });
});
