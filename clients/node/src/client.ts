/**
 * {@link AuthClient}: every `auth.v1` method, typed; several endpoints, TLS,
 * deadlines, retries on `UNAVAILABLE` only, and the revocation-aware
 * verification cache.
 */
import { DeviceLoginState } from "./gen/auth/v1/auth_pb.js";
import { AuthService, type WatchRevocationsResponse } from "./gen/auth/v1/auth_pb.js";
import { cacheKey, VerifyCache, type CacheOptions, type CacheState } from "./cache.js";
import { deviceLogin, type DeviceLoginOptions } from "./device.js";
import { AuthError, Code } from "./errors.js";
import { expose, Secret, type SecretLike } from "./secret.js";
import type { HttpVersion } from "./connect.js";
import { Transport, type CallOptions, type Protocol, type RetryOptions, type TlsOptions } from "./transport.js";
import * as t from "./types.js";
import { Watcher, type TokenSource, type WatchStats } from "./watch.js";

/** How an {@link AuthClient} reaches authd and caches its answers. */
export interface AuthClientOptions {
  /**
   * authd's address, or several (calls are balanced over them):
   * `http://host:port` (plaintext, loopback or behind a mesh),
   * `https://host:port`, or `host:port` (TLS when `tls` is given).
   */
  endpoints: string | string[];
  /**
   * The protocol spoken to authd: `"connect"` (binary protobuf POSTs,
   * `node:http2`; needs an authd that serves Connect, `[server] connect =
   * true`, its default) or `"grpc"` (grpc-js over HTTP/2). Defaults to
   * `"connect"`: a call to authd costs the app less CPU time than over
   * grpc-js (see the README).
   */
  protocol?: Protocol;
  /**
   * Connect only: `"2"` (one multiplexed connection per endpoint, h2c or TLS
   * with ALPN `h2`) or `"1.1"` (a pool of keep-alive connections, for a path
   * to authd that passes HTTP/1.1 only). Defaults to `"2"`.
   */
  httpVersion?: HttpVersion;
  /** TLS to authd, and a client certificate for mutual TLS. */
  tls?: TlsOptions;
  /** The deadline of each attempt of each call; `0` waits forever. Defaults to 2 000 ms. */
  timeoutMs?: number;
  /** Retries on `UNAVAILABLE` (idempotent calls only). Defaults to 3 attempts, 50 ms then doubling, up to 1 s. */
  retry?: RetryOptions;
  /**
   * The cache of positive verifications, on by default (see the README's
   * guarantee); `false` turns it off.
   */
  cache?: CacheOptions | false;
  /**
   * The service token sent on the cache's WatchRevocations stream, for a
   * caller without a client certificate that authd's `[[callers]]` names:
   * authd's default grants the stream to tokens holding `revocations:watch`.
   * A function is asked at every (re)connection, for a token renewed
   * elsewhere. Without one the stream is asked for anonymously; refused, the
   * client runs without a cache (said once) and asks again every minute.
   */
  watchToken?: SecretLike | TokenSource;
  /** Where the client's few warnings go. Defaults to `process.emitWarning`. */
  logger?: { warn(message: string): void };
}

/** What {@link AuthClient.verifyToken} may add. */
export interface VerifyOptions extends CallOptions {
  /** Scopes or permissions the token must all hold. */
  requiredScopes?: readonly string[];
  /** The audience the token's `aud` must contain (one of its issuer's configured audiences). */
  audience?: string;
  /** The request's `DPoP` header (RFC 9449), verbatim; then `httpMethod` and `httpUri` are required. */
  dpopProof?: string;
  /** The protected request's method, for the DPoP proof's `htm`. */
  httpMethod?: string;
  /** The protected request's URI as its client addressed it, for the proof's `htu`. */
  httpUri?: string;
  /** The client certificate (DER) the protected service received, for certificate-bound tokens (RFC 8705). */
  clientCertificate?: Uint8Array;
}

/** How a session is started. */
export type SessionGrant =
  | { authorizationCode: { code: string; redirectUri: string; codeVerifier?: string; nonce?: string } }
  | { existingTokens: { refreshToken: SecretLike; idToken?: string; accessToken?: string; nonce?: string } };

/** What a refresh uses: a session handle, or a raw refresh token held by the caller. */
export type RefreshCredential = { sessionHandle: SecretLike } | { refreshToken: SecretLike; issuer?: string };

/** What a revocation ends: one session, or every session of a user (a trusted service's call). */
export type RevokeTarget = { sessionHandle: SecretLike } | { userId: string };

/** Whose profile: the caller's (by access token) or any user's (trusted services). */
export type ProfileSubject = { accessToken: string } | { userId: string };

/** The cache's figures. */
export interface CacheStats extends WatchStats {
  state: CacheState;
  entries: number;
  revocations: number;
}

/** `token` without a leading `Bearer`/`DPoP` scheme and surrounding white space. */
export function bareToken(token: string): string {
  const trimmed = token.trim();
  const match = /^(?:bearer|dpop)(?:\s+|$)/i.exec(trimmed);
  return match ? trimmed.slice(match[0].length) : trimmed;
}

const IDEMPOTENT = true;
const NOT_IDEMPOTENT = false;

/**
 * A client of `auth.v1.AuthService`. Create one per process and share it;
 * {@link AuthClient.close} ends its connections and revocation stream.
 *
 * ```ts
 * const authd = new AuthClient({ endpoints: "http://127.0.0.1:50051", watchToken: process.env.AUTHD_WATCH_TOKEN });
 * const token = await authd.verifyToken(bearer, { requiredScopes: ["read:orders"] });
 * ```
 */
export class AuthClient {
  readonly #transport: Transport;
  readonly #cache: VerifyCache | undefined;
  readonly #watcher: Watcher | undefined;

  constructor(options: AuthClientOptions) {
    const endpoints = typeof options.endpoints === "string" ? [options.endpoints] : options.endpoints;
    const timeoutMs = options.timeoutMs ?? 2_000;
    this.#transport = new Transport({
      endpoints,
      protocol: options.protocol ?? "connect",
      httpVersion: options.httpVersion ?? "2",
      tls: options.tls,
      timeoutMs: timeoutMs > 0 ? timeoutMs : undefined,
      retry: {
        maxAttempts: options.retry?.maxAttempts ?? 3,
        initialBackoffMs: options.retry?.initialBackoffMs ?? 50,
        maxBackoffMs: options.retry?.maxBackoffMs ?? 1_000,
      },
    });
    if (options.cache !== false) {
      this.#cache = new VerifyCache(options.cache);
      if (this.#cache.state !== "off") {
        const logger = options.logger ?? { warn: (m: string) => process.emitWarning(m, "AuthdWarning") };
        const source = options.watchToken;
        const token: TokenSource | undefined =
          typeof source === "function" ? source : source === undefined ? undefined : () => source;
        this.#watcher = new Watcher(this.#transport, this.#cache, token, (m) => logger.warn(m));
      }
    }
  }

  /** Whether the verification cache answers now. */
  get cacheState(): CacheState {
    return this.#cache?.state ?? "off";
  }

  /** The cache's state, size and revocation stream, for dashboards and tests. */
  cacheStats(): CacheStats {
    return {
      state: this.cacheState,
      entries: this.#cache?.size ?? 0,
      revocations: this.#cache?.revocations ?? 0,
      ...(this.#watcher?.stats ?? { connections: 0, cursor: "", resumedFrom: "" }),
    };
  }

  /**
   * Opens the cache's revocation stream now rather than at the first
   * verification, so that the cache is warm sooner. Idempotent.
   */
  watch(): this {
    this.#watcher?.start();
    return this;
  }

  /**
   * The cache's answer for `token` and these options, if it gives one now:
   * synchronous, for middleware that wants to skip a promise on a hit.
   */
  cached(token: string, options: VerifyOptions = {}): t.VerifiedToken | undefined {
    if (!this.#cache) return undefined;
    this.#watcher?.start();
    if (!cacheable(options)) return undefined;
    return this.#cache.get(this.#key(token, options.requiredScopes ?? [], options.audience));
  }

  /**
   * The cache key of a verification, remembered for the last one asked:
   * middleware asks `cached()` and, on a miss, `verifyToken()` with the same
   * arguments at once, which then hashes nothing again.
   */
  #last: { token: string; scopes: readonly string[]; audience: string | undefined; key: string } | undefined;
  #key(token: string, scopes: readonly string[], audience: string | undefined): string {
    const last = this.#last;
    // Scopes compared by value: an array the caller changed in between must not match.
    if (last && last.token === token && last.audience === audience && sameList(last.scopes, scopes)) return last.key;
    const key = cacheKey(bareToken(token), scopes, audience);
    this.#last = { token, scopes: [...scopes], audience, key };
    return key;
  }

  /**
   * Verifies an access token (a leading `Bearer ` is accepted): signature,
   * issuer, audience, expiry, required scopes, revocation. Answered from the
   * cache when it holds this token with these scopes and audience and its
   * revocation stream is live; otherwise asks authd (retried on
   * `UNAVAILABLE`). Refusals throw an {@link AuthError}.
   */
  async verifyToken(token: string, options: VerifyOptions = {}): Promise<t.VerifiedToken> {
    const scopes = options.requiredScopes ?? [];
    // The cache key, hashed once for the lookup and the answer kept.
    let key: string | undefined;
    if (this.#cache) {
      this.#watcher?.start();
      if (cacheable(options)) {
        key = this.#key(token, scopes, options.audience);
        const hit = this.#cache.get(key);
        if (hit) return hit;
      }
    }
    const answer = await this.#transport.unary(
      AuthService.method.verifyToken,
      // A field not given (undefined) is left at its default by `create`.
      {
        token,
        requiredScopes: [...scopes],
        audience: options.audience,
        dpopProof: options.dpopProof,
        httpMethod: options.httpMethod,
        httpUri: options.httpUri,
        clientCertificate: options.clientCertificate,
      },
      IDEMPOTENT,
      options,
    );
    const verified = t.verifiedToken(answer);
    if (this.#cache && key !== undefined) this.#cache.set(key, bareToken(token), verified);
    return verified;
  }

  /** Starts a session from a sign-in (never retried). */
  async createSession(grant: SessionGrant, options: CallOptions & { issuer?: string } = {}): Promise<t.NewSession> {
    const request =
      "authorizationCode" in grant
        ? { grant: { case: "authorizationCode" as const, value: grant.authorizationCode } }
        : {
            grant: {
              case: "existingTokens" as const,
              value: { ...grant.existingTokens, refreshToken: expose(grant.existingTokens.refreshToken) },
            },
          };
    const answer = await this.#transport.unary(
      AuthService.method.createSession,
      { ...request, issuer: options.issuer ?? "" },
      NOT_IDEMPOTENT,
      options,
    );
    if (!answer.session) throw new AuthError(Code.INTERNAL, "authd sent no session");
    return t.newSession(answer.session);
  }

  /** A fresh access token for a session or a raw refresh token (never retried: the issuer may have rotated the refresh token already). */
  async refreshSession(credential: RefreshCredential, options: CallOptions = {}): Promise<t.Refreshed> {
    const request =
      "sessionHandle" in credential
        ? { credential: { case: "sessionHandle" as const, value: expose(credential.sessionHandle) } }
        : {
            credential: { case: "refreshToken" as const, value: expose(credential.refreshToken) },
            issuer: credential.issuer ?? "",
          };
    return t.refreshed(
      await this.#transport.unary(AuthService.method.refreshSession, request, NOT_IDEMPOTENT, options),
    );
  }

  /**
   * Revokes one session, or every session of a user (pass a trusted
   * service's `serviceToken`); answers how many were revoked.
   */
  async revokeSession(target: RevokeTarget, options: CallOptions = {}): Promise<number> {
    const request =
      "sessionHandle" in target
        ? { target: { case: "sessionHandle" as const, value: expose(target.sessionHandle) } }
        : { target: { case: "userId" as const, value: target.userId } };
    const answer = await this.#transport.unary(AuthService.method.revokeSession, request, IDEMPOTENT, options);
    return answer.revokedSessions;
  }

  /** The profile of the user an access token belongs to, or (trusted services, with `serviceToken`) of any user. */
  async getProfile(subject: ProfileSubject, options: CallOptions = {}): Promise<t.Profile> {
    const request =
      "accessToken" in subject
        ? { subject: { case: "accessToken" as const, value: subject.accessToken } }
        : { subject: { case: "userId" as const, value: subject.userId } };
    const answer = await this.#transport.unary(AuthService.method.getProfile, request, IDEMPOTENT, options);
    if (!answer.profile) throw new AuthError(Code.INTERNAL, "authd sent no profile");
    return t.profile(answer.profile);
  }

  /** Begins a device login (RFC 8628; never retried). Most apps want {@link AuthClient.deviceLogin}. */
  async startDeviceLogin(
    request: { scopes?: readonly string[]; audience?: string; issuer?: string } = {},
    options: CallOptions = {},
  ): Promise<t.DeviceCode> {
    const r = await this.#transport.unary(
      AuthService.method.startDeviceLogin,
      { scopes: [...(request.scopes ?? [])], audience: request.audience ?? "", issuer: request.issuer ?? "" },
      NOT_IDEMPOTENT,
      options,
    );
    return {
      deviceCode: new Secret(r.deviceCode),
      userCode: r.userCode,
      verificationUri: r.verificationUri,
      verificationUriComplete: r.verificationUriComplete,
      interval: r.interval,
      expiresIn: r.expiresIn,
    };
  }

  /**
   * Where a device login stands; the session once approved. `interval` is
   * the one the app polls at now (StartDeviceLogin's, then the last
   * answer's), so that a slow down's longer interval sticks.
   */
  async pollDeviceLogin(
    deviceCode: SecretLike,
    request: { interval: number; issuer?: string },
    options: CallOptions = {},
  ): Promise<t.DevicePoll> {
    const r = await this.#transport.unary(
      AuthService.method.pollDeviceLogin,
      { deviceCode: expose(deviceCode), interval: request.interval, issuer: request.issuer ?? "" },
      IDEMPOTENT,
      options,
    );
    switch (r.state) {
      case DeviceLoginState.PENDING:
        return { state: "pending", interval: r.interval };
      case DeviceLoginState.SLOW_DOWN:
        return { state: "slow_down", interval: r.interval };
      case DeviceLoginState.DENIED:
        return { state: "denied", interval: r.interval };
      case DeviceLoginState.EXPIRED:
        return { state: "expired", interval: r.interval };
      case DeviceLoginState.APPROVED:
        if (r.session) return { state: "approved", interval: r.interval, session: t.newSession(r.session) };
    }
    throw new AuthError(Code.INTERNAL, `authd sent device login state ${r.state}`);
  }

  /**
   * The whole device login (RFC 8628) for programs without a browser:
   * starts it, hands `onCode` what to show the user, polls at the interval
   * (longer after a `SLOW_DOWN`) until the user approves, and answers the
   * new session. Throws a {@link DeviceLoginError} when the user refuses or
   * the code expires.
   */
  deviceLogin(options: DeviceLoginOptions): Promise<t.NewSession> {
    return deviceLogin(this, options);
  }

  /**
   * WatchRevocations as an async iterator (trusted callers): the
   * revocations in force (or after `cursor`), a heartbeat, then each new
   * revocation. The cache holds its own stream; this is for callers that
   * keep revocations themselves. Breaking out of the loop ends the stream.
   */
  async *watchRevocations(
    request: { cursor?: string } = {},
    options: Pick<CallOptions, "serviceToken" | "signal"> = {},
  ): AsyncGenerator<t.RevocationEvent> {
    // The stream's events, queued until the loop takes them.
    const queue: WatchRevocationsResponse[] = [];
    let ended: { error: AuthError | undefined } | undefined;
    let wake: (() => void) | undefined;
    const call = this.#transport.serverStream(
      AuthService.method.watchRevocations,
      { cursor: request.cursor ?? "" },
      options.serviceToken,
      {
        open: () => undefined,
        message: (m) => (queue.push(m), wake?.()),
        end: (error) => ((ended = { error }), wake?.()),
      },
    );
    const onAbort = (): void => call.cancel();
    if (options.signal?.aborted) call.cancel();
    else options.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for (;;) {
        const message = queue.shift();
        if (message === undefined) {
          if (ended) {
            if (ended.error) throw ended.error;
            return;
          }
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
          continue;
        }
        const event = message.event;
        if (event.case === "revocation") {
          yield { kind: "revocation", revocation: t.revocation(event.value), cursor: message.cursor };
        } else if (event.case === "heartbeat") {
          yield { kind: "heartbeat", intervalMs: event.value.intervalMs, cursor: message.cursor };
        }
      }
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
      call.cancel();
    }
  }

  /** Ends the revocation stream and closes the connections. */
  close(): void {
    this.#watcher?.stop();
    this.#transport.close();
  }
}

const sameList = (a: readonly string[], b: readonly string[]): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * A sender-constrained call (DPoP proof, client certificate) is never
 * answered from, nor kept in, the cache: each needs its own proof checked.
 */
function cacheable(options: VerifyOptions): boolean {
  return !options.dpopProof && !options.clientCertificate?.length;
}
