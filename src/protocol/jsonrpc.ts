import { z } from 'zod';
import { RpcError, RpcErrorCode, type RpcErrorObject } from './errors.js';

/**
 * JSON-RPC 2.0 envelopes over WebSocket text frames. Parsing never throws: it returns the
 * message or the error object to answer with (and whether an id was recoverable).
 */

export type RpcId = string | number;

const id = z.union([z.string().max(64), z.number().int().safe()]);
const params = z.record(z.string(), z.unknown());

const requestSchema = z.strictObject({
  jsonrpc: z.literal('2.0'),
  id,
  method: z.string().min(1).max(64),
  params: params.optional(),
});
const notificationSchema = z.strictObject({
  jsonrpc: z.literal('2.0'),
  method: z.string().min(1).max(64),
  params: params.optional(),
});
const errorObject = z.strictObject({
  code: z.number().int(),
  message: z.string().max(1024),
  data: z.unknown().optional(),
});
const responseSchema = z.union([
  z.strictObject({ jsonrpc: z.literal('2.0'), id: id.nullable(), result: z.unknown() }),
  z.strictObject({ jsonrpc: z.literal('2.0'), id: id.nullable(), error: errorObject }),
]);

export type RpcRequest = z.infer<typeof requestSchema>;
export type RpcNotification = z.infer<typeof notificationSchema>;
export type RpcResponse =
  | { jsonrpc: '2.0'; id: RpcId | null; result: unknown }
  | { jsonrpc: '2.0'; id: RpcId | null; error: RpcErrorObject };

export type ParsedFrame =
  | { kind: 'request'; message: RpcRequest }
  | { kind: 'notification'; message: RpcNotification }
  | { kind: 'response'; message: RpcResponse }
  | { kind: 'invalid'; id: RpcId | null; error: RpcErrorObject };

function recoverId(value: unknown): RpcId | null {
  if (typeof value !== 'object' || value === null || !('id' in value)) return null;
  const parsed = id.safeParse(value.id);
  return parsed.success ? parsed.data : null;
}

/** Parse one frame's text. `maxBytes` is enforced before JSON.parse touches it. */
export function parseFrame(text: string, maxBytes: number): ParsedFrame {
  if (Buffer.byteLength(text, 'utf8') > maxBytes) {
    return {
      kind: 'invalid',
      id: null,
      error: { code: RpcErrorCode.invalidRequest, message: `frame larger than ${maxBytes} bytes` },
    };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return {
      kind: 'invalid',
      id: null,
      error: { code: RpcErrorCode.parseError, message: 'frame is not valid JSON' },
    };
  }
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    if ('method' in value) {
      if ('id' in value && value.id !== null) {
        const request = requestSchema.safeParse(value);
        if (request.success) return { kind: 'request', message: request.data };
      } else {
        const notification = notificationSchema.safeParse(value);
        if (notification.success) return { kind: 'notification', message: notification.data };
      }
    } else {
      const response = responseSchema.safeParse(value);
      if (response.success) return { kind: 'response', message: response.data };
    }
  }
  return {
    kind: 'invalid',
    id: recoverId(value),
    error: {
      code: RpcErrorCode.invalidRequest,
      message: 'not a JSON-RPC 2.0 request, notification or response',
    },
  };
}

export function encodeRequest(
  requestId: RpcId,
  method: string,
  requestParams: Record<string, unknown>,
): string {
  return JSON.stringify({ jsonrpc: '2.0', id: requestId, method, params: requestParams });
}

export function encodeNotification(method: string, notificationParams: object): string {
  return JSON.stringify({ jsonrpc: '2.0', method, params: notificationParams });
}

export function encodeResult(requestId: RpcId | null, result: unknown): string {
  return JSON.stringify({ jsonrpc: '2.0', id: requestId, result });
}

export function encodeError(requestId: RpcId | null, error: RpcErrorObject | RpcError): string {
  const object = error instanceof RpcError ? error.toObject() : error;
  return JSON.stringify({ jsonrpc: '2.0', id: requestId, error: object });
}
