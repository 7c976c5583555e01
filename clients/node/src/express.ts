/**
 * Express middleware, shaped like Auth0's `express-oauth2-jwt-bearer`:
 * `auth()` verifies the bearer token with authd and sets
 * `req.auth = { payload, header, token }`; `requiredScopes()` checks scopes.
 * Failures go to `next(err)` with `status` and `headers` (RFC 6750
 * `WWW-Authenticate`), so the app's error handler — Express's own by
 * default — answers them. authd unreachable is 503, never a pass-through.
 */
import type { IncomingHttpHeaders } from "node:http";

import { bareToken, type AuthClient, type VerifyOptions } from "./client.js";
import { AuthError, Code, Reasons } from "./errors.js";
import { frozen, type VerifiedToken } from "./types.js";

/** The verified token's claims, as a JWT payload (what `express-oauth2-jwt-bearer` puts in `req.auth.payload`). */
export interface JWTPayload {
  iss: string;
  sub: string;
  aud: readonly string[];
  exp: number;
  iat?: number;
  sid?: string;
  jti?: string;
  azp?: string;
  /** The granted scopes, space-separated. */
  scope?: string;
  permissions?: readonly string[];
  [claim: string]: unknown;
}

/**
 * What `auth()` sets on `req.auth`. Frozen, payload and header included:
 * the requests a cached answer serves share it.
 */
export interface AuthResult {
  /** The verified claims. */
  readonly payload: Readonly<JWTPayload>;
  /** The token's JOSE header, decoded. */
  readonly header: Readonly<Record<string, unknown>>;
  /** The token, without its scheme. */
  readonly token: string;
  /** authd's typed answer. */
  readonly verified: VerifiedToken;
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Set by `@authd/client/express`'s `auth()` on a verified request. */
      auth?: AuthResult;
    }
  }
}

/** The parts of an Express request the middleware reads. */
export interface RequestLike {
  headers: IncomingHttpHeaders;
  method?: string;
  protocol?: string;
  originalUrl?: string;
  url?: string;
  auth?: AuthResult;
}

export type NextFunction = (err?: unknown) => void;
export type Handler = (req: RequestLike, res: unknown, next: NextFunction) => void;

/** What `auth()` takes. */
export interface AuthOptions {
  /** The client to verify with (share one per process: it holds the cache). */
  client: AuthClient;
  /** The audience the token's `aud` must contain; default: any audience authd accepts for its issuer. */
  audience?: string;
  /** Scopes or permissions every request must hold (checked by authd, so they share the cache entry). */
  requiredScopes?: readonly string[];
  /** `false`: a request without a token passes with no `req.auth`; a bad token is still refused. Defaults to `true`. */
  credentialsRequired?: boolean;
  /** The realm in `WWW-Authenticate`. Defaults to `"api"`. */
  realm?: string;
}

// === the errors, as express-oauth2-jwt-bearer's ===

const quoted = (s: string): string => s.replace(/["\\]/g, (c) => (c === '"' ? "'" : "/")).replace(/[^\x20-\x7e]/g, "?");

/** A refused request: `status` and `headers` for the error handler. */
export class UnauthorizedError extends Error {
  override name = "UnauthorizedError";
  status = 401;
  statusCode = 401;
  /** Express's default handler sets these on the answer. */
  headers: Record<string, string>;
  /** authd's error, when authd refused. */
  override cause: AuthError | undefined;

  constructor(message: string, realm: string, challenge?: Record<string, string>, cause?: AuthError) {
    super(message);
    const attrs = Object.entries({ realm, ...challenge }).map(([k, v]) => `${k}="${quoted(v)}"`);
    this.headers = { "WWW-Authenticate": `Bearer ${attrs.join(", ")}` };
    this.cause = cause;
  }
}

/** The token is malformed or the request is not a bearer request (400). */
export class InvalidRequestError extends UnauthorizedError {
  override name = "InvalidRequestError";
  override status = 400;
  override statusCode = 400;
  constructor(message: string, realm: string, cause?: AuthError) {
    super(message, realm, { error: "invalid_request", error_description: message }, cause);
  }
}

/** authd refused the token (401 `invalid_token`); `cause.reason` says why. */
export class InvalidTokenError extends UnauthorizedError {
  override name = "InvalidTokenError";
  constructor(message: string, realm: string, cause?: AuthError) {
    super(message, realm, { error: "invalid_token", error_description: message }, cause);
  }
}

/** A required scope is missing (403 `insufficient_scope`). */
export class InsufficientScopeError extends UnauthorizedError {
  override name = "InsufficientScopeError";
  override status = 403;
  override statusCode = 403;
  constructor(scopes: readonly string[], realm: string, cause?: AuthError) {
    const message = "Insufficient Scope";
    super(message, realm, { error: "insufficient_scope", error_description: message, scope: scopes.join(" ") }, cause);
  }
}

/** authd could not be reached or could not decide: refused, never passed through (503). */
export class AuthdUnavailableError extends Error {
  override name = "AuthdUnavailableError";
  status = 503;
  statusCode = 503;
  headers: Record<string, string> = {};
  constructor(override readonly cause: AuthError) {
    super("authd is unavailable: the request cannot be authenticated");
  }
}

// === the middleware ===

/** `[scheme, token]` of the `Authorization` header; `undefined` when there is none. */
function credentials(headers: IncomingHttpHeaders): [string, string] | "invalid" | undefined {
  const value = headers.authorization;
  if (value === undefined || value === "") return undefined;
  const match = /^(\S+)\s+(\S+)\s*$/.exec(value);
  if (!match) return "invalid";
  const scheme = match[1]!.toLowerCase();
  if (scheme !== "bearer" && scheme !== "dpop") return "invalid";
  return [scheme, match[2]!];
}

function decodeHeader(token: string): Record<string, unknown> {
  try {
    const header: unknown = JSON.parse(Buffer.from(token.slice(0, token.indexOf(".")), "base64url").toString());
    return header && typeof header === "object" ? (header as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** The verified claims as a JWT payload. */
export function payloadOf(v: VerifiedToken): JWTPayload {
  const seconds = (d: Date): number => Math.floor(d.getTime() / 1000);
  const payload: JWTPayload = {
    ...v.claims,
    iss: v.issuer,
    sub: v.subject,
    aud: v.audiences,
    exp: seconds(v.expiresAt),
  };
  if (v.issuedAt) payload.iat = seconds(v.issuedAt);
  if (v.sessionId !== undefined) payload.sid = v.sessionId;
  if (v.tokenId !== undefined) payload.jti = v.tokenId;
  if (v.authorizedParty !== undefined) payload.azp = v.authorizedParty;
  if (v.scopes.length > 0) payload.scope = v.scopes.join(" ");
  if (v.permissions.length > 0) payload.permissions = v.permissions;
  return payload;
}

/** The `req.auth` of a verified token, frozen. */
function made(token: string, verified: VerifiedToken): AuthResult {
  let header: Readonly<Record<string, unknown>> | undefined;
  return Object.freeze({
    payload: frozen(payloadOf(verified)),
    // Decoded when first read (the same object each time): most handlers never do.
    get header() {
      return (header ??= frozen(decodeHeader(token)));
    },
    token,
    verified,
  });
}

/**
 * The `req.auth` of a cached answer, made at its first hit and kept with
 * it: a hit returns the same `VerifiedToken` for the same token (its key is
 * the token's SHA-256), so repeated tokens share one `req.auth` and
 * allocate nothing. A miss makes its own (`made`), so that a token seen
 * once adds nothing here.
 */
const results = new WeakMap<VerifiedToken, AuthResult>();

function result(token: string, verified: VerifiedToken): AuthResult {
  let kept = results.get(verified);
  if (!kept) results.set(verified, (kept = made(token, verified)));
  return kept;
}

/** Sets `req.auth` from the cache's answer for `token`, if it gives one; whether it did. */
function fromCache(client: AuthClient, options: VerifyOptions, req: RequestLike, token: string): boolean {
  const hit = client.cached(token, options);
  if (!hit) return false;
  req.auth = result(token, hit);
  return true;
}

/**
 * Protects the routes after it: the request's bearer token must be one
 * authd verifies (with `requiredScopes` and `audience`), else `next(err)`:
 *
 * | case | status | `WWW-Authenticate` |
 * |---|---|---|
 * | no token | 401 | `Bearer realm="api"` |
 * | not a bearer header | 400 | `… error="invalid_request"` |
 * | authd refused the token | 401 | `… error="invalid_token", error_description="…"` |
 * | a required scope is missing | 403 | `… error="insufficient_scope", scope="…"` |
 * | authd unreachable or undecided | 503 | — |
 *
 * A `DPoP` header is passed to authd with the request's method and URL.
 */
export function auth(options: AuthOptions): Handler {
  const { client, audience } = options;
  const realm = options.realm ?? "api";
  const requiredScopes = options.requiredScopes ?? [];
  const credentialsRequired = options.credentialsRequired ?? true;
  client.watch();
  const refuse = (error: unknown, scheme: string): Error => {
    if (!(error instanceof AuthError)) return error instanceof Error ? error : new Error(String(error));
    switch (error.code) {
      case Code.UNAUTHENTICATED:
      case Code.INVALID_ARGUMENT: {
        const refused = new InvalidTokenError(error.message, realm, error);
        // RFC 9449 §7.1 and §9: a DPoP request is answered with a DPoP
        // challenge, and a missing server nonce with the nonce to use.
        if (error.reason === Reasons.DPOP_NONCE_REQUIRED && error.metadata.nonce) {
          refused.headers = {
            "WWW-Authenticate": `DPoP realm="${quoted(realm)}", error="use_dpop_nonce", error_description="${quoted(error.message)}"`,
            "DPoP-Nonce": error.metadata.nonce,
          };
        } else if (scheme === "dpop") {
          refused.headers["WWW-Authenticate"] = refused.headers["WWW-Authenticate"]?.replace(/^Bearer /, "DPoP ") ?? "";
        }
        return refused;
      }
      case Code.PERMISSION_DENIED:
        return new InsufficientScopeError(requiredScopes, realm, error);
      default:
        // Anything else — authd down, overloaded, broken — cannot vouch
        // for the token: refuse.
        return new AuthdUnavailableError(error);
    }
  };
  // One options object for every request: the cache key is remembered by value.
  const verifyOptions = { requiredScopes, audience };
  return (req, _res, next) => {
    const headers = req.headers;
    const value = headers.authorization;
    // The usual spelling: `Bearer <token>`, no blank around the token.
    const usual =
      value !== undefined &&
      value.startsWith("Bearer ") &&
      value.charCodeAt(7) > 0x20 &&
      value.charCodeAt(value.length - 1) > 0x20 &&
      headers.dpop === undefined;
    // The hot path: a repeated token is answered from the cache without a
    // promise or a parse. A hit means authd verified this very token;
    // anything else takes the full path below.
    if (usual && fromCache(client, verifyOptions, req, value.slice(7))) return next();
    const found = credentials(headers);
    if (found === undefined) {
      return credentialsRequired ? next(new UnauthorizedError("Unauthorized", realm)) : next();
    }
    if (found === "invalid") {
      return next(new InvalidRequestError("the Authorization header is not a bearer token", realm));
    }
    const [scheme, token] = found;
    const proof = headers.dpop;
    // Another spelling of a bearer header (`bearer`, blanks around the token).
    if (!usual && scheme === "bearer" && proof === undefined && fromCache(client, verifyOptions, req, token)) {
      return next();
    }
    const dpop =
      proof === undefined
        ? {}
        : {
            dpopProof: Array.isArray(proof) ? proof.join(",") : proof,
            httpMethod: req.method ?? "GET",
            httpUri: `${req.protocol ?? "http"}://${headers.host ?? "localhost"}${req.originalUrl ?? req.url ?? "/"}`,
          };
    client.verifyToken(scheme === "dpop" ? `DPoP ${token}` : token, { requiredScopes, audience, ...dpop }).then(
      (verified) => {
        req.auth = made(bareToken(token), verified);
        next();
      },
      (error: unknown) => next(refuse(error, scheme)),
    );
  };
}

/**
 * After `auth()`: the verified token must hold every one of `scopes` (in
 * its `scope` or `permissions` claim), else 403 `insufficient_scope`.
 * Without `req.auth` (no `auth()` before it) the request is refused 401.
 */
export function requiredScopes(...scopes: (string | readonly string[])[]): Handler {
  const wanted = scopes.flat().flatMap((s) => s.split(" ").filter(Boolean));
  return (req, _res, next) => {
    const verified = req.auth?.verified;
    if (!verified) return next(new UnauthorizedError("Unauthorized", "api"));
    const held = new Set([...verified.scopes, ...verified.permissions]);
    if (wanted.every((s) => held.has(s))) return next();
    next(new InsufficientScopeError(wanted, "api"));
  };
}
