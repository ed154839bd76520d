import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CircuitSource } from '../../src/client/circuit-source.js';
import {
  judgeFailure,
  UnusableRelayError,
  UpgradeRefusedError,
} from '../../src/client/connect-errors.js';
import { circuitUrl } from '../../src/client/redeem.js';
import { admitRelay } from '../../src/client/relay-descriptor.js';
import { parseCircuitUrl } from '../../src/client/relay-url.js';
import { RpcError, RpcErrorCode } from '../../src/protocol/errors.js';
import { AO_SCHEME, RSA_SCHEME, type TicketTerms } from '../../src/protocol/messages.js';
import { startTestRelay } from '../helpers/test-relay.js';

const dir = mkdtempSync(join(tmpdir(), 'powbridge-relay-checks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('--relay as the user types it', () => {
  it('takes ws(s) URLs, a bare ws://host:port meaning /v1/circuit', () => {
    expect(parseCircuitUrl('ws://127.0.0.1:8640/v1/circuit')).toBe(
      'ws://127.0.0.1:8640/v1/circuit',
    );
    expect(parseCircuitUrl('ws://127.0.0.1:8640')).toBe('ws://127.0.0.1:8640/v1/circuit');
    expect(parseCircuitUrl('wss://abc.onion/v1/circuit/')).toBe('wss://abc.onion/v1/circuit');
  });

  it('refuses anything else with the URL the user most likely meant', () => {
    const refusals: [string, RegExp][] = [
      ['127.0.0.1:8640', /did you mean ws:\/\/127\.0\.0\.1:8640\/v1\/circuit\?$/],
      ['localhost:8640', /did you mean ws:\/\/localhost:8640\/v1\/circuit\?$/],
      ['abc.onion/v1/circuit', /did you mean ws:\/\/abc\.onion\/v1\/circuit\?$/],
      ['http://127.0.0.1:8640', /did you mean ws:\/\/127\.0\.0\.1:8640\/v1\/circuit\?$/],
      ['https://abc.onion/v1/circuit', /did you mean wss:\/\/abc\.onion\/v1\/circuit\?$/],
      ['ftp://x/v1/circuit', /expected a ws:\/\/ or wss:\/\/ URL/],
      ['ws://u:p@x/v1/circuit', /credentials/],
    ];
    for (const [input, message] of refusals) {
      expect(() => parseCircuitUrl(input), input).toThrow(message);
    }
  });
});

describe('why there is no circuit', () => {
  const url = 'ws://127.0.0.1:8640/v1/circuit';
  const errno = (code: string, port = 8640) =>
    Object.assign(new Error(`connect ${code} 127.0.0.1:${port}`), { code, port });

  it('retries what may pass, in words', () => {
    expect(judgeFailure(url, errno('ECONNREFUSED'), 'connect')).toEqual({
      kind: 'retry',
      reason: `cannot reach ${url}: connection refused; is the relay running?`,
    });
    expect(
      judgeFailure(url, errno('ECONNREFUSED', 9050), 'connect', 'socks5h://127.0.0.1:9050'),
    ).toEqual({
      kind: 'retry',
      reason:
        'cannot reach the proxy socks5h://127.0.0.1:9050: connection refused; is Tor running?',
    });
    expect(judgeFailure(url, errno('ENOTFOUND'), 'connect')).toEqual({
      kind: 'retry',
      reason: `cannot reach ${url}: host not found`,
    });
    expect(judgeFailure(url, new UpgradeRefusedError(502), 'connect')).toEqual({
      kind: 'retry',
      reason: `${url} answered HTTP 502 instead of opening a circuit`,
    });
    const notReady = new RpcError(RpcErrorCode.relayFull, 'no upstream work yet, retry later');
    expect(judgeFailure(url, notReady, 'circuit')).toEqual({
      kind: 'refused',
      reason: 'relay not ready (no upstream work yet, retry later)',
    });
  });

  it('stops on a wrong path (404) and on an unusable relay', () => {
    const wrongPath = judgeFailure('ws://h:1/circuit', new UpgradeRefusedError(404), 'connect');
    expect(wrongPath.kind).toBe('fatal');
    if (wrongPath.kind !== 'fatal') return;
    expect(wrongPath.error.message).toBe(
      'no circuit endpoint at ws://h:1/circuit (HTTP 404); the circuit URL ends in ' +
        '/v1/circuit: try ws://h:1/v1/circuit',
    );
    const unusable = new UnusableRelayError('not the pinned relay');
    expect(judgeFailure(url, unusable, 'circuit')).toEqual({ kind: 'fatal', error: unusable });
  });
});

describe('--relay-identity: the relay must be the pinned one and list the key it offers', () => {
  it('admits the pinned relay, stops on an unlisted key, retries an unreachable descriptor', async () => {
    const { relay } = await startTestRelay({ dataDir: join(dir, 'relay') });
    try {
      const url = circuitUrl(relay.url);
      const identity = relay.tickets.keys.identity.publicKeyHex;
      const source = new CircuitSource({ url, mode: 'tickets' });
      const registered = new Promise<TicketTerms | null>((resolve) =>
        source.updates.once('registered', (r) => resolve(r.ticket)),
      );
      source.start();
      const terms = await registered;
      await source.stop();
      if (!terms) throw new Error('no ticket terms');

      await expect(admitRelay(url, identity, terms)).resolves.toBeUndefined();
      await expect(admitRelay(url, identity, null)).resolves.toBeUndefined();

      // A key the descriptor does not list (how a relay would tag one user).
      const other = { ...terms, keyId: '00'.repeat(8) };
      const refusal = admitRelay(url, identity, other);
      await expect(refusal).rejects.toBeInstanceOf(UnusableRelayError);
      await expect(refusal).rejects.toThrow(
        `offered ticket key ${'00'.repeat(8)} for day ${terms.day}, but its descriptor signed ` +
          `by ${identity} lists key ${terms.keyId} for that day`,
      );

      // The listed key, offered under the other scheme's name.
      const renamed: TicketTerms =
        terms.scheme === RSA_SCHEME
          ? { ...terms, scheme: AO_SCHEME }
          : { ...terms, scheme: RSA_SCHEME };
      await expect(admitRelay(url, identity, renamed)).rejects.toThrow(
        `offered ticket key ${terms.keyId} for day ${terms.day}, but its descriptor signed ` +
          `by ${identity} lists no key for that day`,
      );

      // No descriptor to be had: a plain error, which the source retries.
      const gone = admitRelay('ws://127.0.0.1:1/v1/circuit', identity, terms);
      await expect(gone).rejects.toThrow(/^cannot check the relay: /);
      await expect(gone).rejects.not.toBeInstanceOf(UnusableRelayError);
    } finally {
      await relay.close();
    }
  }, 30_000);

  it('mines nothing until the check passes: the source stays off live and stops on a mismatch', async () => {
    const { relay } = await startTestRelay({ dataDir: join(dir, 'relay-2') });
    try {
      const seen: string[] = [];
      const source = new CircuitSource({
        url: circuitUrl(relay.url),
        mode: 'tickets',
        admit: () => Promise.reject(new UnusableRelayError('not the pinned relay')),
      });
      source.on('state', (s) => seen.push(s));
      source.on('job', () => seen.push('job'));
      const fatal = new Promise<Error>((resolve) => source.updates.once('fatal', resolve));
      source.start();
      expect((await fatal).message).toBe('not the pinned relay');
      expect(seen).not.toContain('live');
      expect(seen).not.toContain('job');
      expect(source.link()).toEqual({ state: 'stopped', reason: 'not the pinned relay' });
      expect(source.registered).toBeNull();
    } finally {
      await relay.close();
    }
  }, 30_000);
});
