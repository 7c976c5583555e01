#!/usr/bin/env node
// A real OpenID Connect issuer (panva's oidc-provider) that issues sender-constrained
// JWT access tokens for authd's end-to-end tests:
//   - DPoP-bound (RFC 9449): cnf.jkt, for the client `dpop-client`
//   - certificate-bound (RFC 8705): cnf["x5t#S256"], for the client `mtls-client`
//
//   - user logins and OpenID Connect Back-Channel Logout 1.0 for the client `logout-app`,
//     driven by the loopback-only control routes /__control/login and /__control/logout
//
//   node tests/issuer-dpop/issuer.js [--port N] [--audience URL] [--require-dpop-nonce]
//                                    [--backchannel-logout-uri URL]
//
// Binds 127.0.0.1 only. Once listening it prints exactly one line to stdout,
//   READY http://127.0.0.1:PORT/
// whose URL is, character for character, the `iss` of every token it issues and the
// `issuer` of its discovery document. Everything else goes to stderr. SIGTERM / SIGINT
// stop it with exit code 0; bad options exit with code 2. See README.md.

import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

// oidc-provider prints its "NOTICE"s with console.info, i.e. to stdout, and stdout
// is reserved for the READY line. Send console.info/console.log to stderr before
// the provider is even imported (its module body can already print).
console.info = console.error;
console.log = console.error;
const { default: Provider, errors } = await import('oidc-provider');
const { exportJWK, generateKeyPair, calculateJwkThumbprint, decodeJwt } = await import('jose');

const DEFAULT_AUDIENCE = 'https://api.authd.test';
const SCOPE = 'api:read';
const TOKEN_TTL_SECONDS = 600;
const LOGOUT_CLIENT = { id: 'logout-app', secret: 'logout-secret' };
// Never dereferenced: the control route stops at the redirect to it and reads the code.
const LOGOUT_REDIRECT_URI = 'https://logout-app.authd.test/callback';
const USER_NAME = /^[A-Za-z0-9._@+-]{1,64}$/;

const USAGE = `usage: node issuer.js [options]
  --port N               port on 127.0.0.1, 0 = ephemeral (default 0)
  --audience URL         resource indicator = the access tokens' aud (default ${DEFAULT_AUDIENCE})
  --require-dpop-nonce   the token endpoint demands a DPoP nonce (answers use_dpop_nonce first)
  --backchannel-logout-uri URL
                         logout-app's backchannel_logout_uri (may be loopback; can also be set
                         later with POST /__control/backchannel-logout-uri)
  --verbose              log every request to stderr
  -h, --help             this text`;

function fail(message) {
  console.error(`issuer.js: ${message}\n${USAGE}`);
  process.exit(2);
}

function parseCli(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        port: { type: 'string' },
        audience: { type: 'string' },
        'require-dpop-nonce': { type: 'boolean' },
        'backchannel-logout-uri': { type: 'string' },
        verbose: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    fail(err.message);
  }
  if (values.help) {
    console.error(USAGE);
    process.exit(0);
  }
  let port = 0;
  if (values.port !== undefined) {
    if (!/^\d+$/.test(values.port) || Number(values.port) > 65535) fail('--port must be an integer between 0 and 65535');
    port = Number(values.port);
  }
  const audience = values.audience ?? DEFAULT_AUDIENCE;
  // A resource indicator is an absolute URI without a fragment (RFC 8707 §2).
  const parsed = URL.parse(audience);
  if (!parsed || parsed.hash || audience.includes('#')) fail('--audience must be an absolute URI without a fragment');
  const backchannelLogoutUri = values['backchannel-logout-uri'];
  if (backchannelLogoutUri !== undefined) {
    const problem = checkBackchannelLogoutUri(backchannelLogoutUri);
    if (problem) fail(`--backchannel-logout-uri ${problem}`);
  }
  return {
    port,
    audience,
    backchannelLogoutUri,
    requireDpopNonce: values['require-dpop-nonce'] ?? false,
    verbose: values.verbose ?? false,
  };
}

// The client certificate comes in the request header `x-client-cert`, PEM, URL-encoded
// (RFC 3986 percent-encoding). That is the convention of a TLS-terminating proxy in front of
// the issuer: nginx's `proxy_set_header X-Client-Cert $ssl_client_escaped_cert`, AWS ALB's
// X-Amzn-Mtls-Clientcert, Envoy's XFCC Cert="…" all pass the verified peer certificate
// URL-encoded. There is no proxy here: the test client (mint.js) sets the header itself, and
// the issuer believes it. That is fine for a loopback test issuer and never for a real one,
// where only the proxy may set the header.
function getCertificate(ctx) {
  const raw = ctx.get('x-client-cert');
  if (!raw) return undefined;
  let pem;
  try {
    pem = decodeURIComponent(raw);
    // Throws unless it is one well-formed certificate; oidc-provider takes the PEM
    // (or an X509Certificate) and hashes its DER for cnf["x5t#S256"].
    return new X509Certificate(pem);
  } catch {
    throw new errors.InvalidRequest('x-client-cert is not a URL-encoded PEM certificate');
  }
}

// OpenID Connect Back-Channel Logout 1.0 §2.2: an absolute http(s) URL without a fragment.
// Returns what is wrong with `uri`, or undefined.
function checkBackchannelLogoutUri(uri) {
  const parsed = typeof uri === 'string' ? URL.parse(uri) : null;
  if (!parsed || !['http:', 'https:'].includes(parsed.protocol)) return 'must be an absolute http(s) URL';
  if (uri.includes('#')) return 'must not have a fragment';
  return undefined;
}

function isLoopbackHost(hostname) {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

// A minimal cookie jar for the control routes' own browser: name → value, attributes
// ignored (every cookie goes to every path of the issuer; oidc-provider's cookie names
// do not collide across paths within one login), deletions honoured.
class CookieJar {
  #cookies = new Map();

  store(response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expires = attributes.map((a) => a.trim()).find((a) => /^expires=/i.test(a));
      const expired = expires && Date.parse(expires.slice(8)) <= Date.now();
      if (!value || expired) this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }

  header() {
    return [...this.#cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }
}

class ControlError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function startIssuer({
  port = 0,
  audience = DEFAULT_AUDIENCE,
  backchannelLogoutUri,
  requireDpopNonce = false,
  verbose = false,
} = {}) {
  // The issuer identifier contains the port, and the provider needs the identifier when it
  // is built, so bind first (with no request handler yet) and build the provider after.
  const server = createServer();
  server.keepAliveTimeout = 1000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const issuer = `http://127.0.0.1:${server.address().port}/`;

  // The signing key: RSA 2048, RS256, generated at every start, published at jwks_uri.
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  jwk.kid = await calculateJwkThumbprint(jwk);
  jwk.alg = 'RS256';
  jwk.use = 'sig';

  const resourceServer = {
    scope: SCOPE,
    audience,
    accessTokenTTL: TOKEN_TTL_SECONDS,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'RS256' } },
  };

  const common = {
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: SCOPE,
    // Basic (what mint.js uses) or the secret in the body.
    token_endpoint_auth_method: 'client_secret_basic',
  };

  // Every Back-Channel Logout POST oidc-provider makes, as the fetch hook saw it:
  // { uri, token, sid, status (null when there was no answer), error }.
  const logoutDeliveries = [];

  const provider = new Provider(issuer, {
    clients: [
      { ...common, client_id: 'dpop-client', client_secret: 'dpop-secret', dpop_bound_access_tokens: true },
      { ...common, client_id: 'mtls-client', client_secret: 'mtls-secret', tls_client_certificate_bound_access_tokens: true },
      {
        // A user-facing web app: code flow with refresh tokens, and back-channel logout
        // with sid in its logout tokens.
        client_id: LOGOUT_CLIENT.id,
        client_secret: LOGOUT_CLIENT.secret,
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: [LOGOUT_REDIRECT_URI],
        scope: `openid offline_access ${SCOPE}`,
        token_endpoint_auth_method: 'client_secret_basic',
        ...(backchannelLogoutUri ? { backchannel_logout_uri: backchannelLogoutUri } : {}),
        backchannel_logout_session_required: true,
      },
    ],
    // Users: any name logs in (as the login_hint the control route sends); the account id
    // and `sub` is `auth0|<name>`, shaped like an Auth0 database user's.
    async findAccount(ctx, id) {
      return { accountId: id, claims: () => ({ sub: id }) };
    },
    // RFC 9068 access tokens of logout-app's user logins carry the OIDC session id as `sid`
    // (the same value as the ID token's and the logout token's `sid`). The access token
    // knows it from the code or refresh token it was made from.
    extraTokenClaims(ctx, token) {
      if (token.kind === 'AccessToken' && token.clientId === LOGOUT_CLIENT.id && token.sid) {
        return { sid: token.sid };
      }
      return undefined;
    },
    // oidc-provider >= 9.7 gives every outgoing request (here: only back-channel logout POSTs)
    // an undici dispatcher that destroys connections to special-use addresses (loopback,
    // private networks), against SSRF. authd's receiver in a test listens on 127.0.0.1, so
    // this test issuer drops that dispatcher for loopback URLs only; anything else keeps it.
    // The hook also records each logout token it delivers and the receiver's status, for
    // POST /__control/logout.
    async fetch(url, options) {
      const target = new URL(url);
      const loopback = isLoopbackHost(target.hostname);
      const request = loopback ? { ...options, dispatcher: undefined } : options;
      const token = options.body instanceof URLSearchParams ? options.body.get('logout_token') : null;
      const delivery = token ? { uri: target.href, token, sid: safeClaims(token).sid, status: null, error: null } : null;
      if (delivery) logoutDeliveries.push(delivery);
      try {
        const response = await globalThis.fetch(url, request);
        if (delivery) delivery.status = response.status;
        await response.arrayBuffer(); // oidc-provider only reads the status; free the connection
        return response;
      } catch (err) {
        if (delivery) delivery.error = err.cause?.message ?? err.message;
        throw err;
      }
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    // The resource server's scope must be a scope the provider knows, or the clients'
    // `scope` metadata is invalid (which oidc-provider only reports at the first request).
    scopes: ['openid', 'offline_access', SCOPE],
    jwks: { keys: [jwk] },
    // client_credentials for dpop-client and mtls-client; the code flow for logout-app, whose
    // interactions (login, consent) issuer.js answers itself for the control routes.
    features: {
      backchannelLogout: { enabled: true },
      claimsParameter: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource(ctx, form) {
          ctx.body = `<!DOCTYPE html><html><body>${form}<button type="submit" form="op.logoutForm" value="yes" name="logout">Sign out</button></body></html>`;
        },
        postLogoutSuccessSource(ctx) {
          ctx.body = '<!DOCTYPE html><html><body>Signed out</body></html>';
        },
      },
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: false },
      dPoP: {
        enabled: true,
        // Nonces (RFC 9449 §8) are stateless, made with this secret. Offered whenever a
        // proof is too old, required for every token request with --require-dpop-nonce.
        nonceSecret: randomBytes(32),
        requireNonce: () => requireDpopNonce,
      },
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        // The clients authenticate with secrets; the certificate only binds the token,
        // so tlsClientAuth / selfSignedTlsClientAuth stay off and certificateAuthorized
        // is never asked.
        getCertificate,
      },
      // RFC 8707: `resource=<audience>` selects the resource server, whose settings make the
      // access token a JWT (RFC 9068, typ at+jwt) with that aud. A request without `resource`
      // gets the same audience (defaultResource), any other resource is invalid_target.
      resourceIndicators: {
        enabled: true,
        defaultResource: () => audience,
        useGrantedResource: () => true,
        getResourceServerInfo(ctx, resourceIndicator) {
          if (resourceIndicator !== audience) throw new errors.InvalidTarget();
          return resourceServer;
        },
      },
    },
    // The DPoP proof algorithms accepted at the token endpoint: all that npm `dpop` makes
    // (ES256, PS256, RS256, Ed25519) and EdDSA. oidc-provider's default is ES256, Ed25519, EdDSA.
    enabledJWA: {
      dPoPSigningAlgValues: ['ES256', 'PS256', 'RS256', 'Ed25519', 'EdDSA'],
    },
    ttl: {
      AccessToken: TOKEN_TTL_SECONDS,
      ClientCredentials: TOKEN_TTL_SECONDS,
      AuthorizationCode: 60,
      IdToken: TOKEN_TTL_SECONDS,
      RefreshToken: 24 * 3600,
      Interaction: 600,
      Session: 24 * 3600,
      Grant: 24 * 3600,
    },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    clientBasedCORS: () => false,
    // Error bodies stay JSON, without oidc-provider's HTML page.
    renderError(ctx, out) {
      ctx.type = 'json';
      ctx.body = out;
    },
  });

  // Plain http on loopback. oidc-provider 9 accepts an http:// issuer identifier (it only
  // requires a web URI), and nothing that this issuer uses insists on https: the https-only
  // checks are on client metadata that is not registered here (jwks_uri, client_id metadata
  // documents). logout-app's redirect URI is https and never dereferenced; the session and
  // interaction cookies of its logins are set without `secure` (oidc-provider's defaults), so
  // they work over http. `provider.proxy` stays false: the request's own scheme and Host make
  // the endpoint URLs (discovery's token_endpoint, the `htu` a DPoP proof must carry), so
  // they are http://127.0.0.1:PORT/... exactly as the client dials them, and no
  // X-Forwarded-* header can change them.
  provider.proxy = false;

  provider.on('server_error', (ctx, err) => console.error(`[issuer-dpop] server_error: ${err.stack || err}`));
  // oidc-provider answers a refused grant with a generic error_description ("grant request is
  // invalid") and keeps the reason ("DPoP proof JWT not provided", "mutual TLS client
  // certificate not provided", ...) in err.error_detail. A test issuer should say why: the
  // reason goes to stderr and, as the extra member `error_detail`, into the JSON error body
  // (the event fires after the body is set and before koa serializes it).
  provider.on('grant.error', (ctx, err) => {
    const detail = err.error_detail;
    console.error(
      `[issuer-dpop] token refused for ${ctx.oidc?.client?.clientId ?? '?'}: ${err.error}` +
        `${detail ? ` (${detail})` : ''}${err.error_description ? `: ${err.error_description}` : ''}`,
    );
    if (detail && ctx.body && typeof ctx.body === 'object' && ctx.body.error && !ctx.body.error_detail) {
      ctx.body.error_detail = detail;
    }
  });
  if (verbose) {
    provider.on('grant.success', (ctx) => console.error(`[issuer-dpop] token issued to ${ctx.oidc.client?.clientId}`));
  }

  // Static clients are validated lazily, at their first request; load them now so a
  // configuration mistake stops the start instead of failing every token request.
  for (const id of ['dpop-client', 'mtls-client', LOGOUT_CLIENT.id]) {
    if (!(await provider.Client.find(id))) throw new Error(`client ${id} did not load`);
  }

  provider.on('backchannel.error', (ctx, err, client, accountId, sid) =>
    console.error(`[issuer-dpop] back-channel logout of ${accountId} (sid ${sid}) to ${client.clientId}: ${err.message}`));

  const control = makeControl({ issuer, audience, provider, logoutDeliveries });
  const handler = provider.callback();
  server.on('request', (req, res) => {
    if (verbose) console.error(`[issuer-dpop] ${req.method} ${req.url}`);
    const path = req.url.split('?')[0];
    if (path.startsWith('/__control/')) control.route(req, res, path);
    else if (path.startsWith('/interaction/')) control.interaction(req, res);
    else handler(req, res);
  });

  return {
    url: issuer,
    audience,
    provider,
    close() {
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

function safeClaims(jwt) {
  try {
    return decodeJwt(jwt);
  } catch {
    return {};
  }
}

async function readJson(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new ControlError(413, 'body too large');
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text) return {};
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ControlError(400, 'the body is not JSON');
  }
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new ControlError(400, 'the body must be a JSON object');
  return body;
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

// The control routes (/__control/...) and the interaction endpoint (/interaction/UID) that
// oidc-provider sends the user agent to for login and consent. Both exist only in this
// loopback test issuer.
function makeControl({ issuer, audience, provider, logoutDeliveries }) {
  // The IdP sessions the control route opened: { user, sub, sid, jar }. The jar holds the
  // session cookie, as the user's browser would.
  const sessions = [];

  // One request of the control route's browser to the issuer itself; no redirects followed.
  async function browse(jar, url, init = {}) {
    const response = await fetch(new URL(url, issuer), {
      ...init,
      redirect: 'manual',
      signal: AbortSignal.timeout(10_000),
      headers: { ...init.headers, cookie: jar.header() },
    });
    jar.store(response);
    return response;
  }

  async function login(body) {
    const { user } = body;
    if (typeof user !== 'string' || !USER_NAME.test(user)) {
      throw new ControlError(400, `"user" must match ${USER_NAME}`);
    }
    const jar = new CookieJar();
    const state = randomBytes(16).toString('base64url');
    const nonce = randomBytes(16).toString('base64url');
    const verifier = randomBytes(32).toString('base64url');
    const authorize = new URL('auth', issuer);
    authorize.search = new URLSearchParams({
      client_id: LOGOUT_CLIENT.id,
      response_type: 'code',
      redirect_uri: LOGOUT_REDIRECT_URI,
      // offline_access (a refresh token) needs prompt=consent (OpenID Connect Core §11).
      scope: `openid offline_access ${SCOPE}`,
      prompt: 'consent',
      // oidc-provider puts the session's sid into the code (so into the ID and access tokens)
      // when the client has a backchannel_logout_uri, or when the ID token's sid is asked
      // for. Ask, so that a login before the URI is set (POST
      // /__control/backchannel-logout-uri) has a sid too.
      claims: JSON.stringify({ id_token: { sid: null } }),
      resource: audience,
      login_hint: user,
      state,
      nonce,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
    });

    // The browser: /auth → /interaction/UID (login) → /auth/UID → /interaction/UID (consent)
    // → /auth/UID → the redirect URI with the code.
    let url = authorize.href;
    let code;
    for (let hop = 0; hop < 10 && !code; hop += 1) {
      const response = await browse(jar, url);
      const location = response.headers.get('location');
      if (response.status < 300 || response.status >= 400 || !location) {
        throw new ControlError(502, `GET ${url}: HTTP ${response.status} without a redirect: ${(await response.text()).slice(0, 500)}`);
      }
      await response.arrayBuffer();
      const next = new URL(location, url);
      if (next.href.startsWith(LOGOUT_REDIRECT_URI)) {
        const params = next.searchParams;
        if (params.get('error')) {
          throw new ControlError(502, `the authorization failed: ${params.get('error')}: ${params.get('error_description')}`);
        }
        if (params.get('state') !== state) throw new ControlError(502, 'the authorization response has the wrong state');
        code = params.get('code');
      } else {
        url = next.href;
      }
    }
    if (!code) throw new ControlError(502, 'no authorization code after 10 redirects');

    const tokenResponse = await fetch(new URL('token', issuer), {
      method: 'POST',
      signal: AbortSignal.timeout(10_000),
      headers: {
        authorization: `Basic ${Buffer.from(`${LOGOUT_CLIENT.id}:${LOGOUT_CLIENT.secret}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code,
        redirect_uri: LOGOUT_REDIRECT_URI,
        code_verifier: verifier,
        resource: audience,
      }),
    });
    const tokens = await tokenResponse.json();
    if (!tokenResponse.ok) throw new ControlError(502, `the code exchange failed: HTTP ${tokenResponse.status} ${JSON.stringify(tokens)}`);
    const idClaims = safeClaims(tokens.id_token);
    const atClaims = safeClaims(tokens.access_token);
    if (idClaims.nonce !== nonce) throw new ControlError(502, 'the ID token has the wrong nonce');
    if (!idClaims.sid || atClaims.sid !== idClaims.sid) {
      throw new ControlError(502, `the access token's sid ${atClaims.sid} is not the ID token's ${idClaims.sid}`);
    }
    sessions.push({ user, sub: idClaims.sub, sid: idClaims.sid, jar });
    console.error(`[issuer-dpop] ${user} logged in to ${LOGOUT_CLIENT.id} (sub ${idClaims.sub}, sid ${idClaims.sid})`);
    return {
      access_token: tokens.access_token,
      id_token: tokens.id_token,
      ...(tokens.refresh_token ? { refresh_token: tokens.refresh_token } : {}),
      sid: idClaims.sid,
      sub: idClaims.sub,
    };
  }

  // RP-initiated logout through the end_session endpoint, as a browser does it: GET
  // /session/end, then POST its form (xsrf, logout=yes) to /session/end/confirm. oidc-provider
  // sends the back-channel logout tokens and awaits them before it answers the POST.
  async function endSession(session) {
    const start = new URL('session/end', issuer);
    start.search = new URLSearchParams({ client_id: LOGOUT_CLIENT.id });
    const page = await browse(session.jar, start.href);
    const html = await page.text();
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(html)?.[1];
    if (page.status !== 200 || !xsrf) {
      throw new ControlError(502, `GET ${start.href}: HTTP ${page.status}, no logout form: ${html.slice(0, 500)}`);
    }
    const first = logoutDeliveries.length;
    const confirm = await browse(session.jar, new URL('session/end/confirm', issuer).href, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ xsrf, logout: 'yes' }),
    });
    const text = await confirm.text();
    if (confirm.status !== 303) throw new ControlError(502, `POST /session/end/confirm: HTTP ${confirm.status}: ${text.slice(0, 500)}`);
    console.error(`[issuer-dpop] ${session.user} logged out (sid ${session.sid})`);
    return logoutDeliveries.slice(first).filter((d) => d.sid === session.sid);
  }

  async function logout(body) {
    const { user, sid } = body;
    if (user !== undefined && (typeof user !== 'string' || !USER_NAME.test(user))) {
      throw new ControlError(400, `"user" must match ${USER_NAME}`);
    }
    if (sid !== undefined && typeof sid !== 'string') throw new ControlError(400, '"sid" must be a string');
    if (user === undefined && sid === undefined) throw new ControlError(400, 'give "user", "sid" or both');
    const chosen = sessions.filter((s) => (user === undefined || s.user === user) && (sid === undefined || s.sid === sid));
    if (!chosen.length) throw new ControlError(404, 'no such session (log in with POST /__control/login first)');
    const deliveries = [];
    // One at a time, so the logout tokens of one session are told apart from another's.
    for (const session of chosen) {
      sessions.splice(sessions.indexOf(session), 1);
      deliveries.push(...(await endSession(session)));
    }
    const answer = {
      logout_tokens: deliveries.map((d) => d.token),
      statuses: deliveries.map((d) => d.status),
      sids: chosen.map((s) => s.sid),
    };
    if (deliveries.some((d) => d.error)) answer.errors = deliveries.map((d) => d.error);
    return answer;
  }

  async function setBackchannelLogoutUri(body) {
    const { uri } = body;
    if (uri !== null) {
      const problem = checkBackchannelLogoutUri(uri);
      if (problem) throw new ControlError(400, `"uri" ${problem} (or null to remove it)`);
    }
    // Static clients are built once and cached by Client.find; the logout action reads
    // client.backchannelLogoutUri when a session ends, so replacing it on that instance
    // takes effect at the next logout.
    const client = await provider.Client.find(LOGOUT_CLIENT.id);
    client.backchannelLogoutUri = uri ?? undefined;
    console.error(`[issuer-dpop] ${LOGOUT_CLIENT.id}'s backchannel_logout_uri is now ${uri}`);
    return { uri };
  }

  const routes = {
    '/__control/login': login,
    '/__control/logout': logout,
    '/__control/backchannel-logout-uri': setBackchannelLogoutUri,
  };

  return {
    async route(req, res, path) {
      try {
        const action = routes[path];
        if (!action) throw new ControlError(404, `no control route ${path}`);
        if (req.method !== 'POST') throw new ControlError(405, 'POST only');
        sendJson(res, 200, await action(await readJson(req)));
      } catch (err) {
        if (!(err instanceof ControlError)) console.error(`[issuer-dpop] ${path}: ${err.stack || err}`);
        if (err instanceof ControlError) console.error(`[issuer-dpop] ${path}: ${err.status} ${err.message}`);
        if (!res.headersSent) sendJson(res, err.status ?? 500, { error: err.message });
      }
    },

    // Answers each prompt oidc-provider asks through its interaction API: login as the
    // login_hint's user (account id auth0|<name>), then consent to what the client asked
    // (a Grant with the missing OIDC scopes and the resource's scopes).
    async interaction(req, res) {
      try {
        const details = await provider.interactionDetails(req, res);
        const { prompt, params, session } = details;
        let result;
        if (prompt.name === 'login') {
          const user = params.login_hint;
          if (typeof user !== 'string' || !USER_NAME.test(user)) throw new ControlError(400, 'login needs a login_hint naming the user');
          result = { login: { accountId: `auth0|${user}` } };
        } else if (prompt.name === 'consent') {
          const grant = details.grantId
            ? await provider.Grant.find(details.grantId)
            : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
          const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
          if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
          if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
          for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
            grant.addResourceScope(indicator, scopes.join(' '));
          }
          result = { consent: { grantId: await grant.save() } };
        } else {
          throw new ControlError(400, `unexpected prompt ${prompt.name}`);
        }
        await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
      } catch (err) {
        console.error(`[issuer-dpop] interaction: ${err.stack || err}`);
        if (!res.headersSent) sendJson(res, err.status ?? err.statusCode ?? 500, { error: err.message });
      }
    },
  };
}

async function main() {
  const options = parseCli(process.argv.slice(2));
  let issuer;
  try {
    issuer = await startIssuer(options);
  } catch (err) {
    console.error(`issuer.js: cannot start: ${err.stack || err.message}`);
    process.exit(1);
  }

  let stopping = false;
  const stop = async (signal) => {
    if (stopping) return;
    stopping = true;
    console.error(`[issuer-dpop] ${signal}: stopping`);
    await issuer.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  console.error(
    `[issuer-dpop] listening on ${issuer.url} (audience ${issuer.audience}, clients dpop-client, mtls-client and logout-app` +
      `${options.requireDpopNonce ? ', DPoP nonce required' : ''})`,
  );
  // The one and only stdout line. process.stdout.write, not console.log, which goes to stderr.
  process.stdout.write(`READY ${issuer.url}\n`);
}

main();
