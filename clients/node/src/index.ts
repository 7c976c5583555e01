/**
 * `@authd/client`: authd's Node.js client.
 *
 * - `client.ts`: {@link AuthClient}, every `auth.v1` method, typed.
 * - `transport.ts`: endpoints, TLS, deadlines, retries on `UNAVAILABLE`;
 *   `connect.ts` (the Connect protocol over `node:http2` or `node:http`, the default) and
 *   `grpc.ts` (grpc-js): one channel per endpoint in each.
 * - `cache.ts`, `revoked.ts`, `watch.ts`: the revocation-aware cache and
 *   the WatchRevocations stream that feeds it.
 * - `device.ts`: the device login (RFC 8628) helper.
 * - `errors.ts`: {@link AuthError} and the reasons, from `google.rpc.ErrorInfo`.
 * - `express.ts` (`@authd/client/express`): Express middleware.
 * - `gen/`: generated from `proto/` by `buf generate`; never edited.
 */
export { AuthClient, bareToken } from "./client.js";
export type {
  AuthClientOptions,
  CacheStats,
  ProfileSubject,
  RefreshCredential,
  RevokeTarget,
  SessionGrant,
  VerifyOptions,
} from "./client.js";
export type { CacheOptions, CacheState } from "./cache.js";
export { DeviceLoginError } from "./device.js";
export type { DeviceLoginOptions } from "./device.js";
export type { HttpVersion } from "./connect.js";
export { AuthError, Code, ERROR_DOMAIN, Reasons } from "./errors.js";
export type { Reason } from "./errors.js";
export { Secret } from "./secret.js";
export type { SecretLike } from "./secret.js";
export type { CallOptions, Protocol, RetryOptions, TlsOptions } from "./transport.js";
export type {
  DeviceCode,
  DevicePoll,
  NewSession,
  Profile,
  Refreshed,
  Revocation,
  RevocationEvent,
  Session,
  VerifiedToken,
} from "./types.js";
export type { TokenSource, WatchStats } from "./watch.js";
