// Smoke test of the DPoP / mTLS test issuer: starts issuer.js, mints both kinds of token
// with mint.js, and checks them as a resource server would; logs users in and out of
// logout-app through the control routes and checks the back-channel logout tokens a small
// receiver on 127.0.0.1 gets.
//
//   npm ci --prefix tests/issuer-dpop && node --test tests/issuer-dpop/
//
// Needs `openssl` on PATH (for the self-signed client certificate).

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';

import { generateKeyPair, generateProof } from 'dpop';
import {
  calculateJwkThumbprint,
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  EmbeddedJWK,
  jwtVerify,
} from 'jose';

const ISSUER_JS = fileURLToPath(new URL('./issuer.js', import.meta.url));
const MINT_JS = fileURLToPath(new URL('./mint.js', import.meta.url));
const API = 'https://api.authd.test';
const OTHER_API = 'https://other.authd.test/api';
const run = promisify(execFile);

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
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no READY line within 10 s\nstderr:\n${stderr}`));
    }, 10_000);
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

/** Runs mint.js; resolves { code, stdout, stderr } whatever the exit code. */
async function mint(args) {
  try {
    const { stdout, stderr } = await run(process.execPath, [MINT_JS, ...args], { timeout: 15_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    if (typeof err.code !== 'number') throw err;
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** mint.js must succeed and print exactly one line: a JSON object with exactly `keys`. */
async function mintOk(args, keys) {
  const result = await mint(args);
  assert.equal(result.code, 0, `mint.js ${args.join(' ')} failed:\n${result.stderr}`);
  assert.match(result.stdout, /^[^\n]+\n$/, 'exactly one line on stdout');
  const out = JSON.parse(result.stdout);
  assert.deepEqual(Object.keys(out).sort(), [...keys].sort());
  return { out, stderr: result.stderr };
}

async function getJson(url) {
  const response = await fetch(url);
  assert.equal(response.status, 200, `GET ${url}`);
  return response.json();
}

function basic(id, secret) {
  return `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
}

async function tokenRequest(endpoint, { client, secret, headers = {}, params = {} }) {
  const response = await fetch(endpoint, {
    method: 'POST',
    headers: { authorization: basic(client, secret), 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams({ grant_type: 'client_credentials', ...params }),
  });
  return { status: response.status, headers: response.headers, json: await response.json() };
}

const sha256 = (text) => createHash('sha256').update(text).digest('base64url');

/**
 * Checks an access token as a resource server would: header, signature against the published
 * JWKS, iss, aud, lifetime; returns { header, claims }.
 */
async function checkAccessToken(token, { issuer, jwks, audience, clientId }) {
  const header = decodeProtectedHeader(token);
  assert.equal(header.typ, 'at+jwt');
  assert.equal(header.alg, 'RS256');
  assert.ok(jwks.keys.some((k) => k.kid === header.kid), `kid ${header.kid} is published`);
  const { payload: claims } = await jwtVerify(token, createLocalJWKSet(jwks), {
    issuer,
    audience,
    typ: 'at+jwt',
    algorithms: ['RS256'],
  });
  assert.equal(claims.iss, issuer, 'iss is the READY URL, character for character');
  assert.equal(claims.aud, audience, 'aud is a single string');
  assert.equal(claims.sub, clientId);
  assert.equal(claims.client_id, clientId);
  assert.equal(typeof claims.jti, 'string');
  assert.equal(claims.exp - claims.iat, 600);
  assert.ok(Math.abs(claims.iat - Date.now() / 1000) < 60);
  return { header, claims };
}

/** Checks one DPoP proof made by mint.js (RFC 9449 §4.2) and returns its payload. */
async function checkProof(proof, { jkt, alg, htm, htu, accessToken }) {
  const header = decodeProtectedHeader(proof);
  assert.deepEqual(Object.keys(header).sort(), ['alg', 'jwk', 'typ']);
  assert.equal(header.typ, 'dpop+jwt');
  assert.equal(header.alg, alg);
  assert.equal(header.jwk.d, undefined, 'the proof carries the public key only');
  assert.equal(await calculateJwkThumbprint(header.jwk, 'sha256'), jkt, "the proof's key is the bound key");
  const { payload } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: [alg] });
  assert.deepEqual(Object.keys(payload).sort(), ['ath', 'htm', 'htu', 'iat', 'jti']);
  assert.equal(payload.htm, htm);
  assert.equal(payload.htu, htu);
  assert.equal(payload.ath, sha256(accessToken));
  assert.ok(Math.abs(payload.iat - Date.now() / 1000) < 60);
  assert.equal(typeof payload.jti, 'string');
  return payload;
}

// ---------------------------------------------------------------------------
// fixtures
// ---------------------------------------------------------------------------

let dir;
let certFile;
let certX5t; // computed by openssl, independently of mint.js and oidc-provider
let issuer;
let discovery;
let jwks;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'issuer-dpop-'));
  certFile = join(dir, 'client.pem');
  const keyFile = join(dir, 'client.key');
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', keyFile, '-out', certFile, '-subj', '/CN=mtls-client', '-days', '1',
  ]);
  const { stdout } = await run('openssl', ['x509', '-in', certFile, '-noout', '-fingerprint', '-sha256']);
  const hex = stdout.trim().split('=')[1].replaceAll(':', '');
  certX5t = Buffer.from(hex, 'hex').toString('base64url');

  issuer = await launch();
  discovery = await getJson(`${issuer.url}.well-known/openid-configuration`);
  jwks = await getJson(discovery.jwks_uri);
});

after(async () => {
  if (issuer) await issuer.stop('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------

describe('issuer.js', () => {
  test('READY names the issuer that discovery and the tokens carry', async () => {
    assert.match(issuer.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.equal(discovery.issuer, issuer.url);
    // OpenID Connect Discovery's rule: strip the trailing slash, append the well-known path.
    assert.deepEqual(await getJson(`${issuer.url.replace(/\/$/, '')}/.well-known/openid-configuration`), discovery);
    assert.equal(discovery.jwks_uri, `${issuer.url}jwks`);
    assert.equal(discovery.token_endpoint, `${issuer.url}token`);
    assert.ok(discovery.grant_types_supported.includes('client_credentials'));
    assert.equal(discovery.tls_client_certificate_bound_access_tokens, true);
    assert.ok(discovery.dpop_signing_alg_values_supported.includes('ES256'));
  });

  test('JWKS: one public RS256 signing key', () => {
    assert.equal(jwks.keys.length, 1);
    const [key] = jwks.keys;
    assert.equal(key.kty, 'RSA');
    assert.equal(key.alg, 'RS256');
    assert.equal(key.use, 'sig');
    assert.equal(typeof key.kid, 'string');
    for (const secret of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(key[secret], undefined);
  });

  test('dpop-client needs a proof, mtls-client a certificate, the resource must be the audience', async () => {
    const endpoint = discovery.token_endpoint;
    let r = await tokenRequest(endpoint, { client: 'dpop-client', secret: 'dpop-secret', params: { resource: API } });
    assert.equal(r.status, 400);
    assert.equal(r.json.error, 'invalid_grant');
    assert.equal(r.json.error_detail, 'DPoP proof JWT not provided');

    r = await tokenRequest(endpoint, { client: 'mtls-client', secret: 'mtls-secret', params: { resource: API } });
    assert.equal(r.status, 400);
    assert.equal(r.json.error, 'invalid_grant');
    assert.equal(r.json.error_detail, 'mutual TLS client certificate not provided');

    r = await tokenRequest(endpoint, {
      client: 'mtls-client', secret: 'mtls-secret', headers: { 'x-client-cert': 'not-a-certificate' },
    });
    assert.equal(r.status, 400);
    assert.equal(r.json.error, 'invalid_request');

    const keyPair = await generateKeyPair('ES256');
    r = await tokenRequest(endpoint, {
      client: 'dpop-client', secret: 'dpop-secret',
      headers: { dpop: await generateProof(keyPair, endpoint, 'POST') },
      params: { resource: 'https://elsewhere.test' },
    });
    assert.equal(r.status, 400);
    assert.equal(r.json.error, 'invalid_target');

    // A proof for another URL is refused.
    r = await tokenRequest(endpoint, {
      client: 'dpop-client', secret: 'dpop-secret',
      headers: { dpop: await generateProof(keyPair, `${issuer.url}other`, 'POST') },
    });
    assert.equal(r.status, 400);
    assert.equal(r.json.error, 'invalid_dpop_proof');

    r = await tokenRequest(endpoint, { client: 'dpop-client', secret: 'wrong', params: { resource: API } });
    assert.equal(r.status, 401);
    assert.equal(r.json.error, 'invalid_client');
  });

  test('without `resource` the token is still a JWT for the audience', async () => {
    const keyPair = await generateKeyPair('ES256');
    const r = await tokenRequest(discovery.token_endpoint, {
      client: 'dpop-client', secret: 'dpop-secret',
      headers: { dpop: await generateProof(keyPair, discovery.token_endpoint, 'POST') },
    });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.token_type, 'DPoP');
    await checkAccessToken(r.json.access_token, { issuer: issuer.url, jwks, audience: API, clientId: 'dpop-client' });
  });
});

describe('mint.js', () => {
  test('dpop: a DPoP-bound token and N proofs for htm/htu with its ath', async () => {
    const htu = 'https://api.authd.test/v1/things';
    const { out } = await mintOk(
      ['--issuer', issuer.url, '--kind', 'dpop', '--proofs', '3', '--htm', 'POST', '--htu', htu],
      ['access_token', 'token_type', 'jkt', 'proofs'],
    );
    assert.equal(out.token_type, 'DPoP');
    assert.match(out.jkt, /^[A-Za-z0-9_-]{43}$/);
    const { claims } = await checkAccessToken(out.access_token, {
      issuer: issuer.url, jwks, audience: API, clientId: 'dpop-client',
    });
    assert.deepEqual(claims.cnf, { jkt: out.jkt });
    assert.deepEqual(
      Object.keys(claims).sort(),
      ['aud', 'client_id', 'cnf', 'exp', 'iat', 'iss', 'jti', 'sub'],
      'the claims of a client_credentials token without scope',
    );
    assert.equal(out.proofs.length, 3);
    const jtis = new Set();
    for (const proof of out.proofs) {
      const payload = await checkProof(proof, { jkt: out.jkt, alg: 'ES256', htm: 'POST', htu, accessToken: out.access_token });
      jtis.add(payload.jti);
    }
    assert.equal(jtis.size, 3, 'every proof has its own jti');
  });

  test('dpop: defaults are one GET proof for the audience URL', async () => {
    const { out } = await mintOk(['--issuer', issuer.url, '--kind', 'dpop'], ['access_token', 'token_type', 'jkt', 'proofs']);
    assert.equal(out.proofs.length, 1);
    await checkProof(out.proofs[0], { jkt: out.jkt, alg: 'ES256', htm: 'GET', htu: API, accessToken: out.access_token });
  });

  for (const alg of ['PS256', 'RS256', 'Ed25519']) {
    test(`dpop: --alg ${alg}`, async () => {
      const { out } = await mintOk(
        ['--issuer', issuer.url, '--kind', 'dpop', '--alg', alg, '--proofs', '1'],
        ['access_token', 'token_type', 'jkt', 'proofs'],
      );
      const { claims } = await checkAccessToken(out.access_token, {
        issuer: issuer.url, jwks, audience: API, clientId: 'dpop-client',
      });
      assert.deepEqual(claims.cnf, { jkt: out.jkt });
      await checkProof(out.proofs[0], { jkt: out.jkt, alg, htm: 'GET', htu: API, accessToken: out.access_token });
    });
  }

  test('mtls: a certificate-bound token whose x5t#S256 is the certificate\'s SHA-256', async () => {
    const { out } = await mintOk(
      ['--issuer', issuer.url, '--kind', 'mtls', '--cert', certFile],
      ['access_token', 'token_type', 'x5t#S256'],
    );
    assert.equal(out.token_type, 'Bearer');
    assert.equal(out['x5t#S256'], certX5t);
    const { claims } = await checkAccessToken(out.access_token, {
      issuer: issuer.url, jwks, audience: API, clientId: 'mtls-client',
    });
    assert.deepEqual(claims.cnf, { 'x5t#S256': certX5t });
  });

  test('failures exit non-zero with a message and print nothing on stdout', async () => {
    const cases = [
      [['--issuer', issuer.url, '--kind', 'mtls'], 2, /needs --cert/],
      [['--issuer', issuer.url, '--kind', 'bogus'], 2, /--kind must be dpop or mtls/],
      [['--issuer', issuer.url, '--kind', 'dpop', '--alg', 'HS256'], 2, /--alg must be one of/],
      [['--issuer', issuer.url, '--kind', 'dpop', '--client-secret', 'wrong'], 1, /invalid_client/],
      [['--issuer', issuer.url, '--kind', 'dpop', '--client-id', 'mtls-client', '--client-secret', 'mtls-secret'], 1,
        /mutual TLS client certificate not provided/],
      [['--issuer', issuer.url, '--kind', 'dpop', '--audience', 'https://elsewhere.test'], 1, /invalid_target/],
      [['--issuer', issuer.url.replace(/\/$/, ''), '--kind', 'dpop'], 1, /names the issuer/],
      [['--issuer', issuer.url, '--kind', 'mtls', '--cert', join(dir, 'client.key')], 1, /no PEM certificate/],
    ];
    for (const [args, code, message] of cases) {
      const result = await mint(args);
      assert.equal(result.code, code, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, message);
      assert.equal(result.stdout, '');
    }
  });
});

describe('issuer.js options', () => {
  test('--audience and --require-dpop-nonce: mint.js retries with the nonce; SIGINT exits 0', async () => {
    const other = await launch(['--audience', OTHER_API, '--require-dpop-nonce']);
    try {
      const otherJwks = await getJson(`${other.url}jwks`);
      const { out, stderr } = await mintOk(
        ['--issuer', other.url, '--kind', 'dpop', '--audience', OTHER_API, '--proofs', '0'],
        ['access_token', 'token_type', 'jkt', 'proofs'],
      );
      assert.match(stderr, /asked for a DPoP nonce/);
      assert.deepEqual(out.proofs, []);
      const { claims } = await checkAccessToken(out.access_token, {
        issuer: other.url, jwks: otherJwks, audience: OTHER_API, clientId: 'dpop-client',
      });
      assert.deepEqual(claims.cnf, { jkt: out.jkt });
      // The first issuer's key does not verify the second's tokens.
      await assert.rejects(checkAccessToken(out.access_token, {
        issuer: other.url, jwks, audience: OTHER_API, clientId: 'dpop-client',
      }));
    } finally {
      assert.equal(await other.stop('SIGINT'), 0);
    }
    assert.equal(other.stdout(), `READY ${other.url}\n`);
  });

  test('stdout holds only the READY line; SIGTERM exits 0', async () => {
    assert.equal(await issuer.stop('SIGTERM'), 0);
    assert.equal(issuer.stdout(), `READY ${issuer.url}\n`);
    assert.match(issuer.stderr(), /SIGTERM: stopping/);
  });
});

// ---------------------------------------------------------------------------
// back-channel logout
// ---------------------------------------------------------------------------

const BACKCHANNEL_LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

/** A back-channel logout receiver on 127.0.0.1 that records every request and answers `status`. */
async function receiver(status = 200) {
  const requests = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d) => (body += d));
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      res.writeHead(rx.status, { 'cache-control': 'no-store' });
      res.end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const rx = {
    status,
    requests,
    uri: `http://127.0.0.1:${server.address().port}/backchannel-logout`,
    close: () => new Promise((resolve) => {
      server.close(resolve);
      server.closeAllConnections();
    }),
  };
  return rx;
}

async function control(issuerUrl, path, body) {
  const response = await fetch(`${issuerUrl}__control/${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: await response.json() };
}

/** Checks a logout token as Back-Channel Logout 1.0 §2.4 and §2.6 say; returns its claims. */
async function checkLogoutToken(token, { issuer: iss, jwks: keys, sub, sid }) {
  const header = decodeProtectedHeader(token);
  assert.equal(header.typ, 'logout+jwt');
  assert.equal(header.alg, 'RS256');
  const { payload } = await jwtVerify(token, createLocalJWKSet(keys), {
    issuer: iss,
    audience: 'logout-app',
    typ: 'logout+jwt',
    algorithms: ['RS256'],
  });
  assert.deepEqual(Object.keys(payload).sort(), ['aud', 'events', 'exp', 'iat', 'iss', 'jti', 'sid', 'sub']);
  assert.equal(payload.aud, 'logout-app');
  assert.deepEqual(payload.events, { [BACKCHANNEL_LOGOUT_EVENT]: {} });
  assert.equal(payload.sub, sub);
  assert.equal(payload.sid, sid);
  assert.equal(payload.nonce, undefined, 'a logout token has no nonce');
  assert.equal(typeof payload.jti, 'string');
  assert.ok(Math.abs(payload.iat - Date.now() / 1000) < 60);
  assert.equal(payload.exp - payload.iat, 120);
  return payload;
}

describe('back-channel logout', () => {
  let rx;
  let idp;
  let idpJwks;
  let idpDiscovery;

  before(async () => {
    rx = await receiver();
    idp = await launch(['--backchannel-logout-uri', rx.uri]);
    idpDiscovery = await getJson(`${idp.url}.well-known/openid-configuration`);
    idpJwks = await getJson(idpDiscovery.jwks_uri);
  });

  after(async () => {
    if (idp) await idp.stop('SIGKILL');
    if (rx) await rx.close();
  });

  test('discovery announces back-channel logout with sid', () => {
    assert.equal(idpDiscovery.backchannel_logout_supported, true);
    assert.equal(idpDiscovery.backchannel_logout_session_supported, true);
    assert.equal(idpDiscovery.end_session_endpoint, `${idp.url}session/end`);
  });

  test('login: the access token carries the ID token\'s sid; a refreshed one too', async () => {
    const { status, json } = await control(idp.url, 'login', { user: 'alice' });
    assert.equal(status, 200, JSON.stringify(json));
    assert.deepEqual(Object.keys(json).sort(), ['access_token', 'id_token', 'refresh_token', 'sid', 'sub']);
    assert.equal(json.sub, 'auth0|alice');
    assert.match(json.sid, /^[A-Za-z0-9_-]{20,}$/);

    const { payload: id } = await jwtVerify(json.id_token, createLocalJWKSet(idpJwks), {
      issuer: idp.url, audience: 'logout-app', algorithms: ['RS256'],
    });
    assert.equal(id.sub, 'auth0|alice');
    assert.equal(id.sid, json.sid);

    const header = decodeProtectedHeader(json.access_token);
    assert.equal(header.typ, 'at+jwt');
    const { payload: at } = await jwtVerify(json.access_token, createLocalJWKSet(idpJwks), {
      issuer: idp.url, audience: API, typ: 'at+jwt', algorithms: ['RS256'],
    });
    assert.equal(at.sid, id.sid, "the access token's sid is the ID token's");
    assert.equal(at.sub, 'auth0|alice');
    assert.equal(at.client_id, 'logout-app');
    assert.equal(at.scope, 'api:read');
    assert.equal(at.exp - at.iat, 600);

    const refreshed = await fetch(idpDiscovery.token_endpoint, {
      method: 'POST',
      headers: { authorization: basic('logout-app', 'logout-secret'), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: json.refresh_token, resource: API }),
    });
    const body = await refreshed.json();
    assert.equal(refreshed.status, 200, JSON.stringify(body));
    const again = decodeJwt(body.access_token);
    assert.equal(again.sid, json.sid);
    assert.notEqual(again.jti, at.jti);

    // End this session (the next tests see only their own deliveries). The grant has
    // offline_access, so oidc-provider keeps it past logout (persistsLogout): the refresh
    // token still works, and its access tokens still carry the ended session's sid.
    const out = await control(idp.url, 'logout', { user: 'alice' });
    assert.equal(out.status, 200, JSON.stringify(out.json));
    const afterLogout = await fetch(idpDiscovery.token_endpoint, {
      method: 'POST',
      headers: { authorization: basic('logout-app', 'logout-secret'), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: json.refresh_token, resource: API }),
    });
    assert.equal(afterLogout.status, 200);
    assert.equal(decodeJwt((await afterLogout.json()).access_token).sid, json.sid);
  });

  test('logout: the receiver gets a real logout token, the control route answers it and the status', async () => {
    const login = (await control(idp.url, 'login', { user: 'bob' })).json;
    const before = rx.requests.length;
    const { status, json } = await control(idp.url, 'logout', { user: 'bob' });
    assert.equal(status, 200, JSON.stringify(json));
    assert.deepEqual(json.statuses, [200]);
    assert.deepEqual(json.sids, [login.sid]);
    assert.equal(json.logout_tokens.length, 1);
    assert.equal(json.errors, undefined);

    const received = rx.requests.slice(before);
    assert.equal(received.length, 1, 'one POST, done before the control route answered');
    const [request] = received;
    assert.equal(request.method, 'POST');
    assert.equal(request.url, '/backchannel-logout');
    assert.match(request.headers['content-type'], /^application\/x-www-form-urlencoded/);
    const form = new URLSearchParams(request.body);
    assert.deepEqual([...form.keys()], ['logout_token']);
    assert.equal(form.get('logout_token'), json.logout_tokens[0], 'the answer is the exact token sent');

    await checkLogoutToken(json.logout_tokens[0], { issuer: idp.url, jwks: idpJwks, sub: 'auth0|bob', sid: login.sid });

    // The session is gone: a second logout finds nothing.
    const again = await control(idp.url, 'logout', { user: 'bob' });
    assert.equal(again.status, 404);
  });

  test('logout of one session leaves the others; sessions can be picked by sid', async () => {
    const first = (await control(idp.url, 'login', { user: 'carol' })).json;
    const second = (await control(idp.url, 'login', { user: 'carol' })).json;
    const dave = (await control(idp.url, 'login', { user: 'dave' })).json;
    assert.notEqual(first.sid, second.sid, 'each login is its own session');

    const jtis = new Set();
    let out = await control(idp.url, 'logout', { sid: second.sid });
    assert.equal(out.status, 200, JSON.stringify(out.json));
    assert.equal(out.json.logout_tokens.length, 1);
    assert.equal(decodeJwt(out.json.logout_tokens[0]).sid, second.sid);
    jtis.add(decodeJwt(out.json.logout_tokens[0]).jti);

    out = await control(idp.url, 'logout', { user: 'carol' });
    assert.equal(out.status, 200, JSON.stringify(out.json));
    assert.deepEqual(out.json.sids, [first.sid]);
    assert.equal(decodeJwt(out.json.logout_tokens[0]).sid, first.sid);
    jtis.add(decodeJwt(out.json.logout_tokens[0]).jti);

    out = await control(idp.url, 'logout', { user: 'dave', sid: dave.sid });
    assert.equal(out.status, 200);
    const claims = await checkLogoutToken(out.json.logout_tokens[0], {
      issuer: idp.url, jwks: idpJwks, sub: 'auth0|dave', sid: dave.sid,
    });
    jtis.add(claims.jti);
    assert.equal(jtis.size, 3, 'every logout token has its own jti');
  });

  test('the receiver\'s status is reported, whatever it is', async () => {
    rx.status = 400;
    try {
      await control(idp.url, 'login', { user: 'erin' });
      const out = await control(idp.url, 'logout', { user: 'erin' });
      assert.equal(out.status, 200, JSON.stringify(out.json));
      assert.deepEqual(out.json.statuses, [400]);
      assert.equal(out.json.logout_tokens.length, 1);
    } finally {
      rx.status = 200;
    }
    assert.match(idp.stderr(), /back-channel logout of auth0\|erin .*expected 200 OK/);
  });

  test('bad control requests', async () => {
    assert.equal((await control(idp.url, 'login', {})).status, 400);
    assert.equal((await control(idp.url, 'login', { user: 'no spaces' })).status, 400);
    assert.equal((await control(idp.url, 'logout', {})).status, 400);
    assert.equal((await control(idp.url, 'logout', { user: 'nobody' })).status, 404);
    assert.equal((await control(idp.url, 'backchannel-logout-uri', { uri: 'ftp://127.0.0.1/x' })).status, 400);
    assert.equal((await control(idp.url, 'backchannel-logout-uri', { uri: 'http://127.0.0.1/x#f' })).status, 400);
    assert.equal((await control(idp.url, 'nothing', {})).status, 404);
    assert.equal((await fetch(`${idp.url}__control/login`)).status, 405);
  });

  test('POST /__control/backchannel-logout-uri sets and replaces the URI at runtime', async () => {
    const late = await launch(); // no --backchannel-logout-uri
    const a = await receiver();
    const b = await receiver();
    try {
      const lateJwks = await getJson(`${late.url}jwks`);
      // Without a URI, logout ends the session and sends nothing.
      await control(late.url, 'login', { user: 'frank' });
      let out = await control(late.url, 'logout', { user: 'frank' });
      assert.equal(out.status, 200);
      assert.deepEqual(out.json.logout_tokens, []);
      assert.deepEqual(out.json.statuses, []);

      let set = await control(late.url, 'backchannel-logout-uri', { uri: a.uri });
      assert.deepEqual(set, { status: 200, json: { uri: a.uri } });
      const login = (await control(late.url, 'login', { user: 'frank' })).json;
      set = await control(late.url, 'backchannel-logout-uri', { uri: b.uri });
      assert.equal(set.status, 200);
      out = await control(late.url, 'logout', { user: 'frank' });
      assert.deepEqual(out.json.statuses, [200]);
      assert.equal(a.requests.length, 0, 'the replaced URI gets nothing');
      assert.equal(b.requests.length, 1);
      assert.equal(new URLSearchParams(b.requests[0].body).get('logout_token'), out.json.logout_tokens[0]);
      await checkLogoutToken(out.json.logout_tokens[0], { issuer: late.url, jwks: lateJwks, sub: 'auth0|frank', sid: login.sid });

      // A receiver that is not there: no status, and the reason.
      await b.close();
      await control(late.url, 'login', { user: 'frank' });
      out = await control(late.url, 'logout', { user: 'frank' });
      assert.equal(out.status, 200);
      assert.deepEqual(out.json.statuses, [null]);
      assert.equal(out.json.errors.length, 1);
      assert.equal(typeof out.json.errors[0], 'string');
    } finally {
      await late.stop('SIGKILL');
      await a.close();
      await b.close();
    }
  });

  test('a bad --backchannel-logout-uri exits 2', async () => {
    const result = await new Promise((resolve) => {
      execFile(process.execPath, [ISSUER_JS, '--backchannel-logout-uri', 'not a url'], (err, stdout, stderr) =>
        resolve({ code: err?.code ?? 0, stdout, stderr }));
    });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--backchannel-logout-uri must be an absolute http\(s\) URL/);
    assert.equal(result.stdout, '');
  });

  test('stdout holds only the READY line', () => {
    assert.equal(idp.stdout(), `READY ${idp.url}\n`);
  });
});
