/**
 * The package's own types for authd's answers, converted from the generated
 * protobuf messages (`src/gen`), which stay inside the package.
 */
import type { JsonObject } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";

import type * as pb from "./gen/auth/v1/auth_pb.js";
import { Secret } from "./secret.js";

/**
 * A token authd verified: its claims, typed. Frozen, claims included: the
 * cache hands the same answer to every request with this token.
 */
export interface VerifiedToken {
  /** `sub`: the user (`auth0|alice`) or client (`ID@clients`). */
  readonly subject: string;
  /** `iss`, exactly as in the token. */
  readonly issuer: string;
  /** `aud`, always a list. */
  readonly audiences: readonly string[];
  /** The `scope` (or `scp`) claim, split. */
  readonly scopes: readonly string[];
  /** The `permissions` claim (Auth0 RBAC). */
  readonly permissions: readonly string[];
  /** `sid`, the issuer's session id, when present. */
  readonly sessionId?: string;
  /** `jti`, when present. */
  readonly tokenId?: string;
  /** `iat`, when present. */
  readonly issuedAt?: Date;
  /** `exp`. */
  readonly expiresAt: Date;
  /** `azp` (or `client_id`), when present. */
  readonly authorizedParty?: string;
  /** Every other claim of the payload, as JSON. */
  readonly claims: Readonly<JsonObject>;
}

/** A session without its secrets. */
export interface Session {
  /** A stable, non-secret id (safe to log). */
  sessionId: string;
  /** The user (`sub`). */
  userId: string;
  issuer: string;
  createdAt?: Date;
  refreshedAt?: Date;
  expiresAt?: Date;
}

/** What authd knows of a user. */
export interface Profile {
  userId: string;
  email: string;
  emailVerified: boolean;
  name: string;
  nickname: string;
  picture: string;
  createdAt?: Date;
  updatedAt?: Date;
  /** Every other attribute the issuer returned. */
  attributes: JsonObject;
}

/** A new session: its handle is returned only here. */
export interface NewSession {
  /** The session handle: keep it like a password (authd stores its hash). */
  sessionHandle: Secret;
  session?: Session;
  /** A current access token for the session. */
  accessToken: string;
  accessTokenExpiresAt?: Date;
  /** The id token, when the issuer returned one. */
  idToken?: string;
  profile?: Profile;
}

/** A refreshed access token. */
export interface Refreshed {
  accessToken: string;
  expiresAt?: Date;
  idToken?: string;
  /** The rotated refresh token, only when a raw refresh token was sent. */
  refreshToken?: Secret;
  scopes: string[];
}

/** What a device login shows the user (RFC 8628). */
export interface DeviceCode {
  /** The code to poll with; secret to the device. */
  deviceCode: Secret;
  /** The short code the user types at `verificationUri`. */
  userCode: string;
  verificationUri: string;
  /** The same with the user code filled in (for a QR code). */
  verificationUriComplete: string;
  /** Seconds between polls. */
  interval: number;
  /** Seconds until the device code expires. */
  expiresIn: number;
}

/** Where a device login stands. */
export type DevicePoll =
  | { state: "pending" | "slow_down" | "denied" | "expired"; interval: number }
  | { state: "approved"; interval: number; session: NewSession };

/** One message of the WatchRevocations stream. */
export type RevocationEvent =
  | { kind: "revocation"; revocation: Revocation; cursor: string }
  | { kind: "heartbeat"; intervalMs: number; cursor: string };

/** A revocation in force. */
export interface Revocation {
  /** What it refuses: tokens with this `sid`; of this subject issued at or before `revokedAt`; with this digest of their signing input; with this digest of the whole token (older authd). */
  kind: "session_id" | "subject" | "signed_digest" | "token_hash" | "unknown";
  issuer: string;
  value: string;
  revokedAt?: Date;
  expiresAt?: Date;
}

// === conversions from the generated messages ===

export const date = (t: Timestamp | undefined): Date | undefined => (t ? timestampDate(t) : undefined);
const opt = (s: string): string | undefined => (s === "" ? undefined : s);

/** `value` and every object or array in it, frozen (JSON: no cycles). */
export function frozen<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) frozen(inner);
  }
  return value;
}

export function verifiedToken(r: pb.VerifyTokenResponse): VerifiedToken {
  return Object.freeze({
    subject: r.subject,
    issuer: r.issuer,
    audiences: Object.freeze(r.audiences),
    scopes: Object.freeze(r.scopes),
    permissions: Object.freeze(r.permissions),
    sessionId: opt(r.sessionId),
    tokenId: opt(r.tokenId),
    issuedAt: date(r.issuedAt),
    expiresAt: date(r.expiresAt) ?? new Date(0),
    authorizedParty: opt(r.authorizedParty),
    claims: frozen(r.claims ?? {}),
  });
}

export function session(s: pb.Session): Session {
  return {
    sessionId: s.sessionId,
    userId: s.userId,
    issuer: s.issuer,
    createdAt: date(s.createdAt),
    refreshedAt: date(s.refreshedAt),
    expiresAt: date(s.expiresAt),
  };
}

export function profile(p: pb.Profile): Profile {
  return {
    userId: p.userId,
    email: p.email,
    emailVerified: p.emailVerified,
    name: p.name,
    nickname: p.nickname,
    picture: p.picture,
    createdAt: date(p.createdAt),
    updatedAt: date(p.updatedAt),
    attributes: p.attributes ?? {},
  };
}

export function newSession(s: pb.NewSession): NewSession {
  return {
    sessionHandle: new Secret(s.sessionHandle),
    session: s.session && session(s.session),
    accessToken: s.accessToken,
    accessTokenExpiresAt: date(s.accessTokenExpiresAt),
    idToken: opt(s.idToken),
    profile: s.profile && profile(s.profile),
  };
}

export function refreshed(r: pb.RefreshSessionResponse): Refreshed {
  return {
    accessToken: r.accessToken,
    expiresAt: date(r.expiresAt),
    idToken: opt(r.idToken),
    refreshToken: r.refreshToken ? new Secret(r.refreshToken) : undefined,
    scopes: r.scopes,
  };
}

const KINDS = ["unknown", "session_id", "subject", "signed_digest", "token_hash"] as const;

export function revocation(r: pb.Revocation): Revocation {
  return {
    kind: KINDS[r.kind] ?? "unknown",
    issuer: r.issuer,
    value: r.value,
    revokedAt: date(r.revokedAt),
    expiresAt: date(r.expiresAt),
  };
}
