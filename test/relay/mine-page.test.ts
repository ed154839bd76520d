import { gunzipSync } from 'node:zlib';
import fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acceptsGzip, loadMineAssets, registerMinePage } from '../../src/relay/mine-page.js';

/**
 * How the relay sends the miner page's files (src/relay/mine-page.ts; the page itself is tested
 * in headless Chromium, test/e2e/mine-page*.test.ts): gzipped to a browser that takes gzip,
 * as they are to one that does not, the same bytes either way. Needs `npm run build`.
 */

const app = fastify();
const assets = loadMineAssets();

beforeAll(async () => {
  if (typeof assets === 'string') throw new Error(assets);
  registerMinePage(app, assets);
  await app.ready();
});
afterAll(() => app.close());

describe('the miner page over HTTP', () => {
  it.each(['/mine', '/mine/mine.js', '/mine/mine-worker.js', '/mine/scrypt.wasm'])(
    '%s: gzipped when asked for, the same bytes either way',
    async (url) => {
      const plain = await app.inject({ url });
      const zipped = await app.inject({ url, headers: { 'accept-encoding': 'gzip, deflate, br' } });
      expect(plain.statusCode).toBe(200);
      expect(plain.headers['content-encoding']).toBeUndefined();
      expect(zipped.headers['content-encoding']).toBe('gzip');
      expect(zipped.headers.vary).toBe('accept-encoding');
      expect(zipped.headers['content-security-policy']).toBe(
        plain.headers['content-security-policy'],
      );
      expect(gunzipSync(zipped.rawPayload).equals(plain.rawPayload)).toBe(true);
    },
  );

  it('the page script is sent in under a third of its size', async () => {
    const plain = await app.inject({ url: '/mine/mine.js' });
    const zipped = await app.inject({
      url: '/mine/mine.js',
      headers: { 'accept-encoding': 'gzip' },
    });
    expect(zipped.rawPayload.length).toBeLessThan(plain.rawPayload.length / 3);
  });

  it('reads Accept-Encoding as RFC 9110 says: listed, any case, not at q=0', () => {
    expect(acceptsGzip('gzip')).toBe(true);
    expect(acceptsGzip('br, GZIP;q=0.5')).toBe(true);
    expect(acceptsGzip(['deflate', 'gzip'])).toBe(true);
    expect(acceptsGzip('gzip;q=0')).toBe(false);
    expect(acceptsGzip('identity, deflate')).toBe(false);
    expect(acceptsGzip('x-gzip2')).toBe(false);
    expect(acceptsGzip(undefined)).toBe(false);
  });
});
