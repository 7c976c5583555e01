#!/usr/bin/env node
// A real OpenID Connect issuer (panva's oidc-provider) that issues sender-constrained
// JWT access tokens for authd's end-to-end tests:
//   - DPoP-bound (RFC 9449): cnf.jkt, for the client `dpop-client`
//   - certificate-bound (RFC 8705): cnf["x5t#S256"], for the client `mtls-client`
//
//   node tests/issuer-dpop/issuer.js [--port N] [--audience URL] [--require-dpop-nonce]
//
// Binds 127.0.0.1 only. Once listening it prints exactly one line to stdout,
//   READY http://127.0.0.1:PORT/
// whose URL is, character for character, the `iss` of every token it issues and the
// `issuer` of its discovery document. Everything else goes to stderr. SIGTERM / SIGINT
// stop it with exit code 0; bad options exit with code 2. See README.md.

import { randomBytes, X509Certificate } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

// oidc-provider prints its "NOTICE"s with console.info, i.e. to stdout, and stdout
// is reserved for the READY line. Send console.info/console.log to stderr before
// the provider is even imported (its module body can already print).
console.info = console.error;
console.log = console.error;
const { default: Provider, errors } = await import('oidc-provider');
const { exportJWK, generateKeyPair, calculateJwkThumbprint } = await import('jose');

const DEFAULT_AUDIENCE = 'https://api.authd.test';
const SCOPE = 'api:read';
const TOKEN_TTL_SECONDS = 600;

const USAGE = `usage: node issuer.js [options]
  --port N               port on 127.0.0.1, 0 = ephemeral (default 0)
  --audience URL         resource indicator = the access tokens' aud (default ${DEFAULT_AUDIENCE})
  --require-dpop-nonce   the token endpoint demands a DPoP nonce (answers use_dpop_nonce first)
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
  return {
    port,
    audience,
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

async function startIssuer({ port = 0, audience = DEFAULT_AUDIENCE, requireDpopNonce = false, verbose = false } = {}) {
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

  const provider = new Provider(issuer, {
    clients: [
      { ...common, client_id: 'dpop-client', client_secret: 'dpop-secret', dpop_bound_access_tokens: true },
      { ...common, client_id: 'mtls-client', client_secret: 'mtls-secret', tls_client_certificate_bound_access_tokens: true },
    ],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    // The resource server's scope must be a scope the provider knows, or the clients'
    // `scope` metadata is invalid (which oidc-provider only reports at the first request).
    scopes: [SCOPE],
    jwks: { keys: [jwk] },
    // Only client_credentials is used; no user ever logs in, so no interactions and no accounts.
    features: {
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
  // requires a web URI), and nothing that this client_credentials-only issuer uses insists on
  // https: the https-only checks are on client metadata that is not registered here
  // (redirect_uris of web clients, jwks_uri, client_id metadata documents) and on cookies,
  // which are never set. `provider.proxy` stays false: the request's own scheme and Host make
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
  for (const id of ['dpop-client', 'mtls-client']) {
    if (!(await provider.Client.find(id))) throw new Error(`client ${id} did not load`);
  }

  const handler = provider.callback();
  server.on('request', (req, res) => {
    if (verbose) console.error(`[issuer-dpop] ${req.method} ${req.url}`);
    handler(req, res);
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
    `[issuer-dpop] listening on ${issuer.url} (audience ${issuer.audience}, clients dpop-client and mtls-client` +
      `${options.requireDpopNonce ? ', DPoP nonce required' : ''})`,
  );
  // The one and only stdout line. process.stdout.write, not console.log, which goes to stderr.
  process.stdout.write(`READY ${issuer.url}\n`);
}

main();
