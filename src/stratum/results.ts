import { z } from 'zod';
import { u32ToHex } from '../work/hex.js';
import { extranonce2Size, hex8Number, hexBytes, MAX_EXTRANONCE1_BYTES, name } from './fields.js';
import type { ParseResult } from './messages.js';

/**
 * Results of the handshake methods whose result is more than a boolean (mining.subscribe and
 * mining.configure): parsers for the client side, builders for the server side.
 */

export interface SubscribeResult {
  /** The id a miner passes back in mining.subscribe to resume this session. */
  sessionId: string | null;
  extranonce1: string;
  extranonce2Size: number;
}

const subscriptionPair = z.tuple([name('subscription method', 1), name('subscription id')]);

const subscribeResult = z.tuple([
  // Usually [[method, id], ...]; some old pools send a single flat [method, id] pair.
  z.union([z.array(subscriptionPair), subscriptionPair], {
    error: 'subscriptions: expected [method, id] pairs',
  }),
  hexBytes('extranonce1', 0, MAX_EXTRANONCE1_BYTES),
  extranonce2Size('extranonce2 size'),
]);

export function parseSubscribeResult(result: unknown): ParseResult<SubscribeResult> {
  const parsed = subscribeResult.safeParse(result);
  if (!parsed.success) {
    return { ok: false, error: `mining.subscribe result: ${parsed.error.issues[0]?.message}` };
  }
  const [subscriptions, extranonce1, size] = parsed.data;
  const pairs =
    typeof subscriptions[0] === 'string'
      ? [subscriptions as [string, string]]
      : (subscriptions as [string, string][]);
  // The notify subscription's id is the resumable session id (cgminer and ckpool agree).
  const notify = pairs.find(([method]) => method === 'mining.notify') ?? pairs[0];
  return {
    ok: true,
    value: { sessionId: notify?.[1] || null, extranonce1, extranonce2Size: size },
  };
}

export function buildSubscribeResult(value: SubscribeResult): unknown[] {
  const id = value.sessionId ?? '';
  return [
    [
      ['mining.set_difficulty', id],
      ['mining.notify', id],
    ],
    value.extranonce1,
    value.extranonce2Size,
  ];
}

export interface ConfigureResult {
  /** The BIP310 mask granted, or null when version rolling was refused or not offered. */
  versionRollingMask: number | null;
}

/**
 * A configure result is an object of extension → true/false/error text plus "<ext>.<param>"
 * values. Anything but an explicit grant with a valid mask means no version rolling.
 */
export function parseConfigureResult(result: unknown): ConfigureResult {
  if (typeof result !== 'object' || result === null || Array.isArray(result)) {
    return { versionRollingMask: null };
  }
  const record = result as Record<string, unknown>;
  if (record['version-rolling'] !== true) return { versionRollingMask: null };
  const mask = hex8Number('version-rolling.mask').safeParse(record['version-rolling.mask']);
  return { versionRollingMask: mask.success ? mask.data : null };
}

export function buildConfigureResult(value: ConfigureResult): Record<string, unknown> {
  if (value.versionRollingMask === null) return { 'version-rolling': false };
  return {
    'version-rolling': true,
    'version-rolling.mask': u32ToHex(value.versionRollingMask),
  };
}
