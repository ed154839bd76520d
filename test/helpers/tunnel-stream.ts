import WebSocket from 'ws';

/** Tunnel frames are capped (64 KiB): a client sends in 16 KiB frames. */
const FRAME_BYTES = 16 * 1024;

/**
 * Send `payload` through a tunnel stream to an echo server (now if the stream is open, else
 * once it opens) and resolve with what came back, once as many bytes have.
 */
export function echoRoundTrip(ws: WebSocket, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    ws.on('message', (data: Buffer) => {
      chunks.push(data);
      size += data.length;
      if (size >= payload.length) resolve(Buffer.concat(chunks));
    });
    ws.once('error', reject);
    ws.once('close', (code) => reject(new Error(`tunnel closed with ${code}`)));
    const send = () => {
      for (let at = 0; at < payload.length; at += FRAME_BYTES) {
        ws.send(payload.subarray(at, at + FRAME_BYTES));
      }
    };
    if (ws.readyState === WebSocket.OPEN) send();
    else ws.once('open', send);
  });
}
