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
