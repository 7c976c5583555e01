// In-memory state of the authd test issuer.
//
// Everything here is plain data + small classes with no HTTP knowledge, so the
// rules (refresh-token rotation, device-code polling, rate limits, failure
// injection) can be read in one place. lib/app.js wires them to HTTP.

import { randomBytes, randomInt } from 'node:crypto';

/** Random URL-safe identifier (refresh tokens, device codes, sids, kids). */
export const randomId = (bytes = 24) => randomBytes(bytes).toString('base64url');

/** Current time in milliseconds; one place so the rules read the same clock. */
export const nowMs = () => Date.now();

// ---------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------

/**
 * Built-in users. The key is the login name, the subject is `auth0|<name>`.
 * `password` is used by the password grant only and is never returned.
 */
const BUILTIN_USERS = {
  alice: {
    name: 'Alice Example',
    nickname: 'alice',
    picture: 'https://avatars.authd.test/alice.png',
    updated_at: '2024-01-01T00:00:00.000Z',
    email: 'alice@authd.test',
    email_verified: true,
    password: 'alice-password',
  },
  bob: {
    name: 'Zoë Ünicode',
    nickname: 'bob',
    picture: 'https://avatars.authd.test/bob.png',
    updated_at: '2024-01-02T00:00:00.000Z',
    email: 'bob@authd.test',
    email_verified: false,
    password: 'bob-password',
  },
};

/** Profile claims that also go into id tokens (custom attributes do not). */
export const ID_TOKEN_PROFILE_CLAIMS = ['name', 'nickname', 'picture', 'updated_at', 'email', 'email_verified'];

export class UserStore {
  #users = new Map();

  constructor() {
    for (const [name, profile] of Object.entries(BUILTIN_USERS)) this.#users.set(name, { ...profile });
  }

  /** `auth0|alice` or `alice` -> `alice`. */
  static nameOf(loginOrSub) {
    return String(loginOrSub).replace(/^auth0\|/, '');
  }

  static subOf(name) {
    return `auth0|${name}`;
  }

  has(name) {
    return this.#users.has(name);
  }

  /** Raw record (including password) or undefined. */
  get(name) {
    return this.#users.get(name);
  }

  /** Returns the user, creating a default profile for an unknown name (like a first login). */
  ensure(name) {
    if (!this.#users.has(name)) {
      this.#users.set(name, {
        name,
        nickname: name,
        picture: `https://avatars.authd.test/${encodeURIComponent(name)}.png`,
        updated_at: new Date(nowMs()).toISOString(),
        email: `${name}@authd.test`,
        email_verified: true,
        password: `${name}-password`,
      });
    }
    return this.#users.get(name);
  }

  /** Merges `fields` into the profile; a null value removes that field. Bumps updated_at. */
  update(name, fields) {
    const user = this.ensure(name);
    for (const [key, value] of Object.entries(fields)) {
      if (key === 'sub') continue; // the subject is derived from the name
      if (value === null) delete user[key];
      else user[key] = value;
    }
    if (!('updated_at' in fields)) user.updated_at = new Date(nowMs()).toISOString();
    return this.profile(name);
  }

  /** Public profile as returned by /userinfo: sub + every field except the password. */
  profile(name) {
    const { password: _password, ...fields } = this.#users.get(name) ?? {};
    return { sub: UserStore.subOf(name), ...fields };
  }
}

// ---------------------------------------------------------------------------
// Refresh tokens: Auth0-style rotation with reuse detection
// ---------------------------------------------------------------------------

/**
 * Every login that asked for `offline_access` starts a *family*. Each
 * successful refresh marks the presented token as rotated and adds a new token
 * to the family. Presenting a rotated token after the reuse interval revokes
 * the whole family.
 */
export class RefreshTokenStore {
  #tokens = new Map(); // token -> { familyId, issuedAt, rotatedAt }
  #families = new Map(); // familyId -> { id, grant, revoked, revokedReason, tokens[] }

  /**
   * @param {number} reuseIntervalMs how long a rotated token is still accepted
   * @param {(reason: string) => void} onFamilyRevoked statistics callback
   */
  constructor(reuseIntervalMs, onFamilyRevoked) {
    this.reuseIntervalMs = reuseIntervalMs;
    this.onFamilyRevoked = onFamilyRevoked;
  }

  /**
   * Starts a family for a login and returns its first token.
   * `grant` is what refreshes must reproduce: { clientId, userName, scope, audience, sid }.
   */
  startFamily(grant) {
    const family = { id: randomId(9), grant, createdAt: nowMs(), revoked: false, revokedReason: null, tokens: [] };
    this.#families.set(family.id, family);
    return this.#issue(family);
  }

  #issue(family) {
    const token = randomId(32);
    this.#tokens.set(token, { familyId: family.id, issuedAt: nowMs(), rotatedAt: null });
    family.tokens.push(token);
    return token;
  }

  /**
   * Redeems a refresh token.
   * @returns {{ family, refreshToken } | { error: string }}
   */
  rotate(token, clientId) {
    const record = this.#tokens.get(token);
    if (!record) return { error: 'unknown token' };
    const family = this.#families.get(record.familyId);
    if (family.revoked) return { error: `family revoked (${family.revokedReason})` };
    if (family.grant.clientId !== clientId) return { error: 'token issued to another client' };

    const now = nowMs();
    if (record.rotatedAt !== null && now - record.rotatedAt >= this.reuseIntervalMs) {
      // Reuse of a rotated token outside the leeway: assume it leaked.
      this.#revoke(family, 'reuse');
      return { error: 'reuse of a rotated token: family revoked' };
    }
    // First rotation (or a reuse inside the leeway, which keeps the original rotation time).
    record.rotatedAt ??= now;
    return { family, refreshToken: this.#issue(family) };
  }

  /** Revokes the family of `token`. Returns false when the token is unknown. */
  revokeByToken(token, reason) {
    const record = this.#tokens.get(token);
    if (!record) return false;
    this.#revoke(this.#families.get(record.familyId), reason);
    return true;
  }

  #revoke(family, reason) {
    if (family.revoked) return;
    family.revoked = true;
    family.revokedReason = reason;
    this.onFamilyRevoked(reason);
  }

  /** Debug view for GET /__control/refresh-families. */
  snapshot() {
    return [...this.#families.values()].map((family) => ({
      id: family.id,
      sub: UserStore.subOf(family.grant.userName),
      client_id: family.grant.clientId,
      scope: family.grant.scope,
      sid: family.grant.sid,
      revoked: family.revoked,
      revoked_reason: family.revokedReason,
      created_at: new Date(family.createdAt).toISOString(),
      tokens: family.tokens.map((token) => {
        const record = this.#tokens.get(token);
        return {
          token,
          issued_at: new Date(record.issuedAt).toISOString(),
          rotated_at: record.rotatedAt === null ? null : new Date(record.rotatedAt).toISOString(),
        };
      }),
    }));
  }
}

// ---------------------------------------------------------------------------
// Device authorization grant (RFC 8628)
// ---------------------------------------------------------------------------

// Auth0's default user-code alphabet: consonants only, so no words can form.
const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';

const normalizeUserCode = (code) => String(code).toUpperCase().replace(/[^A-Z]/g, '');

export class DeviceCodeStore {
  #byDeviceCode = new Map();
  #byUserCode = new Map(); // normalized user code -> record

  /** Defaults for codes created from now on (POST /__control/device-config). */
  config = { interval: 5, expiresIn: 900 };

  create({ clientId, scope, audience }) {
    let userCode;
    do {
      userCode = Array.from({ length: 8 }, () => USER_CODE_ALPHABET[randomInt(USER_CODE_ALPHABET.length)]).join('');
    } while (this.#byUserCode.has(userCode));
    const record = {
      deviceCode: randomId(24),
      userCode: `${userCode.slice(0, 4)}-${userCode.slice(4)}`,
      clientId,
      scope,
      audience,
      interval: this.config.interval,
      expiresIn: this.config.expiresIn,
      expiresAt: nowMs() + this.config.expiresIn * 1000,
      // pending -> approved -> consumed, or pending -> denied
      status: 'pending',
      userName: null,
      lastPollAt: null,
      expiredReported: false,
    };
    this.#byDeviceCode.set(record.deviceCode, record);
    this.#byUserCode.set(userCode, record);
    return record;
  }

  byDeviceCode(deviceCode) {
    return this.#byDeviceCode.get(deviceCode);
  }

  byUserCode(userCode) {
    return this.#byUserCode.get(normalizeUserCode(userCode));
  }
}

// ---------------------------------------------------------------------------
// Request statistics
// ---------------------------------------------------------------------------

export const GRANT_STAT_KEYS = {
  client_credentials: 'client_credentials',
  authorization_code: 'authorization_code',
  password: 'password',
  refresh_token: 'refresh_token',
  'urn:ietf:params:oauth:grant-type:device_code': 'device_code',
};

export function emptyStats() {
  return {
    discovery: 0,
    jwks: 0,
    authorize: 0,
    token: { total: 0, client_credentials: 0, authorization_code: 0, password: 0, refresh_token: 0, device_code: 0, other: 0 },
    refresh: 0, // same as token.refresh_token, kept top-level for convenience
    userinfo: 0,
    userinfo_rate_limited: 0,
    revoke: 0,
    device: 0, // POST /oauth/device/code (device-code polls count under token.device_code)
    family_revocations: 0, // refresh-token families revoked, for any reason
    refresh_reuse_detected: 0, // ... of which because a rotated token was reused
  };
}

// ---------------------------------------------------------------------------
// Failure injection
// ---------------------------------------------------------------------------

export const FAILABLE_ENDPOINTS = ['discovery', 'jwks', 'authorize', 'token', 'userinfo', 'revoke', 'device'];

export class FailureInjector {
  #rules = new Map(); // endpoint -> { status, delayMs, remaining, retryAfter }

  /** Validates and installs a rule (replacing the endpoint's previous one). Throws on bad input. */
  set({ endpoint, status, delay_ms: delayMs = 0, times, retry_after: retryAfter }) {
    if (!FAILABLE_ENDPOINTS.includes(endpoint)) {
      throw new Error(`endpoint must be one of ${FAILABLE_ENDPOINTS.join(', ')}`);
    }
    if (!Number.isInteger(delayMs) || delayMs < 0) throw new Error('delay_ms must be a non-negative integer');
    // No status and a delay: only slow the endpoint down. No status and no delay: 503.
    const effectiveStatus = status ?? (delayMs > 0 ? 0 : 503);
    if (!Number.isInteger(effectiveStatus) || (effectiveStatus !== 0 && (effectiveStatus < 100 || effectiveStatus > 599))) {
      throw new Error('status must be an HTTP status code, or 0 to only delay');
    }
    if (times !== undefined && times !== null && (!Number.isInteger(times) || times < 1)) {
      throw new Error('times must be a positive integer');
    }
    const rule = { status: effectiveStatus, delayMs, remaining: times ?? null, retryAfter: retryAfter ?? null };
    this.#rules.set(endpoint, rule);
    return { endpoint, status: rule.status, delay_ms: rule.delayMs, times: rule.remaining, retry_after: rule.retryAfter };
  }

  /** Clears one endpoint's rule, or all of them. */
  clear(endpoint) {
    if (endpoint === undefined) this.#rules.clear();
    else this.#rules.delete(endpoint);
  }

  /** Consumes one use of the endpoint's rule; returns the rule or undefined. */
  take(endpoint) {
    const rule = this.#rules.get(endpoint);
    if (!rule) return undefined;
    if (rule.remaining !== null && --rule.remaining <= 0) this.#rules.delete(endpoint);
    return rule;
  }

  list() {
    return Object.fromEntries(
      [...this.#rules].map(([endpoint, r]) => [endpoint, { status: r.status, delay_ms: r.delayMs, times: r.remaining, retry_after: r.retryAfter }]),
    );
  }
}

// ---------------------------------------------------------------------------
// Fixed-window rate limiter (userinfo: N calls per user per 60 s)
// ---------------------------------------------------------------------------

export class WindowRateLimiter {
  #windows = new Map(); // key -> { start, count }

  /** @param {number} limit calls per window, 0 = unlimited */
  constructor(limit, windowMs = 60_000) {
    this.limit = limit;
    this.windowMs = windowMs;
  }

  /** Counts one call; returns whether it is allowed and the window's figures. */
  hit(key) {
    const now = nowMs();
    let window = this.#windows.get(key);
    if (!window || now - window.start >= this.windowMs) {
      window = { start: now, count: 0 };
      this.#windows.set(key, window);
    }
    const resetAt = window.start + this.windowMs;
    if (this.limit > 0 && window.count >= this.limit) {
      return { allowed: false, remaining: 0, resetAt, retryAfterSeconds: Math.max(1, Math.ceil((resetAt - now) / 1000)) };
    }
    window.count += 1;
    return { allowed: true, remaining: this.limit > 0 ? this.limit - window.count : null, resetAt };
  }

  reset(limit = this.limit) {
    this.limit = limit;
    this.#windows.clear();
  }
}
