import { WebSocketServer } from 'ws';

/**
 * The WebSocket server behind one relay path (circuit, tunnel). It takes only the upgrades the
 * upgrade router hands it (`noServer`), refuses frames over `maxFrameBytes` (ws closes with
 * 1009) and keeps no client list: each connector tracks its own connections.
 *
 * No compression: a small frame could inflate into a large buffer, it costs CPU on bytes that
 * are usually encrypted anyway, and without it (and without verifyClient) ws completes an
 * upgrade synchronously, which the connectors' connection caps rely on.
 */
export function webSocketEndpoint(maxFrameBytes: number): WebSocketServer {
  return new WebSocketServer({
    noServer: true,
    maxPayload: maxFrameBytes,
    perMessageDeflate: false,
    clientTracking: false,
  });
}
