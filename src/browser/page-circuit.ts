import type { z } from 'zod';
import { RpcError, RpcErrorCode } from '../protocol/errors.js';
import { encodeRequest, parseFrame } from '../protocol/jsonrpc.js';
import {
  type ClientMethod,
  clientRequests,
  describeIssue,
  type JobParams,
  type RelayStateParams,
  relayNotifications,
  type SetExtranonceParams,
  type SetVersionMaskParams,
} from '../protocol/messages.js';

/**
 * The miner page's end of a circuit: JSON-RPC 2.0 over the browser's WebSocket to the relay
 * that served the page. The browser twin of src/client/circuit-client.ts, with the same
 * schemas on both ends: a frame that fails them is reported, never acted on.
 */

type Params<M extends ClientMethod> = z.input<(typeof clientRequests)[M]['params']>;
type Result<M extends ClientMethod> = z.output<(typeof clientRequests)[M]['result']>;

export interface CircuitHandlers {
  job(job: JobParams): void;
  difficulty(difficulty: number): void;
  extranonce(terms: SetExtranonceParams): void;
  versionMask(mask: SetVersionMaskParams): void;
  relayState(state: RelayStateParams): void;
  protocolError(message: string): void;
  close(reason: string): void;
}

interface Pending {
  method: ClientMethod;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

const MAX_FRAME_BYTES = 256 * 1024;
const TIMEOUT_MS = 30_000;

export class PageCircuit {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  private constructor(
    private readonly ws: WebSocket,
    private readonly handlers: CircuitHandlers,
  ) {
    ws.addEventListener('message', (event: MessageEvent<unknown>) => this.onFrame(event.data));
    ws.addEventListener('close', (event) => {
      for (const [id, pending] of this.pending) {
        clearTimeout(pending.timer);
        pending.reject(new Error(`circuit closed (${event.code})`));
        this.pending.delete(id);
      }
      handlers.close(event.reason || `code ${event.code}`);
    });
  }

  /** Open a circuit to `url` (ws://…/v1/circuit on the page's own origin). */
  static open(url: string, handlers: CircuitHandlers): Promise<PageCircuit> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      const timer = setTimeout(() => {
        ws.close();
        reject(new Error('the relay did not answer'));
      }, TIMEOUT_MS);
      const failed = (): void => {
        clearTimeout(timer);
        reject(new Error('cannot open a circuit to the relay'));
      };
      ws.addEventListener('error', failed, { once: true });
      ws.addEventListener(
        'open',
        () => {
          clearTimeout(timer);
          ws.removeEventListener('error', failed);
          resolve(new PageCircuit(ws, handlers));
        },
        { once: true },
      );
    });
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  request<M extends ClientMethod>(method: M, params: Params<M>): Promise<Result<M>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (!this.open) {
        reject(new Error('circuit is not open'));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no answer within ${TIMEOUT_MS / 1000} s`));
      }, TIMEOUT_MS);
      this.pending.set(id, { method, resolve: resolve as (value: unknown) => void, reject, timer });
      this.ws.send(encodeRequest(id, method, params));
    });
  }

  close(): void {
    this.ws.close(1000, 'bye');
  }

  private onFrame(data: unknown): void {
    if (typeof data !== 'string') return this.handlers.protocolError('binary frame from relay');
    const frame = parseFrame(data, MAX_FRAME_BYTES);
    if (frame.kind === 'response') {
      const { id } = frame.message;
      const pending = typeof id === 'number' ? this.pending.get(id) : undefined;
      if (!pending || typeof id !== 'number') {
        return this.handlers.protocolError(`answer to unknown request ${String(id)}`);
      }
      this.pending.delete(id);
      clearTimeout(pending.timer);
      if ('error' in frame.message) {
        const { code, message, data: errorData } = frame.message.error;
        return pending.reject(new RpcError(code, message, errorData));
      }
      const parsed = clientRequests[pending.method].result.safeParse(frame.message.result);
      if (!parsed.success) {
        return pending.reject(
          new RpcError(RpcErrorCode.internalError, describeIssue(parsed.error)),
        );
      }
      return pending.resolve(parsed.data);
    }
    if (frame.kind !== 'notification') return this.handlers.protocolError('unexpected frame');
    const { method, params } = frame.message;
    const h = this.handlers;
    switch (method) {
      case 'mining.job':
        return this.notify(relayNotifications[method], params, (p) => h.job(p));
      case 'mining.set_difficulty':
        return this.notify(relayNotifications[method], params, (p) => h.difficulty(p.difficulty));
      case 'mining.set_extranonce':
        return this.notify(relayNotifications[method], params, (p) => h.extranonce(p));
      case 'mining.set_version_mask':
        return this.notify(relayNotifications[method], params, (p) => h.versionMask(p));
      case 'relay.state':
        return this.notify(relayNotifications[method], params, (p) => h.relayState(p));
      default:
        return h.protocolError(`unknown notification ${method.slice(0, 64)}`);
    }
  }

  private notify<S extends z.ZodType>(
    schema: S,
    params: unknown,
    deliver: (value: z.output<S>) => void,
  ): void {
    const parsed = schema.safeParse(params ?? {});
    if (!parsed.success) return this.handlers.protocolError(describeIssue(parsed.error));
    deliver(parsed.data);
  }
}
