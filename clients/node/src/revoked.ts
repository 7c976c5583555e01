/**
 * The revocations this client heard on authd's WatchRevocations stream, and
 * what a cached answer must carry to be checked against them — the same
 * matching as authd-client's `revoked.rs`: the token's issuer, subject,
 * `sid`, `iat`, the SHA-256 of its signing input (`header.payload`, what the
 * issuer signed) and of the whole compact token.
 */
import * as nodeCrypto from "node:crypto";

import { RevocationKind, type Revocation } from "./gen/auth/v1/auth_pb.js";
import type { VerifiedToken } from "./types.js";

/**
 * `crypto.hash` (Node 20.12+), one-shot: it makes no `Hash` object. Read
 * from the namespace, so that an older Node 20 loads the package too.
 */
const oneShot: typeof nodeCrypto.hash | undefined = (nodeCrypto as Partial<typeof nodeCrypto>).hash;

/** SHA-256 of `text` (UTF-8) in `encoding`. */
export const sha256 = (text: string, encoding: "hex" | "base64"): string =>
  oneShot ? oneShot("sha256", text, encoding) : nodeCrypto.createHash("sha256").update(text).digest(encoding);

export const sha256Hex = (text: string): string => sha256(text, "hex");

const unixNow = (): number => Math.floor(Date.now() / 1000);
const seconds = (t: { seconds: bigint } | undefined, absent: number): number => (t ? Number(t.seconds) : absent);

/** What a revocation can name in a verified token. */
export interface Identity {
  issuer: string;
  subject: string;
  sessionId: string | undefined;
  /** `iat`, unix seconds. */
  issuedAt: number | undefined;
  /** SHA-256 (hex) of the signing input `header.payload`. */
  signed: string;
  /** SHA-256 (hex) of the whole compact token. */
  whole: string;
}

/** The identity of `token` (without any `Bearer ` prefix), as authd verified it. */
export function identityOf(token: string, verified: VerifiedToken): Identity {
  const dot = token.lastIndexOf(".");
  const signingInput = dot < 0 ? token : token.slice(0, dot);
  return {
    issuer: verified.issuer,
    subject: verified.subject,
    sessionId: verified.sessionId,
    issuedAt: verified.issuedAt ? Math.floor(verified.issuedAt.getTime() / 1000) : undefined,
    signed: sha256Hex(signingInput),
    whole: sha256Hex(token),
  };
}

const HEX_DIGEST = /^[0-9a-fA-F]{64}$/;

/** Revocations in force, as authd sent them; each kept until it expires. */
export class Revoked {
  /** issuer → sid → expires_at */
  readonly #sessions = new Map<string, Map<string, number>>();
  /** issuer → subject → [revoked at, expires_at] */
  readonly #subjects = new Map<string, Map<string, [number, number]>>();
  /** SHA-256 (lowercase hex) of a signing input → expires_at */
  readonly #signed = new Map<string, number>();
  /** SHA-256 (lowercase hex) of a whole token → expires_at (older authd) */
  readonly #whole = new Map<string, number>();

  /**
   * Adds one revocation; `false` when it names nothing this client can
   * match (an unknown kind, a digest that is not hex).
   */
  add(r: Revocation): boolean {
    const expiresAt = seconds(r.expiresAt, Number.MAX_SAFE_INTEGER);
    const keepLongest = (map: Map<string, number>, key: string): void => {
      map.set(key, Math.max(map.get(key) ?? expiresAt, expiresAt));
    };
    const of = <V>(outer: Map<string, Map<string, V>>): Map<string, V> => {
      let inner = outer.get(r.issuer);
      if (!inner) outer.set(r.issuer, (inner = new Map<string, V>()));
      return inner;
    };
    switch (r.kind) {
      case RevocationKind.SESSION_ID:
        keepLongest(of(this.#sessions), r.value);
        return true;
      case RevocationKind.SUBJECT: {
        const at = seconds(r.revokedAt, Number.MAX_SAFE_INTEGER);
        const subjects = of(this.#subjects);
        const [oldAt, oldExp] = subjects.get(r.value) ?? [at, expiresAt];
        subjects.set(r.value, [Math.max(oldAt, at), Math.max(oldExp, expiresAt)]);
        return true;
      }
      case RevocationKind.SIGNED_DIGEST:
      case RevocationKind.TOKEN_HASH:
        if (!HEX_DIGEST.test(r.value)) return false;
        keepLongest(r.kind === RevocationKind.SIGNED_DIGEST ? this.#signed : this.#whole, r.value.toLowerCase());
        return true;
      default:
        return false;
    }
  }

  /** Whether a revocation refuses the token `id` names. */
  refuses(id: Identity): boolean {
    if (id.sessionId !== undefined && this.#sessions.get(id.issuer)?.has(id.sessionId)) return true;
    const subject = this.#subjects.get(id.issuer)?.get(id.subject);
    // A token without iat cannot prove it is newer.
    if (subject && (id.issuedAt === undefined || id.issuedAt <= subject[0])) return true;
    return this.#signed.has(id.signed) || this.#whole.has(id.whole);
  }

  /** Forgets revocations that expired (no token they name is valid). */
  prune(): void {
    const now = unixNow();
    for (const [issuer, m] of this.#sessions) {
      for (const [k, e] of m) if (e <= now) m.delete(k);
      if (m.size === 0) this.#sessions.delete(issuer);
    }
    for (const [issuer, m] of this.#subjects) {
      for (const [k, [, e]] of m) if (e <= now) m.delete(k);
      if (m.size === 0) this.#subjects.delete(issuer);
    }
    for (const m of [this.#signed, this.#whole]) for (const [k, e] of m) if (e <= now) m.delete(k);
  }

  /** How many revocations are held. */
  get size(): number {
    let n = this.#signed.size + this.#whole.size;
    for (const m of this.#sessions.values()) n += m.size;
    for (const m of this.#subjects.values()) n += m.size;
    return n;
  }
}
