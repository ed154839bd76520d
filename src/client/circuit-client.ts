import { EventEmitter } from 'node:events';
import type { Agent } from 'node:http';
import WebSocket from 'ws';
import type { z } from 'zod';
import { WsCloseCode } from '../lib/ws-close.js';
import { RpcError, RpcErrorCode } from '../protocol/errors.js';
import { encodeRequest, parseFrame } from '../protocol/jsonrpc.js';
import {
  clientRequests,
  describeIssue,
  type ClientMethod,
  type JobParams,
  type RelayStateParams,
  relayNotifications,
  type SetExtranonceParams,
  type SetVersionMaskParams,
} from '../protocol/messages.js';
import { UpgradeRefusedError } from './connect-errors.js';

/**
 * The client end of a circuit: JSON-RPC 2.0 over one WebSocket. Every message from the relay
 * is validated with the same schemas the relay uses; a relay that sends garbage is an error
 * event, never a crash.
 */

export interface CircuitClientEvents {
  job: [JobParams];
  difficulty: [number];
  extranonce: [SetExtranonceParams];
  versionMask: [SetVersionMaskParams];
  relayState: [RelayStateParams];
  /** A frame from the relay that failed validation. */
  protocolError: [string];
  close: [{ code: number; reason: string }];
}

type Params<M extends ClientMethod> = z.input<(typeof clientRequests)[M]['params']>;
type Result<M extends ClientMethod> = z.output<(typeof clientRequests)[M]['result']>;

export interface CircuitClientOptions {
  /** Answer timeout per request. */
  timeoutMs?: number;
  /** Largest frame accepted from the relay. */
  maxFrameBytes?: number;
  /** For SOCKS (Tor): a custom agent from the caller. */
  agent?: Agent;
}

interface Pending {
  method: ClientMethod;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export class CircuitClient extends EventEmitter<CircuitClientEvents> {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly timeoutMs: number;
  private readonly maxFrameBytes: number;

  private constructor(
    private readonly ws: WebSocket,
    options: CircuitClientOptions,
  ) {
    super();
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.maxFrameBytes = options.maxFrameBytes ?? 256 * 1024;
    ws.on('message', (data, isBinary) => this.onFrame(data, isBinary));
    ws.on('close', (code, reason) => {
      this.failPending(new Error(`circuit closed (${code} ${reason.toString()})`));
      this.emit('close', { code, reason: reason.toString() });
    });
    ws.on('error', () => {
      /* surfaced through 'close' */
    });
  }

  /** Open a circuit to `url` (ws:// or wss://, path /v1/circuit). */
  static connect(url: string, options: CircuitClientOptions = {}): Promise<CircuitClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, {
        perMessageDeflate: false,
        maxPayload: options.maxFrameBytes ?? 256 * 1024,
        handshakeTimeout: options.timeoutMs ?? 30_000,
        ...(options.agent ? { agent: options.agent } : {}),
      });
      const onError = (err: Error) => reject(err);
      ws.once('error', onError);
      // Without this listener ws reports only "Unexpected server response: 404"; the status
      // tells a wrong path (404, give up) from a proxy in trouble (502, retry).
      ws.once('unexpected-response', (_request, response) => {
        response.resume();
        reject(new UpgradeRefusedError(response.statusCode ?? 0));
        ws.on('error', () => {
          /* terminate() reports the aborted handshake as an error: already rejected */
        });
        ws.terminate();
      });
      ws.once('open', () => {
        ws.off('error', onError);
        resolve(new CircuitClient(ws, options));
      });
    });
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Send a request; resolves with the validated result, rejects with RpcError or Error. */
  request<M extends ClientMethod>(method: M, params: Params<M>): Promise<Result<M>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (!this.open) {
        reject(new Error('circuit is not open'));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(id, {
        method,
        resolve: resolve as (value: unknown) => void,
        reject,
        timer,
      });
      this.ws.send(encodeRequest(id, method, params));
    });
  }

  /** Send raw text (tests of the relay's validation use it). */
  sendRaw(text: string | Buffer): void {
    this.ws.send(text);
  }

  close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      this.ws.once('close', () => resolve());
      this.ws.close(WsCloseCode.normal, 'bye');
      setTimeout(() => this.ws.terminate(), 2_000).unref();
    });
  }

  private onFrame(data: WebSocket.RawData, isBinary: boolean): void {
    if (isBinary) return this.protocolError('binary frame from relay');
    const text = Array.isArray(data)
      ? Buffer.concat(data).toString('utf8')
      : Buffer.isBuffer(data)
        ? data.toString('utf8')
        : Buffer.from(data).toString('utf8');
    const frame = parseFrame(text, this.maxFrameBytes);
    if (frame.kind === 'response') {
      const { id } = frame.message;
      const pending = typeof id === 'number' ? this.pending.get(id) : undefined;
      if (!pending) return this.protocolError(`answer to unknown request ${String(id)}`);
      this.pending.delete(id as number);
      clearTimeout(pending.timer);
      if ('error' in frame.message) {
        const { code, message, data: errorData } = frame.message.error;
        pending.reject(new RpcError(code, message, errorData));
        return;
      }
      const parsed = clientRequests[pending.method].result.safeParse(frame.message.result);
      if (!parsed.success) {
        pending.reject(new RpcError(RpcErrorCode.internalError, describeIssue(parsed.error)));
        return;
      }
      pending.resolve(parsed.data);
      return;
    }
    if (frame.kind === 'notification') {
      const { method, params } = frame.message;
      switch (method) {
        case 'mining.job':
          return this.notify(relayNotifications[method], params, (p) => this.emit('job', p));
        case 'mining.set_difficulty':
          return this.notify(relayNotifications[method], params, (p) =>
            this.emit('difficulty', p.difficulty),
          );
        case 'mining.set_extranonce':
          return this.notify(relayNotifications[method], params, (p) => this.emit('extranonce', p));
        case 'mining.set_version_mask':
          return this.notify(relayNotifications[method], params, (p) =>
            this.emit('versionMask', p),
          );
        case 'relay.state':
          return this.notify(relayNotifications[method], params, (p) => this.emit('relayState', p));
        default:
          return this.protocolError(`unknown notification ${method.slice(0, 64)}`);
      }
    }
    this.protocolError('unexpected frame from relay');
  }

  private notify<S extends z.ZodType>(
    schema: S,
    params: unknown,
    deliver: (value: z.output<S>) => void,
  ): void {
    const parsed = schema.safeParse(params ?? {});
    if (!parsed.success) return this.protocolError(describeIssue(parsed.error));
    deliver(parsed.data);
  }

  private protocolError(message: string): void {
    this.emit('protocolError', message);
  }

  private failPending(error: Error): void {
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.reject(error);
      this.pending.delete(id);
    }
  }
}
