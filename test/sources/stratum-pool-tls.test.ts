import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, live, next, share, startClient, startPool } from './stratum-pool-harness.js';

let dir: string;
let key: string;
let cert: string;

beforeAll(() => {
  // A throwaway self-signed certificate for 127.0.0.1, made with the openssl CLI.
  dir = mkdtempSync(join(tmpdir(), 'powbridge-tls-'));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ],
    { stdio: 'ignore', timeout: 10_000 },
  );
  key = readFileSync(join(dir, 'key.pem'), 'utf8');
  cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('StratumPool over stratum+ssl', () => {
  it('handshakes, receives jobs and submits over TLS when the certificate is trusted', async () => {
    const pool = await startPool({ tls: { key, cert } });
    expect(pool.url).toMatch(/^stratum\+ssl:\/\//);
    const client = startClient([pool], {
      pools: [{ url: pool.url, user: 'alice.rig1', password: 'x', tls: { ca: cert } }],
    });
    await live(client);
    (await pool.connection(0)).notify('mining.notify', [
      'tls-job',
      '00'.repeat(32),
      '01',
      '02',
      [],
      '20000000',
      '1d00ffff',
      '5f5e1000',
      true,
    ]);
    const [job] = await next(client.pool, 'job');
    expect(job).toMatchObject({ jobId: 'tls-job', session: 1 });
    expect(await client.pool.submit(share(1, { jobId: 'tls-job' }))).toEqual({ accepted: true });
    expect(client.pool.status().upstream).toBe(pool.url);
  });

  it('refuses an untrusted certificate and fails over to the next pool', async () => {
    const tlsPool = await startPool({ tls: { key, cert } });
    const plain = await startPool();
    const client = startClient([tlsPool, plain], { primaryRetryMs: 60_000 });
    await live(client);
    expect(client.pool.status().upstream).toBe(plain.url);
    // The TLS handshake failed, so the TLS pool never saw a Stratum message.
    expect(tlsPool.messages).toEqual([]);
    await eventually(() =>
      expect(client.logs.join('')).toMatch(/pool failed: connect failed: .*self-signed/),
    );
  });
});
