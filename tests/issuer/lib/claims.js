// Auth0-shaped token claims and the test knobs of the client_credentials grant.
//
// oauth2-mock-server builds a default payload; our beforeTokenSigning hook
// throws it away and replaces it with what these functions return, so the
// shape of every token is defined here.

import { ID_TOKEN_PROFILE_CLAIMS, UserStore } from './state.js';

export const ACCESS_TOKEN_TTL = 3600; // seconds, Auth0's default for APIs
export const ID_TOKEN_TTL = 36000; // seconds, Auth0's default id token lifetime

/** Scopes that are about the OIDC login, not permissions on the API. */
const OIDC_SCOPES = new Set(['openid', 'profile', 'email', 'address', 'phone', 'offline_access']);

export const splitScope = (scope) => (scope ? String(scope).split(/\s+/).filter(Boolean) : []);

/** Normalizes a scope string: single spaces, no duplicates, original order. */
export const normalizeScope = (scope) => [...new Set(splitScope(scope))].join(' ');

export const hasScope = (scope, name) => splitScope(scope).includes(name);

/** Default `permissions` claim: the API scopes of the grant (OIDC scopes left out). */
export const permissionsFromScope = (scope) => splitScope(scope).filter((s) => !OIDC_SCOPES.has(s));

/**
 * Access-token audience like Auth0: the API identifier, and when `openid` was
 * requested an array that also contains the issuer's /userinfo URL.
 */
export const accessTokenAudience = (api, scope, userinfoUrl) => (hasScope(scope, 'openid') ? [api, userinfoUrl] : api);

/** Thrown for a malformed knob; answered as 400 invalid_request. */
export class KnobError extends Error {}

function integerKnob(body, name) {
  if (body[name] === undefined || body[name] === '') return undefined;
  const value = Number(body[name]);
  if (!Number.isInteger(value)) throw new KnobError(`${name} must be an integer number of seconds`);
  return value;
}

function stringKnob(body, name) {
  const value = body[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new KnobError(`${name} must be a string`);
  return value;
}

/**
 * Reads the test knobs of a client_credentials token request (form or JSON body).
 * Only fields that were sent are present in the result.
 */
export function parseKnobs(body) {
  const knobs = {};

  if (body.audience !== undefined) {
    let audience = body.audience;
    if (typeof audience === 'string' && audience.trim().startsWith('[')) {
      try {
        audience = JSON.parse(audience);
      } catch {
        throw new KnobError('audience looks like a JSON array but does not parse');
      }
    }
    const valid = typeof audience === 'string' || (Array.isArray(audience) && audience.every((a) => typeof a === 'string'));
    if (!valid) throw new KnobError('audience must be a string or a JSON array of strings');
    knobs.audience = audience;
  }

  for (const name of ['scope', 'sub', 'sid', 'jti', 'kid', 'alg']) {
    const value = stringKnob(body, name);
    if (value !== undefined) knobs[name] = value;
  }

  if (body.permissions !== undefined) {
    const p = body.permissions;
    if (Array.isArray(p) && p.every((x) => typeof x === 'string')) knobs.permissions = p;
    else if (typeof p === 'string') knobs.permissions = splitScope(p);
    else throw new KnobError('permissions must be a space-separated string');
  }

  for (const name of ['expires_in', 'nbf_offset', 'iat_offset']) {
    const value = integerKnob(body, name);
    if (value !== undefined) knobs[name] = value;
  }

  if (body.claims !== undefined) {
    let claims = body.claims;
    if (typeof claims === 'string') {
      try {
        claims = JSON.parse(claims);
      } catch {
        throw new KnobError('claims must be a JSON object');
      }
    }
    if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) throw new KnobError('claims must be a JSON object');
    knobs.claims = claims;
  }

  return knobs;
}

/** Applies a claims override: a null value removes the claim, anything else sets it. */
function mergeClaims(payload, overrides) {
  for (const [name, value] of Object.entries(overrides ?? {})) {
    if (value === null) delete payload[name];
    else payload[name] = value;
  }
  return payload;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

/**
 * Access token payload.
 * @param ctx the grant context built by the token endpoint (see lib/app.js):
 *   { sub, aud, scope, gty?, clientId, permissions, sid?, accessSid?, jti?, accessTtl,
 *     iatOffset?, nbfOffset?, claims? }
 * @param issuerUrl issuer URL with trailing slash
 */
export function accessTokenClaims(ctx, issuerUrl) {
  const now = nowSeconds();
  const payload = {
    iss: issuerUrl,
    sub: ctx.sub,
    aud: ctx.aud,
    iat: now + (ctx.iatOffset ?? 0),
    exp: now + ctx.accessTtl,
  };
  if (ctx.nbfOffset !== undefined) payload.nbf = now + ctx.nbfOffset;
  if (ctx.scope) payload.scope = ctx.scope;
  if (ctx.gty) payload.gty = ctx.gty;
  payload.azp = ctx.clientId;
  payload.permissions = ctx.permissions;
  if (ctx.sid && ctx.accessSid !== false) payload.sid = ctx.sid;
  if (ctx.jti !== undefined) payload.jti = ctx.jti;
  return mergeClaims(payload, ctx.claims); // the claims knob is applied last and always wins
}

/**
 * Id token payload for a user grant.
 * @param ctx grant context
 * @param issuerUrl issuer URL with trailing slash
 * @param user the user's record from the UserStore
 */
export function idTokenClaims(ctx, issuerUrl, user) {
  const now = nowSeconds();
  const payload = {};
  for (const claim of ID_TOKEN_PROFILE_CLAIMS) if (user?.[claim] !== undefined) payload[claim] = user[claim];
  Object.assign(payload, {
    iss: issuerUrl,
    aud: ctx.clientId,
    sub: UserStore.subOf(ctx.userName),
    iat: now,
    exp: now + ID_TOKEN_TTL,
    sid: ctx.sid,
  });
  if (ctx.nonce !== undefined) payload.nonce = ctx.nonce;
  return payload;
}

/** Replaces the contents of the mock's mutable payload object in place. */
export function replacePayload(target, source) {
  for (const key of Object.keys(target)) delete target[key];
  Object.assign(target, source);
}
