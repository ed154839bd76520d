/**
 * A relay's address as the user gives it (http(s):// or ws(s)://) turned into the URL of
 * one of its WebSocket endpoints: http maps to ws, https to wss.
 */
export function relayWebSocketUrl(relay: string): URL {
  let url: URL;
  try {
    url = new URL(relay);
  } catch {
    throw new RangeError(`not a URL: ${relay}`);
  }
  const scheme = { 'http:': 'ws:', 'https:': 'wss:', 'ws:': 'ws:', 'wss:': 'wss:' }[url.protocol];
  if (!scheme) throw new RangeError('relay URL must be ws://, wss://, http:// or https://');
  url.protocol = scheme;
  return url;
}

/** How the circuit endpoint looks, for messages. */
const CIRCUIT_EXAMPLE = 'ws://<host>:<port>/v1/circuit';

/**
 * `powbridge mine --relay`: the relay's circuit endpoint, a ws:// or wss:// URL. A bare
 * ws://host:port means its /v1/circuit (as for `tickets redeem`). Anything else is refused
 * with the URL the user most likely meant: `127.0.0.1:8640` → ws://127.0.0.1:8640/v1/circuit.
 */
export function parseCircuitUrl(input: string): string {
  const text = input.trim();
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    throw new RangeError(`${input} is not a URL; did you mean ${guessCircuitUrl(text)}?`);
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new RangeError(
      `${input} is not a URL; the circuit endpoint looks like ${CIRCUIT_EXAMPLE}`,
    );
  }
  if (url.protocol === 'http:' || url.protocol === 'https:') {
    const scheme = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const path = url.pathname === '/' ? '/v1/circuit' : url.pathname;
    throw new RangeError(
      `expected a ws:// or wss:// URL (the relay circuit endpoint); did you mean ` +
        `${scheme}//${url.host}${path}?`,
    );
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new RangeError(
      `expected a ws:// or wss:// URL (the relay circuit endpoint), like ${CIRCUIT_EXAMPLE}`,
    );
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new RangeError('the relay URL must not carry credentials, a query or a fragment');
  }
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/v1/circuit';
  return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`;
}

/** `host:port` or `host:port/path` as the circuit URL it probably stands for. */
function guessCircuitUrl(text: string): string {
  try {
    const url = new URL(`ws://${text.replace(/^\/+/, '')}`);
    const path = url.pathname === '/' ? '/v1/circuit' : url.pathname;
    return `ws://${url.host}${path}`;
  } catch {
    return CIRCUIT_EXAMPLE;
  }
}
