/**
 * The cache of positive verifications, revocation-aware and on by default —
 * the same rules as authd-client's `cache.rs`.
 *
 * **The guarantee:** a cached answer is given only while this client's
 * WatchRevocations stream has been heard from within `maxSilenceMs` and no
 * revocation received on it names the token, so a revoked token stops
 * passing from the cache as soon as the stream delivers its revocation, and
 * never more than `maxSilenceMs` after the stream falls silent.
 *
 * Until a stream's first heartbeat (each new stream first replays what may
 * have been missed), and whenever it has been silent longer than its bound,
 * every verification goes to authd. Entries also end with the token's `exp`
 * and `maxTtlMs`; refusals are never cached. Entries are keyed by the
 * SHA-256 of the token, audience and scope set: the cache holds no token,
 * and a forged token cannot hit a genuine one's entry.
 */

import type { Revocation } from "./gen/auth/v1/auth_pb.js";
import { identityOf, Revoked, sha256, type Identity } from "./revoked.js";
import type { VerifiedToken } from "./types.js";

/** How the verification cache behaves. */
export interface CacheOptions {
  /** The longest an answer is reused. Defaults to 30 000 ms. */
  maxTtlMs?: number;
  /** The most answers kept; the oldest goes first. Defaults to 10 000. */
  maxEntries?: number;
  /**
   * The longest the revocation stream may stay silent (no revocation, no
   * heartbeat) while the cache answers; at least three of the heartbeat
   * intervals authd announces. Defaults to 6 000 ms (authd's heartbeat is
   * 2 s by default).
   */
  maxSilenceMs?: number;
}

/**
 * Whether the cache answers now: `off` (turned off, or authd does not let
 * this caller watch revocations), `syncing` (waiting for the stream's first
 * heartbeat), `answering`, or `silent` (the stream has been silent past its
 * bound: every call goes to authd).
 */
export type CacheState = "off" | "syncing" | "answering" | "silent";

interface Entry {
  token: VerifiedToken;
  id: Identity;
  until: number;
  /** The revocation count it was last checked against. */
  checked: number;
}

const now = (): number => performance.now();

/**
 * The SHA-256 of the token, audience and scope set, each part prefixed by
 * its length (so parts cannot run into each other): one string, hashed once.
 */
export function cacheKey(token: string, scopes: readonly string[], audience?: string): string {
  // "no audience" is "-", which no length prefix starts with.
  let framed = `${token.length}:${token}${audience === undefined ? "-" : `${audience.length}:${audience}`}`;
  const set = scopes.length <= 1 ? scopes : [...new Set(scopes)].sort();
  for (const scope of set) framed += `${scope.length}:${scope}`;
  return sha256(framed, "base64");
}

/** The cache itself. */
export class VerifyCache {
  readonly maxTtlMs: number;
  readonly maxEntries: number;
  readonly maxSilenceMs: number;
  /** Insertion-ordered: the first key is the oldest. */
  readonly #entries = new Map<string, Entry>();
  readonly #revoked = new Revoked();
  /** Counts revocations added: a hit with none since its last check skips the check. */
  #version = 0;
  #off: boolean;
  #synced = false;
  #lastHeard: number | undefined;
  #silence: number;

  constructor(options: CacheOptions = {}) {
    this.maxTtlMs = options.maxTtlMs ?? 30_000;
    this.maxEntries = options.maxEntries ?? 10_000;
    this.maxSilenceMs = options.maxSilenceMs ?? 6_000;
    this.#silence = this.maxSilenceMs;
    this.#off = this.maxEntries <= 0;
  }

  get state(): CacheState {
    if (this.#off) return "off";
    if (!this.#synced) return "syncing";
    if (this.#lastHeard !== undefined && now() - this.#lastHeard <= this.#silence) return "answering";
    return "silent";
  }

  /** The silence after which the cache stops answering. */
  get silenceMs(): number {
    return this.#silence;
  }

  get size(): number {
    return this.#entries.size;
  }

  get revocations(): number {
    return this.#revoked.size;
  }

  /** The cached answer for `key`, while the stream is live and no revocation names it. */
  get(key: string): VerifiedToken | undefined {
    if (this.state !== "answering") return undefined;
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.until > now() && (entry.checked === this.#version || !this.#revoked.refuses(entry.id))) {
      entry.checked = this.#version;
      return entry.token;
    }
    this.#entries.delete(key);
    return undefined;
  }

  /** Keeps authd's answer for `token` (without `Bearer `), unless a revocation already names it. */
  set(key: string, token: string, verified: VerifiedToken): void {
    if (this.#off) return;
    const ttl = Math.min(verified.expiresAt.getTime() - Date.now(), this.maxTtlMs);
    if (!(ttl > 0)) return;
    const id = identityOf(token, verified);
    // An answer authd gave before a revocation reached it may come back
    // after the revocation reached this client.
    if (this.#revoked.refuses(id)) return;
    this.#entries.delete(key);
    while (this.#entries.size >= this.maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) break;
      this.#entries.delete(oldest.value);
    }
    this.#entries.set(key, { token: verified, id, until: now() + ttl, checked: this.#version });
  }

  // === what the revocation stream says ===

  /** A revocation arrived: from now on no entry it names is answered. */
  revoked(revocation: Revocation): boolean {
    this.#version += 1;
    this.#lastHeard = now();
    if (this.#revoked.add(revocation)) return true;
    // Stay correct whatever it names.
    this.#entries.clear();
    return false;
  }

  /** A new stream opened: nothing is answered before its first heartbeat. */
  streamOpened(): void {
    this.#synced = false;
    this.#off = this.maxEntries <= 0;
  }

  /** A heartbeat arrived: every revocation so far is known. */
  heartbeat(intervalMs: number): void {
    this.#synced = true;
    this.#lastHeard = now();
    this.#silence = Math.max(this.maxSilenceMs, 3 * intervalMs);
    this.#revoked.prune();
  }

  /** authd will not stream revocations to this caller: no cache. `true` when it was on. */
  turnOff(): boolean {
    const wasOn = !this.#off;
    this.#off = true;
    this.#entries.clear();
    return wasOn;
  }
}
