import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';

export type UpgradeHandler = (request: IncomingMessage, socket: Duplex, head: Buffer) => void;

/**
 * Owns the server's WebSocket upgrades and sends each path to its connector (circuit, later
 * the tunnel). With any 'upgrade' listener present Node stops refusing upgrades by itself,
 * so paths nobody serves are answered 404 here instead of hanging until a timeout.
 */
export function routeUpgrades(server: Server, routes: ReadonlyMap<string, UpgradeHandler>): void {
  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = (request.url ?? '').split('?')[0] ?? '';
    const handler = routes.get(path);
    if (handler) {
      handler(request, socket, head);
      return;
    }
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  });
}
