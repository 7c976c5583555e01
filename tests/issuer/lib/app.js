// The authd test issuer: oauth2-mock-server with an Auth0-shaped front.
//
// How the pieces fit:
//
//   http.Server (127.0.0.1:PORT)
//     └─ front (express)                 ← this file
//          ├─ /__control/...             ← lib/control.js, test-only API
//          ├─ counting + failure injection for every OIDC endpoint
//          ├─ JWKS, /oauth/device/code   ← answered here
//          ├─ /authorize, /oauth/token, /userinfo, /oauth/revoke:
//          │     checked here (client auth, PKCE, refresh-token rotation,
//          │     device polling, bearer verification, rate limit), the
//          │     outcome is stored on req.authd, then handed on to ...
//          └─ oauth2-mock-server's own express app (service.requestHandler),
//                which signs the tokens and answers; its hooks
//                (beforeTokenSigning, beforeResponse, beforeUserinfo,
//                beforeAuthorizeRedirect) shape the result from req.authd.
//
// Why a front instead of adding routes to the mock's express app: that app
// ends with a catch-all 404 handler, so routes added afterwards are never
// reached, and none of its grants can be made to fail (bad PKCE, reused
// code, rotated refresh token) from its hooks. The front runs in the same
// process and calls the mock's request handler directly; nothing is proxied
// over HTTP. OAuth2Server.start() is therefore not used: it would bind a second
// port, and it derives the issuer URL as http://localhost:PORT.

import http from 'node:http';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import express from 'express';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { OAuth2Server } from 'oauth2-mock-server';

import {
  ACCESS_TOKEN_TTL,
  KnobError,
  accessTokenAudience,
  accessTokenClaims,
  hasScope,
  idTokenClaims,
  normalizeScope,
  parseKnobs,
  permissionsFromScope,
  replacePayload,
} from './claims.js';
import { controlRouter } from './control.js';
import { KeyRing } from './keys.js';
import {
  DeviceCodeStore,
  FailureInjector,
  GRANT_STAT_KEYS,
  RefreshTokenStore,
  UserStore,
  WindowRateLimiter,
  emptyStats,
  nowMs,
  randomId,
} from './state.js';

export const PATHS = {
  discovery: '/.well-known/openid-configuration',
  jwks: '/.well-known/jwks.json',
  authorize: '/authorize',
  token: '/oauth/token',
  userinfo: '/userinfo',
  revoke: '/oauth/revoke',
  deviceCode: '/oauth/device/code',
  activate: '/activate', // only advertised as verification_uri; approval goes through /__control/device
};

export const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

export const DEFAULTS = {
  port: 0,
  audience: 'https://api.authd.test',
  clientId: 'authd-test-client',
  clientSecret: 'authd-test-secret',
  reuseIntervalSeconds: 0,
  userinfoLimit: 5,
  verbose: false,
};

const AUTH_CODE_TTL_MS = 10 * 60 * 1000; // Auth0 authorization codes live 10 minutes
const DEFAULT_LOGIN = 'alice'; // user "logged in" at /authorize when no login_hint is given

const log = (...args) => console.error('[authd-issuer]', ...args);

/** Sends an OAuth error body. */
function oauthError(res, status, error, description) {
  res.status(status).json({ error, error_description: description });
  return null;
}

/** RFC 7636 check of a PKCE verifier against the challenge saved at /authorize. */
function pkceMatches(verifier, { codeChallenge, codeChallengeMethod }) {
  if (!/^[A-Za-z0-9\-._~]{43,128}$/.test(verifier)) return false;
  const computed = codeChallengeMethod === 'S256' ? createHash('sha256').update(verifier).digest('base64url') : verifier;
  return computed === codeChallenge;
}

/** Client credentials from HTTP Basic (form-urlencoded per RFC 6749 §2.3.1) or the body. */
function presentedClient(req) {
  const basic = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? '');
  if (basic) {
    const decoded = Buffer.from(basic[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon >= 0) {
      const unescape = (s) => {
        try {
          return decodeURIComponent(s.replace(/\+/g, ' '));
        } catch {
          return s;
        }
      };
      return { id: unescape(decoded.slice(0, colon)), secret: unescape(decoded.slice(colon + 1)) };
    }
  }
  return { id: req.body?.client_id, secret: req.body?.client_secret };
}

/**
 * Starts the issuer on 127.0.0.1.
 * @returns {Promise<{ url: string, port: number, state: object, close: () => Promise<void> }>}
 */
export async function startIssuer(options = {}) {
  const config = { ...DEFAULTS, ...options };

  // --- oauth2-mock-server --------------------------------------------------
  const oauth = new OAuth2Server(undefined, undefined, {
    shouldIssuerUrlBeSuffixedWithATralingSlash: true,
    endpoints: { token: PATHS.token, jwks: PATHS.jwks, userinfo: PATHS.userinfo, revoke: PATHS.revoke },
  });
  const service = oauth.service;
  const keys = new KeyRing(oauth.issuer.keys);
  await keys.generate('RS256');

  const issuerUrl = () => oauth.issuer.url; // set once listening, with a trailing slash
  const urlOf = (path) => issuerUrl() + path.slice(1);

  // --- state shared with the control API -------------------------------------
  const state = {
    config,
    keys,
    users: new UserStore(),
    devices: new DeviceCodeStore(),
    failures: new FailureInjector(),
    limiter: new WindowRateLimiter(config.userinfoLimit),
    stats: emptyStats(),
    codes: new Map(), // authorization code -> what /authorize was asked for
    // Whether user logins' access tokens carry `sid` (Auth0's do not).
    accessTokenSid: true,
  };
  state.refresh = new RefreshTokenStore(config.reuseIntervalSeconds * 1000, (reason) => {
    state.stats.family_revocations += 1;
    if (reason === 'reuse') state.stats.refresh_reuse_detected += 1;
  });

  // --- hooks into oauth2-mock-server -----------------------------------------

  // The mock signs with whichever key comes first in its round-robin JWKStore
  // and never passes a kid. This replaces OAuth2Service#buildToken with the
  // same three steps, plus the kid we want: the `kid`/`alg` knob for the access
  // token, else the newest (rotated-in) key.
  service.buildToken = async (req, expiresIn, scopesOrTransform) => {
    const ctx = req.authd;
    const kid = ctx?.signed === 0 && ctx.accessKid ? ctx.accessKid : keys.signingKid;
    oauth.issuer.once('beforeSigning', (token) => service.emit('beforeTokenSigning', token, req));
    return oauth.issuer.buildToken({ scopesOrTransform, expiresIn, kid });
  };

  // Per request the mock signs the access token first, then (user grants) the id token.
  service.on('beforeTokenSigning', (token, req) => {
    const ctx = req.authd;
    if (!ctx) return;
    const isAccessToken = ctx.signed++ === 0;
    const claims = isAccessToken
      ? accessTokenClaims(ctx, issuerUrl())
      : idTokenClaims(ctx, issuerUrl(), state.users.get(ctx.userName));
    replacePayload(token.payload, claims);
  });

  // Token response body: Auth0 returns an id_token only for `openid` and a
  // refresh_token only for `offline_access`; the mock always adds both.
  service.on('beforeResponse', (response, req) => {
    const ctx = req.authd;
    if (!ctx) return;
    const body = response.body;
    body.token_type = 'Bearer';
    body.expires_in = ctx.accessTtl;
    if (ctx.scope) body.scope = ctx.scope;
    else delete body.scope;
    if (!ctx.openid) delete body.id_token;
    if (ctx.refreshToken) body.refresh_token = ctx.refreshToken;
    else delete body.refresh_token;
  });

  // The mock made up a code: remember what it stands for, to check it at the token endpoint.
  service.on('beforeAuthorizeRedirect', ({ url }, req) => {
    const code = url.searchParams.get('code');
    if (!code || !req.authd) return;
    const q = req.query;
    state.codes.set(code, {
      clientId: q.client_id,
      redirectUri: q.redirect_uri,
      scope: normalizeScope(q.scope),
      audience: typeof q.audience === 'string' && q.audience ? q.audience : undefined,
      nonce: q.nonce,
      codeChallenge: q.code_challenge || undefined,
      codeChallengeMethod: q.code_challenge_method ?? 'plain',
      userName: req.authd.userName,
      expiresAt: nowMs() + AUTH_CODE_TTL_MS,
      used: false,
    });
  });

  service.on('beforeUserinfo', (response, req) => {
    if (req.authd?.profile) response.body = req.authd.profile;
  });

  // --- building blocks of the front ------------------------------------------

  const mockApp = service.requestHandler;
  const toMock = (req, res, next) => mockApp(req, res, next);

  const parseBody = [express.urlencoded({ extended: false }), express.json()];

  const count = (endpoint) => (req, _res, next) => {
    state.stats[endpoint] += 1;
    next();
  };

  const countToken = (req, _res, next) => {
    const grant = GRANT_STAT_KEYS[req.body?.grant_type] ?? 'other';
    state.stats.token.total += 1;
    state.stats.token[grant] += 1;
    if (grant === 'refresh_token') state.stats.refresh += 1;
    next();
  };

  /** Applies a rule set with POST /__control/fail: delay, then fail or carry on. */
  const failurePoint = (endpoint) => async (req, res, next) => {
    const rule = state.failures.take(endpoint);
    if (!rule) return next();
    if (rule.delayMs > 0) await sleep(rule.delayMs);
    if (rule.status === 0) return next();
    if (rule.retryAfter !== null) res.set('Retry-After', String(rule.retryAfter));
    res.status(rule.status).json({
      error: 'temporarily_unavailable',
      error_description: `Injected failure on ${endpoint} (authd test issuer).`,
    });
  };

  /**
   * Checks the client. A presented secret must be right; a missing secret is
   * only accepted when `secretRequired` is false (public clients: PKCE,
   * device flow, refresh). Returns { id, authenticated } or null after answering.
   */
  function authenticateClient(req, res, { secretRequired }) {
    const { id, secret } = presentedClient(req);
    if (id !== config.clientId) return oauthError(res, 401, 'invalid_client', 'Unknown client.');
    const wrong = secret === undefined ? secretRequired : secret !== config.clientSecret;
    if (wrong) return oauthError(res, 401, 'access_denied', 'Unauthorized');
    return { id, authenticated: secret !== undefined };
  }

  /** Grant context for a user login or refresh (see claims.js for how it becomes claims). */
  function userGrantContext({ clientId, userName, scope, audience, sid, nonce, gty }) {
    const api = audience ?? config.audience;
    return {
      clientId,
      userName,
      api,
      sub: UserStore.subOf(userName),
      aud: accessTokenAudience(api, scope, urlOf(PATHS.userinfo)),
      scope,
      gty,
      permissions: permissionsFromScope(scope),
      sid,
      accessSid: state.accessTokenSid,
      nonce,
      accessTtl: ACCESS_TOKEN_TTL,
      openid: hasScope(scope, 'openid'),
    };
  }

  /** A new login: starts a refresh-token family when offline_access was asked for. */
  function newLogin(ctx) {
    if (hasScope(ctx.scope, 'offline_access')) {
      ctx.refreshToken = state.refresh.startFamily({
        clientId: ctx.clientId,
        userName: ctx.userName,
        scope: ctx.scope,
        audience: ctx.api,
        sid: ctx.sid,
      });
    }
    return ctx;
  }

  // --- grants: each returns a grant context, or null after answering an error ---

  const grants = {
    client_credentials(req, res, client) {
      let knobs;
      try {
        knobs = parseKnobs(req.body);
      } catch (err) {
        if (err instanceof KnobError) return oauthError(res, 400, 'invalid_request', err.message);
        throw err;
      }
      let accessKid;
      if (knobs.kid !== undefined) {
        if (!keys.has(knobs.kid)) return oauthError(res, 400, 'invalid_request', `Unknown kid ${knobs.kid}.`);
        accessKid = knobs.kid;
      } else if (knobs.alg !== undefined) {
        accessKid = keys.newestWithAlg(knobs.alg); // no key of that alg: ignored
      }
      const scope = knobs.scope ?? '';
      const api = knobs.audience ?? config.audience;
      return {
        clientId: client.id,
        sub: knobs.sub ?? `${client.id}@clients`,
        aud: Array.isArray(api) ? api : accessTokenAudience(api, scope, urlOf(PATHS.userinfo)),
        scope,
        gty: 'client-credentials',
        permissions: knobs.permissions ?? permissionsFromScope(scope),
        sid: knobs.sid,
        jti: knobs.jti,
        accessTtl: knobs.expires_in ?? ACCESS_TOKEN_TTL,
        iatOffset: knobs.iat_offset,
        nbfOffset: knobs.nbf_offset,
        claims: knobs.claims,
        accessKid,
        openid: false,
      };
    },

    authorization_code(req, res, client) {
      const { code, code_verifier: verifier, redirect_uri: redirectUri } = req.body;
      const grant = typeof code === 'string' ? state.codes.get(code) : undefined;
      const invalid = (description) => oauthError(res, 403, 'invalid_grant', description);
      if (!grant || grant.used || nowMs() > grant.expiresAt) return invalid('Invalid authorization code');
      grant.used = true; // single use: any redemption attempt burns the code
      if (grant.clientId !== client.id) return invalid('Invalid authorization code');
      if (redirectUri !== grant.redirectUri) return invalid('redirect_uri does not match the authorization request.');
      if (grant.codeChallenge !== undefined) {
        if (typeof verifier !== 'string') return invalid('Parameter code_verifier is required.');
        if (!pkceMatches(verifier, grant)) return invalid('Failed to verify code verifier');
      } else {
        if (verifier !== undefined) return invalid('code_verifier sent but the authorization request had no code_challenge.');
        if (!client.authenticated) return oauthError(res, 401, 'access_denied', 'Unauthorized');
      }
      return newLogin(
        userGrantContext({
          clientId: client.id,
          userName: grant.userName,
          scope: grant.scope,
          audience: grant.audience,
          sid: randomId(16),
          nonce: grant.nonce,
        }),
      );
    },

    password(req, res, client) {
      const { username, password, scope, audience } = req.body;
      const userName = UserStore.nameOf(username ?? '');
      const user = state.users.get(userName);
      if (!user || typeof password !== 'string' || password !== user.password) {
        return oauthError(res, 403, 'invalid_grant', 'Wrong email or password.');
      }
      return newLogin(
        userGrantContext({
          clientId: client.id,
          userName,
          scope: normalizeScope(scope),
          audience: typeof audience === 'string' && audience ? audience : undefined,
          sid: randomId(16),
          gty: 'password',
        }),
      );
    },

    refresh_token(req, res, client) {
      const token = req.body.refresh_token;
      const result = typeof token === 'string' ? state.refresh.rotate(token, client.id) : { error: 'missing refresh_token' };
      if (result.error) {
        log(`refresh rejected: ${result.error}`);
        return oauthError(res, 403, 'invalid_grant', 'Unknown or invalid refresh token.');
      }
      // Same user, scope, audience and session as the original login.
      const { grant } = result.family;
      const ctx = userGrantContext({ clientId: grant.clientId, userName: grant.userName, scope: grant.scope, audience: grant.audience, sid: grant.sid });
      ctx.refreshToken = result.refreshToken;
      return ctx;
    },

    [DEVICE_GRANT](req, res, client) {
      const deviceCode = req.body.device_code;
      const record = typeof deviceCode === 'string' ? state.devices.byDeviceCode(deviceCode) : undefined;
      const invalid = () => oauthError(res, 403, 'invalid_grant', 'Invalid or expired device code.');
      if (!record || record.clientId !== client.id || record.status === 'consumed') return invalid();
      const now = nowMs();
      if (now >= record.expiresAt) {
        // Like Auth0: expired_token exactly once, invalid_grant afterwards.
        if (record.expiredReported) return invalid();
        record.expiredReported = true;
        return oauthError(res, 403, 'expired_token', 'The device code has expired.');
      }
      if (record.status === 'denied') return oauthError(res, 403, 'access_denied', 'User refused to authorize the device.');
      const tooFast = record.lastPollAt !== null && now - record.lastPollAt < record.interval * 1000;
      record.lastPollAt = now;
      if (record.status === 'pending') {
        if (tooFast) {
          return oauthError(res, 429, 'slow_down', `You are polling faster than the specified interval of ${record.interval} seconds.`);
        }
        return oauthError(res, 403, 'authorization_pending', 'User has yet to authorize device code.');
      }
      record.status = 'consumed'; // approved: hand out tokens once
      return newLogin(
        userGrantContext({ clientId: client.id, userName: record.userName, scope: record.scope, audience: record.audience, sid: randomId(16) }),
      );
    },
  };

  // --- front handlers ----------------------------------------------------------

  async function tokenFront(req, res, next) {
    res.set({ 'Cache-Control': 'no-store', Pragma: 'no-cache' });
    const body = req.body ?? {};
    const grantType = body.grant_type;
    if (typeof grantType !== 'string' || !grantType) return oauthError(res, 400, 'invalid_request', 'Missing required parameter: grant_type');
    const grant = Object.hasOwn(grants, grantType) ? grants[grantType] : undefined;
    if (!grant) return oauthError(res, 400, 'unsupported_grant_type', `Unsupported grant type: ${grantType}`);
    const client = authenticateClient(req, res, { secretRequired: grantType === 'client_credentials' });
    if (!client) return;
    const ctx = await grant(req, res, client);
    if (!ctx) return;
    req.authd = { ...ctx, grantType, signed: 0 };
    // The mock answers unknown grant types with 400 invalid_grant. An approved
    // device code is handed to it as a password grant: it then signs an access
    // and an id token, and our hooks overwrite every claim of both anyway.
    if (grantType === DEVICE_GRANT) body.grant_type = 'password';
    next();
  }

  function authorizeFront(req, res, next) {
    const { client_id: clientId, login_hint: loginHint } = req.query;
    if (clientId !== config.clientId) return oauthError(res, 400, 'invalid_request', 'Unknown client_id.');
    const userName = UserStore.nameOf(typeof loginHint === 'string' && loginHint ? loginHint : DEFAULT_LOGIN);
    state.users.ensure(userName);
    req.authd = { userName };
    next();
  }

  async function userinfoFront(req, res, next) {
    const deny = (description) => {
      res.set('WWW-Authenticate', `Bearer error="invalid_token", error_description="${description}"`);
      res.status(401).json({ error: 'invalid_token', error_description: description });
    };
    const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    if (!bearer) return deny('Missing bearer token.');
    let payload;
    try {
      // Signature against our own published keys, iss, exp/nbf, and the
      // audience must contain the /userinfo URL (i.e. the token had `openid`).
      ({ payload } = await jwtVerify(bearer[1], createLocalJWKSet({ keys: keys.publicJwks() }), {
        issuer: issuerUrl(),
        audience: urlOf(PATHS.userinfo),
      }));
    } catch (err) {
      return deny(`Invalid token (${err.code ?? err.message}).`);
    }
    if (typeof payload.sub !== 'string') return deny('Invalid token (no sub).');

    const verdict = state.limiter.hit(payload.sub);
    if (state.limiter.limit > 0) {
      res.set({
        'X-RateLimit-Limit': String(state.limiter.limit),
        'X-RateLimit-Remaining': String(verdict.remaining),
        'X-RateLimit-Reset': String(Math.ceil(verdict.resetAt / 1000)),
      });
    }
    if (!verdict.allowed) {
      state.stats.userinfo_rate_limited += 1;
      res.set('Retry-After', String(verdict.retryAfterSeconds));
      return res.status(429).json({ error: 'too_many_requests', error_description: 'Too Many Requests' });
    }
    const userName = UserStore.nameOf(payload.sub);
    const known = payload.sub.startsWith('auth0|') && state.users.has(userName);
    req.authd = { profile: known ? state.users.profile(userName) : { sub: payload.sub } };
    next();
  }

  function revokeFront(req, res, next) {
    const client = authenticateClient(req, res, { secretRequired: false });
    if (!client) return;
    const token = req.body?.token;
    if (typeof token !== 'string' || !token) return oauthError(res, 400, 'invalid_request', 'Missing required parameter: token');
    state.refresh.revokeByToken(token, 'revoked'); // unknown tokens are fine (RFC 7009)
    next(); // the mock answers 200 with an empty body
  }

  function deviceCodeHandler(req, res) {
    const client = authenticateClient(req, res, { secretRequired: false });
    if (!client) return;
    const { scope, audience } = req.body ?? {};
    const record = state.devices.create({
      clientId: client.id,
      scope: normalizeScope(scope),
      audience: typeof audience === 'string' && audience ? audience : undefined,
    });
    const verificationUri = urlOf(PATHS.activate);
    res.json({
      device_code: record.deviceCode,
      user_code: record.userCode,
      verification_uri: verificationUri,
      verification_uri_complete: `${verificationUri}?user_code=${encodeURIComponent(record.userCode)}`,
      expires_in: record.expiresIn,
      interval: record.interval,
    });
  }

  /** Adds what the mock's discovery document lacks (device flow, auth methods, ...). */
  function patchDiscovery(req, res, next) {
    const sendJson = res.json.bind(res);
    res.json = (doc) =>
      sendJson({
        ...doc,
        device_authorization_endpoint: urlOf(PATHS.deviceCode),
        grant_types_supported: [...new Set([...(doc.grant_types_supported ?? []), 'refresh_token', DEVICE_GRANT])],
        token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'none'],
        id_token_signing_alg_values_supported: [...new Set(['RS256', ...keys.list().filter((k) => k.published).map((k) => k.alg)])],
        scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
        claims_supported: ['aud', 'email', 'email_verified', 'exp', 'iat', 'iss', 'name', 'nickname', 'picture', 'sub', 'updated_at', 'sid', 'nonce'],
      });
    next();
  }

  // --- the front app ---------------------------------------------------------

  const app = express();
  app.disable('x-powered-by');
  if (config.verbose) {
    app.use((req, res, next) => {
      res.on('finish', () => log(`${req.method} ${req.originalUrl} -> ${res.statusCode}`));
      next();
    });
  }
  app.use('/__control', controlRouter(state));
  app.get(PATHS.discovery, count('discovery'), failurePoint('discovery'), patchDiscovery, toMock);
  app.get(PATHS.jwks, count('jwks'), failurePoint('jwks'), (req, res) => res.json({ keys: keys.publicJwks() }));
  app.get(PATHS.authorize, count('authorize'), failurePoint('authorize'), authorizeFront, toMock);
  app.post(PATHS.token, parseBody, countToken, failurePoint('token'), tokenFront, toMock);
  app.get(PATHS.userinfo, count('userinfo'), failurePoint('userinfo'), userinfoFront, toMock);
  app.post(PATHS.revoke, parseBody, count('revoke'), failurePoint('revoke'), revokeFront, toMock);
  app.post(PATHS.deviceCode, parseBody, count('device'), failurePoint('device'), deviceCodeHandler);
  app.use(toMock); // anything else: the mock's own routes (end session, introspect) or its 404
  app.use((err, req, res, _next) => {
    const status = err.status ?? err.statusCode ?? 500;
    if (status >= 500) log('unexpected error:', err);
    res.status(status).json({ error: status >= 500 ? 'server_error' : 'invalid_request', error_description: err.message });
  });

  // --- listen ------------------------------------------------------------------

  const server = http.createServer(app);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  oauth.issuer.url = `http://127.0.0.1:${port}/`;

  return {
    url: oauth.issuer.url,
    port,
    state,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
