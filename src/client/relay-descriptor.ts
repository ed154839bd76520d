import { type Agent, get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import type { TicketTerms } from '../protocol/messages.js';
import { DescriptorError } from '../tickets/descriptor.js';
import { KeyPin, PinError } from '../tickets/key-pin.js';
import { UnusableRelayError } from './connect-errors.js';

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
  pin.check({
    keyId: terms.keyId,
    publicKey: terms.publicKey,
    day: terms.day,
    scheme: terms.scheme,
  });
  return pin;
}

/**
 * The miner's check of a relay it registered with, against the identity the user pinned
 * (--relay-identity): the descriptor must be signed by that identity and, with ticket terms,
 * list the offered key for its day; `pin` carries what earlier descriptors of this run showed. A relay that fails is not mined for at all (throws
 * UnusableRelayError, one line: what was expected, what the relay offered, what to do): its
 * credit could only buy tickets under a key that may single the user out, or from a relay
 * the user did not mean. A descriptor that cannot be fetched throws a plain Error: the
 * miner retries.
 */
export async function admitRelay(
  circuitUrl: string,
  identityHex: string,
  terms: TicketTerms | null,
  options: { agent?: Agent; pin?: KeyPin; now?: number } = {},
): Promise<void> {
  let json: unknown;
  try {
    json = await fetchDescriptor(circuitUrl, options.agent);
  } catch (err) {
    throw new Error(`cannot check the relay: ${(err as Error).message}`);
  }
  const identity = identityHex.toLowerCase();
  const pin = options.pin ?? new KeyPin(identity);
  try {
    pin.accept(json, options.now ?? Date.now() / 1000);
  } catch (err) {
    if (!(err instanceof DescriptorError || err instanceof PinError)) throw err;
    const offered = offeredIdentity(json);
    if (offered !== null && offered !== identity) {
      throw new UnusableRelayError(
        `the relay at ${circuitUrl} is not the one --relay-identity pins: expected identity ` +
          `${identity}, its descriptor is signed by ${offered}; check the identity with the ` +
          `relay's operator (\`powbridge keys show\`) and the --relay address`,
      );
    }
    const what =
      err instanceof PinError
        ? 'contradicts what it signed before'
        : `does not verify under identity ${identity}`;
    throw new UnusableRelayError(
      `the relay at ${circuitUrl} sent a descriptor that ${what} (${err.message}); ` +
        `not mining for it: tell its operator`,
    );
  }
  if (!terms) return;
  try {
    pin.check({
      keyId: terms.keyId,
      publicKey: terms.publicKey,
      day: terms.day,
      scheme: terms.scheme,
    });
  } catch (err) {
    if (!(err instanceof PinError)) throw err;
    throw new UnusableRelayError(
      `the relay at ${circuitUrl} offered ticket key ${terms.keyId} for day ${terms.day}, but ` +
        `its descriptor signed by ${identity} lists ${listedFor(pin, terms)}; not mining ` +
        `for tickets that could single you out: tell its operator, or mine with --donate`,
    );
  }
}

function offeredIdentity(json: unknown): string | null {
  if (typeof json !== 'object' || json === null || !('identity' in json)) return null;
  const { identity } = json;
  return typeof identity === 'string' && /^[0-9a-f]{64}$/i.test(identity)
    ? identity.toLowerCase()
    : null;
}

/** The pinned key of the offer's scheme for its day (a change-over lists one per scheme). */
function listedFor(pin: KeyPin, offer: Pick<TicketTerms, 'day' | 'scheme'>): string {
  const key = pin
    .pinned()
    .find(
      (k) => k.scheme === offer.scheme && k.notBeforeDay <= offer.day && offer.day <= k.notAfterDay,
    );
  return key ? `key ${key.keyId} for that day` : 'no key for that day';
}
