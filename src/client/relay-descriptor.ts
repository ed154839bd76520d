import { type Agent, get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import type { TicketTerms } from '../protocol/messages.js';
import { KeyPin } from '../tickets/key-pin.js';

/**
 * The client's check of a relay's ticket terms against its signed descriptor (docs/design.md §6.4):
 * the descriptor must be signed by the identity the user pinned, and the key the relay
 * offers must be one it lists for that day. Fetched over the same proxy as the circuit.
 */

const MAX_DESCRIPTOR_BYTES = 64 * 1024;

/** ws(s)://host/v1/circuit → http(s)://host/v1/descriptor */
export function descriptorUrl(circuitUrl: string): string {
  const url = new URL(circuitUrl);
  url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
  url.pathname = '/v1/descriptor';
  url.search = '';
  return url.toString();
}

export function fetchDescriptor(
  circuitUrl: string,
  agent?: Agent,
  timeoutMs = 30_000,
): Promise<unknown> {
  const url = descriptorUrl(circuitUrl);
  const get = url.startsWith('https:') ? httpsGet : httpGet;
  return new Promise((resolve, reject) => {
    const request = get(url, { ...(agent ? { agent } : {}), timeout: timeoutMs }, (response) => {
      if (response.statusCode !== 200) {
        response.resume();
        reject(new Error(`descriptor: HTTP ${response.statusCode ?? '?'} from the relay`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_DESCRIPTOR_BYTES) {
          request.destroy(new Error('descriptor: larger than 64 KiB'));
          return;
        }
        chunks.push(chunk);
      });
      response.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown);
        } catch {
          reject(new Error('descriptor: not JSON'));
        }
      });
    });
    request.on('timeout', () => request.destroy(new Error('descriptor: timed out')));
    request.on('error', reject);
  });
}

/**
 * Verify the relay's descriptor against the pinned identity and check that `terms` offers a
 * listed key for its day. Throws DescriptorError / PinError with the reason.
 */
export async function checkTerms(
  circuitUrl: string,
  identityHex: string,
  terms: TicketTerms,
  options: { agent?: Agent; pin?: KeyPin; now?: number } = {},
): Promise<KeyPin> {
  const pin = options.pin ?? new KeyPin(identityHex);
  pin.accept(await fetchDescriptor(circuitUrl, options.agent), options.now ?? Date.now() / 1000);
  pin.check({ keyId: terms.keyId, publicKey: terms.publicKey, day: terms.day });
  return pin;
}
