import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcErrorCode } from '../../src/protocol/errors.js';
import type { Relay } from '../../src/relay/relay.js';
import { KeyStore } from '../../src/tickets/key-store.js';
import { utcDay } from '../../src/tickets/keyring.js';
import { runCli } from '../helpers/cli.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { fixtureRsaKeys } from '../helpers/rsa-keys.js';
import { query } from '../helpers/store-engines.js';
import { relayTomlLines, startTestRelay } from '../helpers/test-relay.js';
import { issueTicketV2 } from '../helpers/ticket-v2.js';

/**
 * Protocol 2 between two relay families (issue 17, docs/design.md §7): family X is two
 * in-process relays on one PostgreSQL database and one key directory, family Y one relay on
 * another database. Y is X's backup: X's tickets are reserved at X and served at Y, accepted
 * while X is down, synced back into X's one spent log, billed and settled through X's one
 * ledger, whichever instance answers or records. A ticket redeemed at both families across a
 * partition is a conflict neither side bills. Only one X instance runs the sync loop, and
 * another takes over when its lock connection drops or it stops.
 */

/** The leader's advisory lock in X's database: classid "sync" (family-leader.ts). */
const LEADER_LOCK = `SELECT pid FROM pg_locks
  WHERE locktype = 'advisory' AND classid = ${0x73796e63} AND granted
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`;
/** A hang limit for the leader's hand-over on a loaded machine, not a speed check. */
const TAKEOVER_LIMIT_MS = 30_000;

let server: TestPostgres;
let root: string;
let xUrl: string;
let yUrl: string;
const x: { dir: string; identity: string; ports: number[]; relays: (Relay | null)[] } = {
  dir: '',
  identity: '',
  ports: [],
  relays: [null, null],
};
const y: { dir: string; identity: string; port: number; relay: Relay | null } = {
  dir: '',
  identity: '',
  port: 0,
  relay: null,
};

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Instance `i` of family X; Y knows the family by instance 0's address. */
async function startX(i: number): Promise<Relay> {
  const { relay } = await startTestRelay({
    dataDir: x.dir,
    listen: `127.0.0.1:${x.ports[i] ?? 0}`,
    storage: { url: xUrl, passwordFile: server.passwordFile },
    peers: [{ name: 'y', url: `http://127.0.0.1:${y.port}`, identity: y.identity }],
    // A short period: the standby's tries for the sync lock come at this pace.
    peering: { syncIntervalSeconds: 1, requestTimeoutSeconds: 2 },
  });
  x.relays[i] = relay;
  return relay;
}

async function stopX(i: number): Promise<void> {
  const relay = x.relays[i];
  x.relays[i] = null;
  await relay?.close();
}

const running = (relay: Relay | null | undefined): Relay => {
  if (!relay) throw new Error('relay not running');
  return relay;
};
const peering = (relay: Relay | null | undefined) => {
  const p = running(relay).peering;
  if (!p) throw new Error('no peering');
  return p;
};
const xi = (i: number) => running(x.relays[i]);
const redeem = (relay: Relay | null | undefined, ticket: string) =>
  running(relay).tickets.service.redeem(ticket);
const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => null,
    (err: { code?: number }) => err.code,
  );

/** A ticket of family X, signed with its issuing key for today. */
function xTicket(): { text: string; serial: Uint8Array } {
  const day = utcDay(Date.now() / 1000);
  const issuing = xi(0).tickets.keys.issuingRsaKey(day);
  if (!issuing) throw new Error('no RSA issuing key');
  return issueTicketV2(issuing.key, day);
}

async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + TAKEOVER_LIMIT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const leaders = () =>
  x.relays.filter((relay) => relay !== null && peering(relay).syncing()).map(running);
const lockHolders = async () =>
  (await query<{ pid: number }>(xUrl, server.password, LEADER_LOCK)).map((r) => r.pid);

beforeAll(async () => {
  server = await startPostgres();
  xUrl = await server.createDatabase('family_x');
  yUrl = await server.createDatabase('family_y');
  root = mkdtempSync(join(tmpdir(), 'powbridge-family-peering-'));
  // Distinct fixture keys for the two families (one generator, used in turn).
  const generateRsaKey = fixtureRsaKeys(4);
  const now = () => Date.now() / 1000;
  x.dir = join(root, 'x');
  y.dir = join(root, 'y');
  x.identity = (
    await KeyStore.open(x.dir, { now, scheme: 'rsa', generateRsaKey })
  ).identity.publicKeyHex;
  y.identity = (
    await KeyStore.open(y.dir, { now, scheme: 'rsa', generateRsaKey })
  ).identity.publicKeyHex;
  x.ports = [await freePort(), await freePort()];
  y.port = await freePort();
  ({ relay: y.relay } = await startTestRelay({
    dataDir: y.dir,
    listen: `127.0.0.1:${y.port}`,
    storage: { url: yUrl, passwordFile: server.passwordFile },
    peers: [
      {
        name: 'x',
        url: `http://127.0.0.1:${x.ports[0]}`,
        identity: x.identity,
        acceptWhenOffline: true,
        paymentEvery: 2,
      },
    ],
    // Y's syncs are driven by the test.
    peering: { syncIntervalSeconds: 3600, requestTimeoutSeconds: 2 },
  }));
  await startX(0);
  await startX(1);
  // Y learns X's ticket keys from X's descriptor.
  await peering(y.relay).syncPeer('x');
}, 120_000);

afterAll(async () => {
  await stopX(0);
  await stopX(1);
  await y.relay?.close();
  await server?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('Protocol 2 between two families on PostgreSQL', () => {
  const tickets: { text: string; serial: Uint8Array }[] = [];

  it('one instance of family X runs the sync loop', async () => {
    await until('a leader', () => leaders().length === 1);
    expect(leaders()).toHaveLength(1);
    expect(await lockHolders()).toHaveLength(1);
    // Y is alone on its database: it always syncs.
    expect(peering(y.relay).syncing()).toBe(true);
  });

  it("serves X's ticket at Y after reserving it in X's shared spent log", async () => {
    for (let i = 0; i < 3; i++) tickets.push(xTicket());
    const [online] = tickets;
    if (!online) throw new Error('no ticket');
    expect((await redeem(y.relay, online.text)).class).toBe('paid');
    // Reserved through instance 0, seen by instance 1 (one log): spent for the whole family.
    expect((await xi(1).tickets.store.lookup(online.serial))?.origin).toBe('y');
    expect(await codeOf(redeem(x.relays[1], online.text))).toBe(RpcErrorCode.ticketSpent);
    expect(await codeOf(redeem(x.relays[0], online.text))).toBe(RpcErrorCode.ticketSpent);
    expect(await peering(y.relay).ledger.balance('x')).toMatchObject({ served: 1, owedSync: 0 });
  });

  it('accepts X tickets at Y while all of X is down, and X takes each spend into its log once', async () => {
    const offline = tickets[1];
    if (!offline) throw new Error('no ticket');
    await stopX(0);
    await stopX(1);
    expect((await redeem(y.relay, offline.text)).class).toBe('paid');
    // The second served ticket completes a bill (paymentEvery 2).
    expect(await peering(y.relay).ledger.balance('x')).toMatchObject({
      served: 2,
      owedSync: 1,
      billed: 2,
      pendingRequests: 1,
    });
    await startX(1);
    await startX(0);
    // Both instances pull Y's log: the shared cursor and the unique serial keep it once.
    await Promise.all([peering(x.relays[0]).syncPeer('y'), peering(x.relays[1]).syncPeer('y')]);
    await peering(x.relays[1]).syncPeer('y');
    expect((await xi(0).tickets.store.lookup(offline.serial))?.origin).toBe('y');
    const rows = await query<{ origin: string; n: number }>(
      xUrl,
      server.password,
      'SELECT origin, count(*)::int AS n FROM spent GROUP BY origin',
    );
    expect(rows).toEqual([{ origin: 'y', n: 2 }]);
    expect(await codeOf(redeem(x.relays[0], offline.text))).toBe(RpcErrorCode.ticketSpent);
    // Y sees that X holds its log now.
    await peering(y.relay).syncPeer('x');
    expect(await peering(y.relay).ledger.balance('x')).toMatchObject({ owedSync: 0 });
  });

  it('bills X once through its shared ledger, and a settlement recorded on one instance is delivered', async () => {
    await peering(y.relay).syncPeer('x');
    expect(await peering(y.relay).ledger.balance('x')).toMatchObject({
      billed: 2,
      pendingRequests: 0,
    });
    // Delivered to instance 0, visible from instance 1.
    expect(await peering(x.relays[1]).ledger.listRequestsIn('y')).toMatchObject([{ count: 2 }]);
    expect(await peering(x.relays[1]).ledger.balance('y')).toMatchObject({
      billedToUs: 2,
      weOwe: 2,
    });
    await peering(x.relays[1]).ledger.recordPaid('y', 'settle-1', 2, 'operator', 1);
    // Whichever instance syncs delivers it, once.
    await Promise.all([peering(x.relays[0]).syncPeer('y'), peering(x.relays[1]).syncPeer('y')]);
    expect(await peering(x.relays[0]).ledger.balance('y')).toMatchObject({
      settledByUs: 2,
      weOwe: 0,
      pendingSettlements: 0,
    });
    expect(await peering(y.relay).ledger.balance('x')).toMatchObject({
      billed: 2,
      settledToUs: 2,
      unpaidToUs: 0,
    });
  });

  it('finds a ticket redeemed in both families across a partition, and neither bills it', async () => {
    const double = tickets[2];
    if (!double) throw new Error('no ticket');
    // Y reaches the family through instance 0 only: with it down, X is unreachable to Y,
    // while instance 1 still redeems.
    await stopX(0);
    expect((await redeem(x.relays[1], double.text)).class).toBe('paid');
    expect((await redeem(y.relay, double.text)).class).toBe('paid');
    await startX(0);
    await peering(x.relays[1]).syncPeer('y');
    await peering(y.relay).syncPeer('x');
    for (const ledger of [peering(x.relays[0]).ledger, peering(x.relays[1]).ledger]) {
      expect(await ledger.conflicts('y')).toHaveLength(1);
    }
    expect(await peering(y.relay).ledger.conflicts('x')).toHaveLength(1);
    expect(await peering(y.relay).ledger.balance('x')).toMatchObject({
      served: 3,
      unbilled: 0,
      billed: 2,
      conflictsNotBilled: 1,
      unpaidToUs: 0,
    });
    expect(await peering(x.relays[0]).ledger.balance('y')).toMatchObject({ weOwe: 0 });
  });

  it("shows the family's ledger in `powbridge peers status`, read from the database", async () => {
    const config = join(root, 'x.toml');
    writeFileSync(
      config,
      [
        ...relayTomlLines(x.dir),
        '[storage]',
        `url = "${xUrl}"`,
        `passwordFile = "${server.passwordFile}"`,
        '[[peers]]',
        'name = "y"',
        `url = "http://127.0.0.1:${y.port}"`,
        `identity = "${y.identity}"`,
        '',
      ].join('\n'),
    );
    const result = await runCli(['peers', 'status', '--config', config, '--json']);
    expect(result.stderr).toBe('');
    const json = JSON.parse(result.stdout) as {
      ledger: string;
      activity: boolean;
      peers: { name: string; balance: Record<string, number> }[];
    };
    expect(json.ledger).toBe(`PostgreSQL postgres://powbridge@127.0.0.1:${server.port}/family_x`);
    expect(json.activity).toBe(true);
    expect(json.peers[0]).toMatchObject({
      name: 'y',
      balance: await peering(x.relays[1]).ledger.balance('y'),
    });
    expect(result.stdout).not.toContain(server.password);
  });

  it('hands the sync loop over when the leader loses its lock connection, and when it stops', async () => {
    await until('a leader', () => leaders().length === 1);
    const [holder] = await lockHolders();
    await query(xUrl, server.password, `SELECT pg_terminate_backend(${holder})`);
    await until('a new lock holder', async () => {
      const now = await lockHolders();
      return now.length === 1 && now[0] !== holder && leaders().length === 1;
    });
    // The instance whose session was killed stepped down; at most one leads.
    expect(leaders()).toHaveLength(1);

    const leader = leaders()[0];
    const index = x.relays.indexOf(leader ?? null);
    await stopX(index);
    const other = 1 - index;
    await until('the other instance to lead', () => peering(x.relays[other]).syncing());
    expect(await lockHolders()).toHaveLength(1);
    // The new leader's rounds work: it pulls Y's log (its cursor is already at Y's head).
    await peering(x.relays[other]).syncPeer('y');
    expect((await peering(x.relays[other]).status())[0]).toMatchObject({ up: true });
  });
});
