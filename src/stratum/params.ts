import { z } from 'zod';
import { u32ToHex } from '../work/hex.js';
import type { Job, ShareSubmission } from '../work/job.js';
import {
  difficulty,
  extranonce2Size,
  hex8,
  hex8Number,
  hexAny,
  hexBytes,
  looseInt,
  MAX_EXTRANONCE1_BYTES,
  MAX_EXTRANONCE2_BYTES,
  merkleBranch,
  name,
} from './fields.js';

/**
 * Typed params of every Stratum V1 method of docs/design.md §3.1, in both directions. Stratum params
 * are positional arrays; here each method gets named fields, a schema that turns the array
 * into them (validating every element), and an encoder that turns them back.
 */

export interface VersionRollingRequest {
  /** BIP310 mask the miner would like to roll. */
  mask: number;
  minBitCount: number;
}

export interface ConfigureParams {
  extensions: string[];
  /** The "version-rolling.*" parameters, parsed, when version-rolling is requested. */
  versionRolling: VersionRollingRequest | null;
  /** Parameters of extensions this codec does not interpret, as given. */
  other: Record<string, unknown>;
}

export interface SubscribeParams {
  agent: string | null;
  /** A previous subscription id, asking the pool to resume that session. */
  sessionId: string | null;
}

export interface AuthorizeParams {
  user: string;
  password: string;
}

export interface SetExtranonceParams {
  extranonce1: string;
  extranonce2Size: number;
}

export interface ReconnectParams {
  /** null: reconnect to the same host. */
  host: string | null;
  port: number | null;
  waitSeconds: number | null;
}

export interface SubmitParams extends ShareSubmission {
  user: string;
}

/** Method name → typed params. */
export interface MethodParams {
  'mining.configure': ConfigureParams;
  'mining.subscribe': SubscribeParams;
  'mining.authorize': AuthorizeParams;
  'mining.extranonce.subscribe': Record<string, never>;
  'mining.notify': Job;
  'mining.set_difficulty': { difficulty: number };
  'mining.set_extranonce': SetExtranonceParams;
  'mining.set_version_mask': { mask: number };
  'client.reconnect': ReconnectParams;
  'client.show_message': { message: string };
  'client.get_version': Record<string, never>;
  'mining.ping': Record<string, never>;
  'mining.submit': SubmitParams;
  /** A miner asks for a share difficulty (cgminer, ASIC firmware); the pool may ignore it. */
  'mining.suggest_difficulty': { difficulty: number };
}

export type Method = keyof MethodParams;

/** One call: a method with its typed params. Narrow on `method`. */
export type Call = { [M in Method]: { method: M; params: MethodParams[M] } }[Method];

const VERSION_ROLLING = 'version-rolling';
const MASK_KEY = 'version-rolling.mask';
const MIN_BITS_KEY = 'version-rolling.min-bit-count';

const noParams = z
  .tuple([], { error: 'expected no params' })
  .transform((): Record<string, never> => ({}));

const configure = z
  .tuple([
    z.array(name('extension', 1), { error: 'extensions: expected an array of names' }),
    z.record(z.string(), z.unknown(), { error: 'parameters: expected an object' }).optional(),
  ])
  .transform(([extensions, parameters = {}], ctx): ConfigureParams => {
    const { [MASK_KEY]: mask, [MIN_BITS_KEY]: minBits, ...other } = parameters;
    if (!extensions.includes(VERSION_ROLLING)) {
      return { extensions, versionRolling: null, other: parameters };
    }
    const parsedMask = hex8Number(MASK_KEY).safeParse(mask);
    const parsedMin = looseInt(MIN_BITS_KEY, 0, 32).optional().safeParse(minBits);
    if (!parsedMask.success || !parsedMin.success) {
      const issue = (parsedMask.error ?? parsedMin.error)?.issues[0];
      ctx.addIssue({ code: 'custom', message: issue?.message ?? 'invalid version-rolling' });
      return z.NEVER;
    }
    return {
      extensions,
      versionRolling: { mask: parsedMask.data, minBitCount: parsedMin.data ?? 0 },
      other,
    };
  });

const nullableName = (field: string) => name(field).nullable().optional();

const subscribe = z
  // Miners send [], [agent], [agent, sessionId] and sometimes [agent, sessionId, host, port].
  .tuple([nullableName('agent'), nullableName('session id')], z.unknown())
  .transform(([agent, sessionId]): SubscribeParams => ({
    agent: agent ?? null,
    sessionId: sessionId || null,
  }));

const authorize = z
  .tuple([name('user', 1), name('password').nullable().optional()])
  .transform(([user, password]): AuthorizeParams => ({ user, password: password ?? '' }));

const notify = z
  .tuple([
    name('job id', 1),
    hexBytes('prevhash', 32, 32),
    hexAny('coinb1'),
    hexAny('coinb2'),
    merkleBranch,
    hex8('version'),
    hex8('nbits'),
    hex8('ntime'),
    z.boolean({ error: 'clean: expected a boolean' }),
  ])
  .transform(([jobId, prevhash, coinb1, coinb2, branch, version, nbits, ntime, clean]): Job => ({
    jobId,
    prevhash,
    coinb1,
    coinb2,
    merkleBranch: branch,
    version,
    nbits,
    ntime,
    clean,
  }));

const setDifficulty = z.tuple([difficulty]).transform(([d]) => ({ difficulty: d }));

const setExtranonce = z
  .tuple([hexBytes('extranonce1', 0, MAX_EXTRANONCE1_BYTES), extranonce2Size('extranonce2 size')])
  .transform(([extranonce1, size]): SetExtranonceParams => ({
    extranonce1,
    extranonce2Size: size,
  }));

const setVersionMask = z.tuple([hex8Number('mask')]).transform(([mask]) => ({ mask }));

const reconnect = z
  .tuple([
    z.string({ error: 'host: expected a string' }).max(255).nullable().optional(),
    looseInt('port', 1, 65535).nullable().optional(),
    looseInt('wait', 0, 86_400).nullable().optional(),
  ])
  .transform(([host, port, wait]): ReconnectParams => ({
    host: host || null,
    port: port ?? null,
    waitSeconds: wait ?? null,
  }));

const showMessage = z
  .tuple([z.string({ error: 'message: expected a string' })])
  .transform(([message]) => ({ message }));

const submit = z
  .tuple([
    name('user', 1),
    name('job id', 1),
    hexBytes('extranonce2', 0, MAX_EXTRANONCE2_BYTES),
    hex8('ntime'),
    hex8('nonce'),
    hex8('version bits').optional(),
  ])
  .transform(([user, jobId, extranonce2, ntime, nonce, versionBits]): SubmitParams => {
    const params: SubmitParams = { user, jobId, extranonce2, ntime, nonce };
    if (versionBits !== undefined) params.versionBits = versionBits;
    return params;
  });

export const paramSchemas: { [M in Method]: z.ZodType<MethodParams[M]> } = {
  'mining.configure': configure,
  'mining.subscribe': subscribe,
  'mining.authorize': authorize,
  'mining.extranonce.subscribe': noParams,
  'mining.notify': notify,
  'mining.set_difficulty': setDifficulty,
  'mining.set_extranonce': setExtranonce,
  'mining.set_version_mask': setVersionMask,
  'client.reconnect': reconnect,
  'client.show_message': showMessage,
  'client.get_version': noParams,
  'mining.ping': noParams,
  'mining.submit': submit,
  'mining.suggest_difficulty': setDifficulty,
};

export function isMethod(method: string): method is Method {
  return Object.hasOwn(paramSchemas, method);
}

/** The positional wire form of a call's params. */
export function encodeParams(call: Call): unknown[] {
  switch (call.method) {
    case 'mining.configure': {
      const { extensions, versionRolling, other } = call.params;
      const parameters: Record<string, unknown> = { ...other };
      if (versionRolling !== null) {
        parameters[MASK_KEY] = u32ToHex(versionRolling.mask);
        parameters[MIN_BITS_KEY] = versionRolling.minBitCount;
      }
      return [extensions, parameters];
    }
    case 'mining.subscribe': {
      const { agent, sessionId } = call.params;
      // A session id needs the agent before it: a null agent stays null, as it was parsed.
      if (sessionId !== null) return [agent, sessionId];
      return agent === null ? [] : [agent];
    }
    case 'mining.authorize':
      return [call.params.user, call.params.password];
    case 'mining.notify': {
      const j = call.params;
      return [
        j.jobId,
        j.prevhash,
        j.coinb1,
        j.coinb2,
        j.merkleBranch,
        j.version,
        j.nbits,
        j.ntime,
        j.clean,
      ];
    }
    case 'mining.set_difficulty':
    case 'mining.suggest_difficulty':
      return [call.params.difficulty];
    case 'mining.set_extranonce':
      return [call.params.extranonce1, call.params.extranonce2Size];
    case 'mining.set_version_mask':
      return [u32ToHex(call.params.mask)];
    case 'client.reconnect': {
      const { host, port, waitSeconds } = call.params;
      // A wait not given stays null (miners read only host and port), so the line parses back
      // to these params.
      return [host ?? '', port, waitSeconds];
    }
    case 'client.show_message':
      return [call.params.message];
    case 'mining.submit': {
      const s = call.params;
      const params = [s.user, s.jobId, s.extranonce2, s.ntime, s.nonce];
      if (s.versionBits !== undefined) params.push(s.versionBits);
      return params;
    }
    case 'mining.extranonce.subscribe':
    case 'client.get_version':
    case 'mining.ping':
      return [];
    default: {
      const unreachable: never = call;
      return unreachable;
    }
  }
}
