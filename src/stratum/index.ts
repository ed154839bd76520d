/** The Stratum V1 wire codec, shared by the upstream pool client and the downstream server. */
export {
  describeError,
  normaliseError,
  type ResponseOutcome,
  responseOutcome,
  type StratumError,
  StratumErrorCode,
} from './errors.js';
export { MAX_EXTRANONCE1_BYTES, MAX_EXTRANONCE2_BYTES } from './fields.js';
export {
  DEFAULT_MAX_LINE_BYTES,
  FramingError,
  LineDecoder,
  type LineDecoderEvents,
} from './framing.js';
export {
  encodeError,
  encodeNotification,
  encodeRequest,
  encodeResult,
  type MessageParseResult,
  type ParseFailure,
  type ParseResult,
  parseMessage,
  type StratumId,
  type StratumMessage,
} from './messages.js';
export type {
  AuthorizeParams,
  Call,
  ConfigureParams,
  Method,
  MethodParams,
  ReconnectParams,
  SetExtranonceParams,
  SubmitParams,
  SubscribeParams,
  VersionRollingRequest,
} from './params.js';
export {
  buildConfigureResult,
  buildSubscribeResult,
  type ConfigureResult,
  parseConfigureResult,
  parseSubscribeResult,
  type SubscribeResult,
} from './results.js';
