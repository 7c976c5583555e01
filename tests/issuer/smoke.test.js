// Smoke test of the authd test issuer: starts issuer.js as a child process and
// drives every feature over HTTP with fetch.
//
//   (cd tests/issuer && npm ci) && node --test tests/issuer/

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';

import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';

const ISSUER_JS = fileURLToPath(new URL('./issuer.js', import.meta.url));
const CLIENT_ID = 'authd-test-client';
const CLIENT_SECRET = 'authd-test-secret';
const API = 'https://api.authd.test';
const REDIRECT_URI = 'http://127.0.0.1:1/callback'; // never contacted: redirects are not followed
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

/** Starts issuer.js and resolves once it printed its READY line. */
async function launch(args = []) {
  const child = spawn(process.execPath, [ISSUER_JS, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no READY line within 15 s\nstderr:\n${stderr}`)), 15_000);
    child.stdout.setEncoding('utf8').on('data', (d) => {
      stdout += d;
      const m = /^READY (http:\/\/127\.0\.0\.1:\d+\/)\n/.exec(stdout);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`issuer exited (${code}) before READY\nstderr:\n${stderr}`));
    });
  });
  return {
    child,
    url,
    stdout: () => stdout,
    stderr: () => stderr,
    /** Sends `signal` and resolves with the exit code. */
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null) return child.exitCode;
      const exited = once(child, 'exit');
      child.kill(signal);
      const [code] = await exited;
      return code;
    },
  };
}

/** Wraps a fetch Response: { status, headers, text, json }. */
async function wrap(response) {
  const text = await response.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

function makeClient(base) {
  const url = (path) => new URL(path, base).href;
  const http = {
    // Redirects are never followed (the authorize redirect goes to a port nobody listens on).
    get: async (path, headers = {}) => wrap(await fetch(url(path), { headers, redirect: 'manual' })),

    /** Form-encoded POST; `basic` = [id, secret] for HTTP Basic client auth. */
    form: async (path, fields, { basic } = {}) => {
      const headers = { 'content-type': 'application/x-www-form-urlencoded' };
      if (basic) headers.authorization = `Basic ${Buffer.from(`${basic[0]}:${basic[1]}`).toString('base64')}`;
      const body = new URLSearchParams(Object.entries(fields).filter(([, v]) => v !== undefined));
      return wrap(await fetch(url(path), { method: 'POST', headers, body }));
    },

    control: async (path, body = {}) =>
      wrap(await fetch(url(`/__control/${path}`), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })),

    controlGet: async (path) => wrap(await fetch(url(`/__control/${path}`))),
  };

  http.token = (fields, opts) => http.form('/oauth/token', fields, opts);

  /** client_credentials token with the default client (fields = knobs). */
  http.clientToken = (fields = {}, { clientId = CLIENT_ID, clientSecret = CLIENT_SECRET } = {}) =>
    http.token({ grant_type: 'client_credentials', client_id: clientId, client_secret: clientSecret, ...fields });

  /** Verifies a JWT against the issuer's current JWKS. */
  http.verify = async (jwt, options = {}) => {
    const jwks = (await http.get('/.well-known/jwks.json')).json;
    return (await jwtVerify(jwt, createLocalJWKSet(jwks), { issuer: base, ...options })).payload;
  };

  /** GET /authorize; returns the redirect's code and state (no browser: redirect not followed). */
  http.authorize = async (params) => {
    const q = new URLSearchParams({ response_type: 'code', client_id: CLIENT_ID, redirect_uri: REDIRECT_URI, ...params });
    const response = await fetch(url(`/authorize?${q}`), { redirect: 'manual' });
    await response.arrayBuffer();
    assert.equal(response.status, 302, 'authorize redirects');
    const location = new URL(response.headers.get('location'));
    return { location, code: location.searchParams.get('code'), state: location.searchParams.get('state') };
  };

  /** Full authorization code + PKCE login; returns the token response and helpers. */
  http.login = async ({ user = 'alice', scope = 'openid profile email offline_access', nonce, audience } = {}) => {
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const { code } = await http.authorize({
      scope,
      state: 'st',
      login_hint: user,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      ...(nonce ? { nonce } : {}),
      ...(audience ? { audience } : {}),
    });
    const response = await http.token({ grant_type: 'authorization_code', client_id: CLIENT_ID, code, code_verifier: verifier, redirect_uri: REDIRECT_URI });
    assert.equal(response.status, 200, `login succeeds: ${response.text}`);
    return response.json;
  };

  http.refresh = (refreshToken, extra = {}) =>
    http.token({ grant_type: 'refresh_token', client_id: CLIENT_ID, refresh_token: refreshToken, ...extra });

  return http;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

function assertInvalidGrant(response, message) {
  assert.equal(response.status, 403, `${message}: ${response.text}`);
  assert.equal(response.json.error, 'invalid_grant', message);
}

// ---------------------------------------------------------------------------
// the default instance
// ---------------------------------------------------------------------------

describe('authd test issuer (defaults)', () => {
  let issuer;
  let base;
  let http;

  before(async () => {
    issuer = await launch();
    base = issuer.url;
    http = makeClient(base);
  });

  after(async () => {
    await issuer?.stop('SIGKILL');
  });

  test('prints READY and serves a discovery document with 127.0.0.1 URLs', async () => {
    assert.match(base, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const port = Number(new URL(base).port);
    assert.ok(port > 0, 'ephemeral port assigned');

    const discovery = await http.get('/.well-known/openid-configuration');
    assert.equal(discovery.status, 200);
    const doc = discovery.json;
    assert.equal(doc.issuer, base, 'issuer with trailing slash');
    assert.equal(doc.jwks_uri, `${base}.well-known/jwks.json`);
    assert.equal(doc.token_endpoint, `${base}oauth/token`);
    assert.equal(doc.userinfo_endpoint, `${base}userinfo`);
    assert.equal(doc.revocation_endpoint, `${base}oauth/revoke`);
    assert.equal(doc.device_authorization_endpoint, `${base}oauth/device/code`);
    assert.equal(doc.authorization_endpoint, `${base}authorize`);
    assert.ok(doc.grant_types_supported.includes(DEVICE_GRANT));
    assert.ok(doc.grant_types_supported.includes('refresh_token'));
    assert.doesNotMatch(discovery.text, /localhost/, 'no localhost URL anywhere');
  });

  test('JWKS publishes one RS256 signing key with a kid', async () => {
    const jwks = await http.get('/.well-known/jwks.json');
    assert.equal(jwks.status, 200);
    assert.equal(jwks.json.keys.length, 1);
    const [key] = jwks.json.keys;
    assert.equal(key.kty, 'RSA');
    assert.equal(key.alg, 'RS256');
    assert.equal(key.use, 'sig');
    assert.ok(key.kid);
    assert.equal(key.d, undefined, 'no private part');
  });

  test('client_credentials: Auth0-shaped access token, client authentication', async () => {
    const response = await http.clientToken({ scope: 'read:sessions write:sessions' });
    assert.equal(response.status, 200, response.text);
    assert.deepEqual(Object.keys(response.json).sort(), ['access_token', 'expires_in', 'scope', 'token_type']);
    assert.equal(response.json.token_type, 'Bearer');
    assert.equal(response.json.expires_in, 3600);

    const header = decodeProtectedHeader(response.json.access_token);
    assert.equal(header.alg, 'RS256');
    const jwks = (await http.get('/.well-known/jwks.json')).json;
    assert.equal(header.kid, jwks.keys[0].kid);

    const claims = await http.verify(response.json.access_token, { audience: API });
    assert.equal(claims.iss, base);
    assert.equal(claims.sub, `${CLIENT_ID}@clients`);
    assert.equal(claims.aud, API);
    assert.equal(claims.azp, CLIENT_ID);
    assert.equal(claims.scope, 'read:sessions write:sessions');
    assert.deepEqual(claims.permissions, ['read:sessions', 'write:sessions']);
    assert.equal(claims.gty, 'client-credentials');
    assert.equal(claims.jti, undefined, 'no jti by default');
    assert.equal(claims.sid, undefined);
    assert.equal(claims.exp - claims.iat, 3600);
    assert.ok(Math.abs(claims.iat - nowSeconds()) <= 5);

    // HTTP Basic works too.
    const basic = await http.token({ grant_type: 'client_credentials' }, { basic: [CLIENT_ID, CLIENT_SECRET] });
    assert.equal(basic.status, 200, basic.text);

    // Wrong or missing secret, unknown client.
    const wrong = await http.clientToken({}, { clientSecret: 'nope' });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json.error, 'access_denied');
    const wrongBasic = await http.token({ grant_type: 'client_credentials' }, { basic: [CLIENT_ID, 'nope'] });
    assert.equal(wrongBasic.status, 401);
    const missing = await http.token({ grant_type: 'client_credentials', client_id: CLIENT_ID });
    assert.equal(missing.status, 401);
    const unknown = await http.clientToken({}, { clientId: 'someone-else' });
    assert.equal(unknown.status, 401);
    assert.equal(unknown.json.error, 'invalid_client');

    const unsupported = await http.token({ grant_type: 'implicit', client_id: CLIENT_ID });
    assert.equal(unsupported.status, 400);
    assert.equal(unsupported.json.error, 'unsupported_grant_type');
  });

  test('client_credentials test knobs shape the access token', async () => {
    const response = await http.clientToken({
      audience: '["https://a.test","https://b.test"]',
      scope: 'openid read:x',
      permissions: 'p:one p:two',
      sub: 'auth0|mallory',
      sid: 'session-1',
      jti: 'jti-1',
      expires_in: '-60',
      nbf_offset: '30',
      iat_offset: '-100',
    });
    assert.equal(response.status, 200, response.text);
    assert.equal(response.json.expires_in, -60);
    const claims = decodeJwt(response.json.access_token);
    const now = nowSeconds();
    assert.deepEqual(claims.aud, ['https://a.test', 'https://b.test']);
    assert.equal(claims.scope, 'openid read:x');
    assert.deepEqual(claims.permissions, ['p:one', 'p:two']);
    assert.equal(claims.sub, 'auth0|mallory');
    assert.equal(claims.sid, 'session-1');
    assert.equal(claims.jti, 'jti-1');
    assert.ok(claims.exp < now && claims.exp >= now - 65, 'already expired');
    assert.ok(Math.abs(claims.nbf - (now + 30)) <= 2, 'nbf in the future');
    assert.ok(Math.abs(claims.iat - (now - 100)) <= 2, 'iat shifted');

    // A plain string audience (no openid scope) stays a string.
    const single = decodeJwt((await http.clientToken({ audience: 'https://c.test' })).json.access_token);
    assert.equal(single.aud, 'https://c.test');

    // `claims` is merged last: any value, and null deletes a claim.
    const merged = await http.clientToken({ claims: JSON.stringify({ exp: 'soon', iss: 'x', azp: null, permissions: null, custom: { a: 1 } }) });
    assert.equal(merged.status, 200, merged.text);
    const mergedClaims = decodeJwt(merged.json.access_token);
    assert.equal(mergedClaims.exp, 'soon');
    assert.equal(mergedClaims.iss, 'x');
    assert.ok(!('azp' in mergedClaims), 'azp removed');
    assert.ok(!('permissions' in mergedClaims), 'permissions removed');
    assert.deepEqual(mergedClaims.custom, { a: 1 });

    // The token endpoint also takes JSON bodies, where `claims` may be an object.
    const json = await fetch(new URL('/oauth/token', base), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ grant_type: 'client_credentials', client_id: CLIENT_ID, client_secret: CLIENT_SECRET, claims: { tenant: 't1' } }),
    });
    assert.equal(json.status, 200);
    assert.equal(decodeJwt((await json.json()).access_token).tenant, 't1');

    // Bad knobs are rejected.
    for (const bad of [{ claims: '{not json' }, { claims: '[1,2]' }, { expires_in: 'soon' }, { kid: 'no-such-key' }, { audience: '[1]' }]) {
      const rejected = await http.clientToken(bad);
      assert.equal(rejected.status, 400, `${JSON.stringify(bad)} -> ${rejected.text}`);
      assert.equal(rejected.json.error, 'invalid_request');
    }
  });

  test('authorization code with PKCE: tokens, nonce, single-use code, checks', async () => {
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const { location, code, state } = await http.authorize({
      scope: 'openid profile email offline_access read:sessions',
      state: 'xyz',
      nonce: 'n-0S6_WzA2Mj',
      login_hint: 'alice',
      code_challenge: challenge,
      code_challenge_method: 'S256',
    });
    assert.equal(`${location.origin}${location.pathname}`, REDIRECT_URI);
    assert.ok(code);
    assert.equal(state, 'xyz');

    const exchange = (fields) =>
      http.token({ grant_type: 'authorization_code', client_id: CLIENT_ID, code, redirect_uri: REDIRECT_URI, code_verifier: verifier, ...fields });
    const response = await exchange({});
    assert.equal(response.status, 200, response.text);
    const { access_token: accessToken, id_token: idToken, refresh_token: refreshToken } = response.json;
    assert.ok(accessToken && idToken && refreshToken, 'access, id and refresh tokens');
    assert.equal(response.json.scope, 'openid profile email offline_access read:sessions');

    const access = await http.verify(accessToken, { audience: API });
    assert.equal(access.sub, 'auth0|alice');
    assert.deepEqual(access.aud, [API, `${base}userinfo`], 'openid -> audience array with userinfo');
    assert.equal(access.azp, CLIENT_ID);
    assert.equal(access.scope, 'openid profile email offline_access read:sessions');
    assert.deepEqual(access.permissions, ['read:sessions']);
    assert.ok(access.sid);
    assert.equal(access.jti, undefined);
    assert.equal(access.exp - access.iat, 3600);
    assert.ok(decodeProtectedHeader(accessToken).kid);

    const id = await http.verify(idToken, { audience: CLIENT_ID });
    assert.equal(id.sub, 'auth0|alice');
    assert.equal(id.aud, CLIENT_ID);
    assert.equal(id.nonce, 'n-0S6_WzA2Mj');
    assert.equal(id.sid, access.sid, 'same session in both tokens');
    assert.equal(id.email, 'alice@authd.test');
    assert.equal(id.email_verified, true);
    assert.equal(id.name, 'Alice Example');
    assert.equal(id.nickname, 'alice');
    assert.ok(id.picture);
    assert.ok(id.updated_at);

    // The code is single use.
    assertInvalidGrant(await exchange({}), 'second use of a code');

    // Wrong verifier, wrong redirect_uri, missing verifier: each on a fresh code.
    for (const [fields, what] of [
      [{ code_verifier: randomBytes(32).toString('base64url') }, 'wrong verifier'],
      [{ redirect_uri: 'http://127.0.0.1:1/other' }, 'wrong redirect_uri'],
      [{ code_verifier: undefined }, 'missing verifier'],
    ]) {
      const fresh = await http.authorize({ scope: 'openid', login_hint: 'alice', code_challenge: challenge, code_challenge_method: 'S256' });
      const rejected = await http.token({
        grant_type: 'authorization_code',
        client_id: CLIENT_ID,
        code: fresh.code,
        redirect_uri: REDIRECT_URI,
        code_verifier: verifier,
        ...fields,
      });
      assertInvalidGrant(rejected, what);
    }
    assertInvalidGrant(await exchange({ code: 'made-up' }), 'unknown code');

    // No offline_access: no refresh token. No openid: no id token, audience is a plain string.
    const noOffline = await http.login({ scope: 'openid profile' });
    assert.ok(noOffline.id_token);
    assert.equal(noOffline.refresh_token, undefined);
    const apiOnly = await http.login({ scope: 'read:sessions', user: 'bob', audience: 'https://other-api.test' });
    assert.equal(apiOnly.id_token, undefined);
    const apiClaims = decodeJwt(apiOnly.access_token);
    assert.equal(apiClaims.aud, 'https://other-api.test');
    assert.equal(apiClaims.sub, 'auth0|bob');
  });

  test('refresh tokens rotate; reuse of a rotated token revokes the family', async () => {
    await http.control('reset-stats');
    const login = await http.login({ scope: 'openid profile offline_access read:sessions' });
    const first = decodeJwt(login.access_token);

    const r1 = await http.refresh(login.refresh_token);
    assert.equal(r1.status, 200, r1.text);
    assert.ok(r1.json.refresh_token && r1.json.refresh_token !== login.refresh_token, 'a new refresh token');
    assert.ok(r1.json.id_token, 'id token again (openid)');
    const refreshed = await http.verify(r1.json.access_token, { audience: API });
    assert.equal(refreshed.sub, first.sub);
    assert.equal(refreshed.scope, first.scope);
    assert.equal(refreshed.sid, first.sid);
    assert.deepEqual(refreshed.aud, first.aud);
    assert.equal(decodeJwt(r1.json.id_token).sid, first.sid);

    const r2 = await http.refresh(r1.json.refresh_token);
    assert.equal(r2.status, 200, r2.text);

    // The first token was rotated: presenting it again revokes the whole family.
    const reuse = await http.refresh(login.refresh_token);
    assert.equal(reuse.status, 403);
    assert.deepEqual(reuse.json, { error: 'invalid_grant', error_description: 'Unknown or invalid refresh token.' });
    assertInvalidGrant(await http.refresh(r2.json.refresh_token), 'newest token of a revoked family');

    assertInvalidGrant(await http.refresh('not-a-token'), 'unknown token');

    const stats = (await http.controlGet('stats')).json;
    assert.equal(stats.family_revocations, 1);
    assert.equal(stats.refresh_reuse_detected, 1);
    assert.equal(stats.refresh, 5);
    assert.equal(stats.token.refresh_token, 5);

    const families = (await http.controlGet('refresh-families')).json.families;
    const family = families.find((f) => f.tokens.some((t) => t.token === login.refresh_token));
    assert.equal(family.revoked, true);
    assert.equal(family.revoked_reason, 'reuse');
    assert.equal(family.tokens.length, 3);
  });

  test('revocation endpoint revokes the refresh token family', async () => {
    const login = await http.login({ scope: 'openid offline_access' });
    const r1 = await http.refresh(login.refresh_token);
    assert.equal(r1.status, 200);

    const wrongSecret = await http.form('/oauth/revoke', { token: r1.json.refresh_token, client_id: CLIENT_ID, client_secret: 'nope' });
    assert.equal(wrongSecret.status, 401);

    const revoke = await http.form('/oauth/revoke', { token: r1.json.refresh_token, client_id: CLIENT_ID, client_secret: CLIENT_SECRET });
    assert.equal(revoke.status, 200);
    assert.equal(revoke.text, '');
    assertInvalidGrant(await http.refresh(r1.json.refresh_token), 'revoked token');

    // Unknown tokens are accepted silently (RFC 7009).
    const unknown = await http.form('/oauth/revoke', { token: 'whatever', client_id: CLIENT_ID, client_secret: CLIENT_SECRET });
    assert.equal(unknown.status, 200);
  });

  test('password grant', async () => {
    const ok = await http.token({
      grant_type: 'password',
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      username: 'bob',
      password: 'bob-password',
      scope: 'openid email offline_access',
    });
    assert.equal(ok.status, 200, ok.text);
    assert.ok(ok.json.refresh_token);
    const id = decodeJwt(ok.json.id_token);
    assert.equal(id.sub, 'auth0|bob');
    assert.equal(id.name, 'Zoë Ünicode');
    const bad = await http.token({ grant_type: 'password', client_id: CLIENT_ID, username: 'bob', password: 'x', scope: 'openid' });
    assertInvalidGrant(bad, 'wrong password');
  });

  test('access-token-sid control: user access tokens without sid, as Auth0 issues them', async () => {
    const login = () => http.token({
      grant_type: 'password', client_id: CLIENT_ID, client_secret: CLIENT_SECRET,
      username: 'alice', password: 'alice-password', scope: 'openid offline_access',
    });
    const withSid = await login();
    assert.ok(decodeJwt(withSid.json.access_token).sid, 'sid by default');
    assert.equal((await http.control('access-token-sid', { include: 'no' })).status, 400);
    assert.equal((await http.control('access-token-sid', { include: false })).status, 200);
    try {
      const without = await login();
      assert.equal(decodeJwt(without.json.access_token).sid, undefined);
      assert.ok(decodeJwt(without.json.id_token).sid, 'the id token keeps its sid');
    } finally {
      await http.control('access-token-sid', { include: true });
    }
  });

  test('userinfo verifies the token, answers the profile, rate limits', async () => {
    await http.control('userinfo-limit', { limit: 5 });
    const alice = await http.login({ user: 'alice', scope: 'openid profile email' });
    const bob = await http.login({ user: 'bob', scope: 'openid profile email' });
    const bearer = (token) => ({ authorization: `Bearer ${token}` });

    const info = await http.get('/userinfo', bearer(alice.access_token));
    assert.equal(info.status, 200, info.text);
    assert.deepEqual(info.json, {
      sub: 'auth0|alice',
      name: 'Alice Example',
      nickname: 'alice',
      picture: 'https://avatars.authd.test/alice.png',
      updated_at: '2024-01-01T00:00:00.000Z',
      email: 'alice@authd.test',
      email_verified: true,
    });

    const bobInfo = await http.get('/userinfo', bearer(bob.access_token));
    assert.equal(bobInfo.json.name, 'Zoë Ünicode');
    assert.equal(bobInfo.json.email_verified, false);

    // Profile changes through the control API, custom attributes included; null removes.
    const set = await http.control('users/alice', { name: 'Alice Renamed', groups: ['admins', 'devs'], locale: 'fr', picture: null });
    assert.equal(set.status, 200, set.text);
    assert.equal((await http.controlGet('users/alice')).json.locale, 'fr');
    assert.equal((await http.controlGet('users/nobody')).status, 404);
    const changed = (await http.get('/userinfo', bearer(alice.access_token))).json;
    assert.equal(changed.name, 'Alice Renamed');
    assert.deepEqual(changed.groups, ['admins', 'devs']);
    assert.equal(changed.locale, 'fr');
    assert.ok(!('picture' in changed));
    assert.notEqual(changed.updated_at, '2024-01-01T00:00:00.000Z', 'updated_at bumped');
    assert.equal(changed.password, undefined);

    // Invalid tokens: none, garbage, wrong audience, expired, wrong issuer.
    const rejects = [
      ['no header', {}],
      ['garbage', bearer('abc.def.ghi')],
      ['no userinfo audience', bearer((await http.clientToken()).json.access_token)],
      ['expired', bearer((await http.clientToken({ audience: JSON.stringify([API, `${base}userinfo`]), sub: 'auth0|alice', expires_in: '-10' })).json.access_token)],
      ['wrong iss', bearer((await http.clientToken({ audience: JSON.stringify([API, `${base}userinfo`]), sub: 'auth0|alice', claims: '{"iss":"https://evil.test/"}' })).json.access_token)],
    ];
    for (const [what, headers] of rejects) {
      const rejected = await http.get('/userinfo', headers);
      assert.equal(rejected.status, 401, `${what}: ${rejected.text}`);
      assert.match(rejected.headers.get('www-authenticate'), /^Bearer/);
    }

    // Rate limit: alice used 2 calls of 5 so far; 3 more pass, the 6th is refused.
    for (let i = 0; i < 3; i++) assert.equal((await http.get('/userinfo', bearer(alice.access_token))).status, 200);
    const limited = await http.get('/userinfo', bearer(alice.access_token));
    assert.equal(limited.status, 429);
    const retryAfter = Number(limited.headers.get('retry-after'));
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
    // Per user: bob is not affected.
    assert.equal((await http.get('/userinfo', bearer(bob.access_token))).status, 200);
    assert.ok((await http.controlGet('stats')).json.userinfo_rate_limited >= 1);
    await http.control('userinfo-limit', { limit: 5 }); // clean slate for later tests
  });

  test('device authorization grant, scripted through the control API', async () => {
    const start = await http.form('/oauth/device/code', { client_id: CLIENT_ID, scope: 'openid profile offline_access', audience: API });
    assert.equal(start.status, 200, start.text);
    const device = start.json;
    assert.ok(device.device_code);
    assert.match(device.user_code, /^[A-Z]{4}-[A-Z]{4}$/);
    assert.equal(device.verification_uri, `${base}activate`);
    assert.equal(device.verification_uri_complete, `${base}activate?user_code=${device.user_code}`);
    assert.equal(device.interval, 5);
    assert.equal(device.expires_in, 900);

    const poll = () => http.token({ grant_type: DEVICE_GRANT, client_id: CLIENT_ID, device_code: device.device_code });

    const pending = await poll();
    assert.equal(pending.status, 403);
    assert.equal(pending.json.error, 'authorization_pending');
    const tooFast = await poll();
    assert.equal(tooFast.status, 429);
    assert.equal(tooFast.json.error, 'slow_down');

    // Shorten the interval of this code, then approve it as alice.
    const shortened = await http.control(`device/${device.user_code}`, { interval: 1 });
    assert.equal(shortened.json.interval, 1);
    await sleep(1100);
    assert.equal((await poll()).json.error, 'authorization_pending');
    const approved = await http.control(`device/${device.user_code.toLowerCase()}`, { action: 'approve', user: 'alice' });
    assert.equal(approved.status, 200, approved.text);
    assert.equal(approved.json.status, 'approved');
    await sleep(1100);
    const tokens = await poll();
    assert.equal(tokens.status, 200, tokens.text);
    assert.ok(tokens.json.refresh_token, 'offline_access -> refresh token');
    const access = await http.verify(tokens.json.access_token, { audience: API });
    assert.equal(access.sub, 'auth0|alice');
    assert.equal(access.scope, 'openid profile offline_access');
    assert.ok(access.sid);
    const id = decodeJwt(tokens.json.id_token);
    assert.equal(id.aud, CLIENT_ID);
    assert.equal(id.sid, access.sid);
    assertInvalidGrant(await poll(), 'device code already used');
    assert.equal((await http.refresh(tokens.json.refresh_token)).status, 200, 'device refresh token works');

    // New codes with a 0 s interval (device-config), then deny / expire.
    const config = await http.control('device-config', { interval: 0 });
    assert.deepEqual(config.json, { interval: 0, expires_in: 900 });
    const newCode = async () => (await http.form('/oauth/device/code', { client_id: CLIENT_ID, scope: 'openid' })).json;
    const pollCode = (code) => http.token({ grant_type: DEVICE_GRANT, client_id: CLIENT_ID, device_code: code.device_code });

    const denied = await newCode();
    assert.equal(denied.interval, 0);
    await http.control(`device/${denied.user_code}`, { action: 'deny' });
    const deniedPoll = await pollCode(denied);
    assert.equal(deniedPoll.status, 403);
    assert.equal(deniedPoll.json.error, 'access_denied');

    const expiring = await newCode();
    assert.equal((await http.control(`device/${expiring.user_code}`, { action: 'expire' })).json.expired, true);
    const expired = await pollCode(expiring);
    assert.equal(expired.status, 403);
    assert.equal(expired.json.error, 'expired_token');
    assertInvalidGrant(await pollCode(expiring), 'expired_token is reported once, then invalid_grant');

    assertInvalidGrant(await pollCode({ device_code: 'nope' }), 'unknown device code');
    assert.equal((await http.control('device/ZZZZ-ZZZZ', { action: 'approve' })).status, 404);
    assert.equal((await http.form('/oauth/device/code', { client_id: 'intruder' })).status, 401);
    await http.control('device-config', { interval: 5 });
  });

  test('failure injection: fail, slow down, heal', async () => {
    // Every endpoint can fail once with any status.
    const requests = {
      discovery: () => http.get('/.well-known/openid-configuration'),
      jwks: () => http.get('/.well-known/jwks.json'),
      authorize: () => http.get(`/authorize?response_type=code&client_id=${CLIENT_ID}&redirect_uri=${encodeURIComponent(REDIRECT_URI)}`), // 302
      token: () => http.clientToken(),
      userinfo: () => http.get('/userinfo'),
      revoke: () => http.form('/oauth/revoke', { token: 'x', client_id: CLIENT_ID }),
      device: () => http.form('/oauth/device/code', { client_id: CLIENT_ID }),
    };
    for (const [endpoint, request] of Object.entries(requests)) {
      const set = await http.control('fail', { endpoint, status: 502, times: 1 });
      assert.equal(set.status, 200, set.text);
      const failed = await request();
      assert.equal(failed.status, 502, `${endpoint} fails`);
      assert.equal(failed.json.error, 'temporarily_unavailable');
      assert.notEqual((await request()).status, 502, `${endpoint} recovers after times: 1`);
    }

    // times: 2 on the JWKS.
    await http.control('fail', { endpoint: 'jwks', status: 503, times: 2 });
    assert.equal((await requests.jwks()).status, 503);
    assert.equal((await requests.jwks()).status, 503);
    assert.equal((await requests.jwks()).status, 200);

    // Unlimited until healed; Retry-After when asked for.
    await http.control('fail', { endpoint: 'discovery', status: 503, retry_after: 2 });
    for (let i = 0; i < 3; i++) {
      const failed = await requests.discovery();
      assert.equal(failed.status, 503);
      assert.equal(failed.headers.get('retry-after'), '2');
    }
    await http.control('fail', { endpoint: 'jwks', status: 500 });
    assert.deepEqual(Object.keys((await http.controlGet('failures')).json.failures).sort(), ['discovery', 'jwks']);
    await http.control('heal', { endpoint: 'jwks' }); // one endpoint
    assert.equal((await requests.jwks()).status, 200);
    assert.equal((await requests.discovery()).status, 503);
    await http.control('heal'); // all
    assert.deepEqual((await http.controlGet('failures')).json.failures, {});
    assert.equal((await requests.discovery()).status, 200);

    // Delay only (no status): slow but successful.
    await http.control('fail', { endpoint: 'token', delay_ms: 400, times: 1 });
    const started = Date.now();
    const slow = await requests.token();
    assert.equal(slow.status, 200);
    assert.ok(Date.now() - started >= 380, 'delayed');

    // Bad rules are refused.
    assert.equal((await http.control('fail', { endpoint: 'nowhere' })).status, 400);
    assert.equal((await http.control('fail', { endpoint: 'jwks', status: 42 })).status, 400);
  });

  test('stats count requests per endpoint', async () => {
    const reset = await http.control('reset-stats');
    assert.equal(reset.json.token.total, 0);
    await http.get('/.well-known/openid-configuration');
    await http.get('/.well-known/jwks.json');
    await http.get('/.well-known/jwks.json');
    await http.clientToken();
    await http.clientToken({}, { clientSecret: 'bad' }); // failed requests count too
    const login = await http.login({ scope: 'openid offline_access' }); // authorize + authorization_code
    await http.refresh(login.refresh_token);
    await http.get('/userinfo', { authorization: `Bearer ${login.access_token}` });
    await http.form('/oauth/revoke', { token: login.refresh_token, client_id: CLIENT_ID, client_secret: CLIENT_SECRET });
    const code = (await http.form('/oauth/device/code', { client_id: CLIENT_ID })).json;
    await http.token({ grant_type: DEVICE_GRANT, client_id: CLIENT_ID, device_code: code.device_code });
    await http.token({ grant_type: 'password', client_id: CLIENT_ID, username: 'alice', password: 'alice-password' });

    const stats = (await http.controlGet('stats')).json;
    assert.deepEqual(stats, {
      discovery: 1,
      jwks: 2,
      authorize: 1,
      token: { total: 6, client_credentials: 2, authorization_code: 1, password: 1, refresh_token: 1, device_code: 1, other: 0 },
      refresh: 1,
      userinfo: 1,
      userinfo_rate_limited: 0,
      revoke: 1,
      device: 1,
      family_revocations: 1,
      refresh_reuse_detected: 0,
    });
  });

  test('key rotation: new signing key, old keys kept or dropped, other algorithms, kid/alg knobs', async () => {
    const jwks = async () => (await http.get('/.well-known/jwks.json')).json.keys;
    const [original] = await jwks();

    const rotated = await http.control('rotate', { alg: 'RS256' });
    assert.equal(rotated.status, 200, rotated.text);
    const { kid } = rotated.json;
    assert.ok(kid && kid !== original.kid);
    assert.deepEqual((await jwks()).map((k) => k.kid), [original.kid, kid], 'old key still published');

    const token = (await http.clientToken()).json.access_token;
    assert.equal(decodeProtectedHeader(token).kid, kid, 'signed with the new key');
    await http.verify(token, { audience: API });

    // kid knob: sign with the old key.
    const old = (await http.clientToken({ kid: original.kid })).json.access_token;
    assert.equal(decodeProtectedHeader(old).kid, original.kid);
    await http.verify(old, { audience: API });

    // Other algorithms.
    for (const alg of ['PS256', 'ES256', 'EdDSA']) {
      const r = await http.control('rotate', { alg });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.alg, alg);
      const signed = (await http.clientToken()).json.access_token;
      const header = decodeProtectedHeader(signed);
      assert.equal(header.alg, alg);
      assert.equal(header.kid, r.json.kid);
      await http.verify(signed, { audience: API });
    }
    assert.equal((await jwks()).length, 5);

    // alg knob picks the newest key of that algorithm; an alg without key is ignored.
    assert.equal(decodeProtectedHeader((await http.clientToken({ alg: 'PS256' })).json.access_token).alg, 'PS256');
    assert.equal(decodeProtectedHeader((await http.clientToken({ alg: 'HS256' })).json.access_token).alg, 'EdDSA');

    // The id token and the userinfo check follow the rotation too.
    const login = await http.login({ scope: 'openid' });
    assert.equal(decodeProtectedHeader(login.id_token).alg, 'EdDSA');
    assert.equal((await http.get('/userinfo', { authorization: `Bearer ${login.access_token}` })).status, 200);

    // drop_old: only the new key remains published.
    const fresh = await http.control('rotate', { alg: 'RS256', drop_old: true });
    const published = await jwks();
    assert.deepEqual(published.map((k) => k.kid), [fresh.json.kid]);
    // A token signed with a dropped key (kid knob) no longer verifies against the JWKS.
    const stale = (await http.clientToken({ kid: original.kid })).json.access_token;
    await assert.rejects(http.verify(stale, { audience: API }));
    const keys = (await http.controlGet('keys')).json.keys;
    assert.equal(keys.filter((k) => k.signing).length, 1);

    assert.equal((await http.control('rotate', { alg: 'XX999' })).status, 400);
  });

  test('only the READY line on stdout; exits with 0 on SIGTERM', async () => {
    assert.equal(issuer.stdout(), `READY ${base}\n`);
    const code = await issuer.stop('SIGTERM');
    assert.equal(code, 0, `exit code; stderr:\n${issuer.stderr()}`);
  });
});

// ---------------------------------------------------------------------------
// CLI options, with a second instance
// ---------------------------------------------------------------------------

describe('authd test issuer (CLI options)', () => {
  test('custom audience/client, refresh reuse interval, userinfo limit, SIGINT', async () => {
    const issuer = await launch([
      '--port', '0',
      '--audience', 'https://other.authd.test',
      '--client-id', 'cli-client',
      '--client-secret', 'cli-secret',
      '--reuse-interval-seconds', '30',
      '--userinfo-limit', '2',
    ]);
    try {
      const http = makeClient(issuer.url);

      const cc = await http.clientToken({}, { clientId: 'cli-client', clientSecret: 'cli-secret' });
      assert.equal(cc.status, 200, cc.text);
      const claims = decodeJwt(cc.json.access_token);
      assert.equal(claims.aud, 'https://other.authd.test');
      assert.equal(claims.sub, 'cli-client@clients');
      assert.equal((await http.clientToken()).status, 401, 'the default client is unknown here');

      // Within the reuse interval a rotated refresh token is still accepted, nothing is revoked.
      const login = await http.token({
        grant_type: 'password',
        client_id: 'cli-client',
        client_secret: 'cli-secret',
        username: 'alice',
        password: 'alice-password',
        scope: 'openid offline_access',
      });
      assert.equal(login.status, 200, login.text);
      const refresh = (token) => http.token({ grant_type: 'refresh_token', client_id: 'cli-client', refresh_token: token });
      const r1 = await refresh(login.json.refresh_token);
      assert.equal(r1.status, 200, r1.text);
      const again = await refresh(login.json.refresh_token);
      assert.equal(again.status, 200, `reuse inside the interval: ${again.text}`);
      assert.notEqual(again.json.refresh_token, r1.json.refresh_token);
      assert.equal((await refresh(r1.json.refresh_token)).status, 200, 'family still alive');
      assert.equal((await http.controlGet('stats')).json.family_revocations, 0);

      // --userinfo-limit 2
      const bearer = { authorization: `Bearer ${login.json.access_token}` };
      assert.equal((await http.get('/userinfo', bearer)).status, 200);
      assert.equal((await http.get('/userinfo', bearer)).status, 200);
      assert.equal((await http.get('/userinfo', bearer)).status, 429);

      assert.equal(issuer.stdout(), `READY ${issuer.url}\n`);
      assert.equal(await issuer.stop('SIGINT'), 0);
    } finally {
      await issuer.stop('SIGKILL');
    }
  });

  test('rejects bad options', async () => {
    const child = spawn(process.execPath, [ISSUER_JS, '--port', 'abc'], { stdio: 'ignore' });
    const [code] = await once(child, 'exit');
    assert.equal(code, 2);
  });
});
