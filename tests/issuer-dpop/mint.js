#!/usr/bin/env node
// Gets one sender-constrained access token from issuer.js's real token endpoint and, for
// DPoP, makes DPoP proofs for a resource request with the same key.
//
//   node tests/issuer-dpop/mint.js --issuer URL --kind dpop [--htm GET] [--htu URL] [--proofs N] [--alg ES256]
//   node tests/issuer-dpop/mint.js --issuer URL --kind mtls --cert PEMFILE
//
// Prints one JSON object on stdout:
//   dpop: {"access_token", "token_type", "jkt", "proofs": [...]}
//   mtls: {"access_token", "token_type", "x5t#S256"}
// Before printing, the token's signature (against the issuer's JWKS), iss, aud, typ and cnf
// are checked. Any failure: a message on stderr and exit code 1; bad options: exit code 2.

import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { calculateThumbprint, generateKeyPair, generateProof } from 'dpop';
import { calculateJwkThumbprint, createLocalJWKSet, decodeJwt, decodeProtectedHeader, exportJWK, jwtVerify } from 'jose';

const DEFAULT_AUDIENCE = 'https://api.authd.test';
const DPOP_ALGS = ['ES256', 'PS256', 'RS256', 'Ed25519']; // what npm `dpop` can make
const CLIENTS = {
  dpop: { id: 'dpop-client', secret: 'dpop-secret' },
  mtls: { id: 'mtls-client', secret: 'mtls-secret' },
};
const TIMEOUT_MS = 10_000;

const USAGE = `usage: node mint.js --issuer URL --kind dpop|mtls [options]
  --issuer URL          the issuer, as issuer.js printed it (READY URL)
  --kind dpop|mtls      DPoP-bound (cnf.jkt) or certificate-bound (cnf x5t#S256) token
  --cert PEMFILE        mtls: the client certificate (PEM; other PEM blocks in the file are ignored)
  --audience URL        the resource indicator (default ${DEFAULT_AUDIENCE})
  --htm METHOD          dpop: the proofs' htm (default GET)
  --htu URL             dpop: the proofs' htu (default: the audience)
  --proofs N            dpop: how many proofs to make, 0..1000 (default 1)
  --alg ALG             dpop: ${DPOP_ALGS.join(', ')} (default ES256)
  --client-id ID        default dpop-client / mtls-client
  --client-secret S     default dpop-secret / mtls-secret
  -h, --help            this text`;

class Failure extends Error {}

function usage(message) {
  console.error(`mint.js: ${message}\n${USAGE}`);
  process.exit(2);
}

function parseCli(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        issuer: { type: 'string' },
        kind: { type: 'string' },
        cert: { type: 'string' },
        audience: { type: 'string' },
        htm: { type: 'string' },
        htu: { type: 'string' },
        proofs: { type: 'string' },
        alg: { type: 'string' },
        'client-id': { type: 'string' },
        'client-secret': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    usage(err.message);
  }
  if (values.help) {
    console.error(USAGE);
    process.exit(0);
  }
  if (!values.issuer) usage('--issuer is required');
  const issuerUrl = URL.parse(values.issuer);
  if (!issuerUrl || !['http:', 'https:'].includes(issuerUrl.protocol)) usage('--issuer must be an http(s) URL');
  if (!Object.hasOwn(CLIENTS, values.kind ?? '')) usage('--kind must be dpop or mtls');
  const kind = values.kind;

  const dpopOnly = ['htm', 'htu', 'proofs', 'alg'].filter((name) => values[name] !== undefined);
  if (kind === 'mtls') {
    if (dpopOnly.length) usage(`--${dpopOnly[0]} is for --kind dpop`);
    if (!values.cert) usage('--kind mtls needs --cert PEMFILE');
  } else if (values.cert !== undefined) {
    usage('--cert is for --kind mtls');
  }

  let proofs = 1;
  if (values.proofs !== undefined) {
    if (!/^\d+$/.test(values.proofs) || Number(values.proofs) > 1000) usage('--proofs must be an integer between 0 and 1000');
    proofs = Number(values.proofs);
  }
  const alg = values.alg ?? 'ES256';
  if (!DPOP_ALGS.includes(alg)) usage(`--alg must be one of ${DPOP_ALGS.join(', ')}`);
  const audience = values.audience ?? DEFAULT_AUDIENCE;
  const htu = values.htu ?? audience;
  if (!URL.parse(htu)) usage('--htu must be an absolute URL');
  const htm = values.htm ?? 'GET';
  if (!/^[A-Za-z]+$/.test(htm)) usage('--htm must be an HTTP method');

  return {
    issuer: values.issuer,
    kind,
    certFile: values.cert,
    audience,
    htm,
    htu,
    proofs,
    alg,
    clientId: values['client-id'] ?? CLIENTS[kind].id,
    clientSecret: values['client-secret'] ?? CLIENTS[kind].secret,
  };
}

async function getJson(url) {
  let response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS), headers: { accept: 'application/json' } });
  } catch (err) {
    throw new Failure(`GET ${url}: ${err.cause?.message ?? err.message}`);
  }
  if (!response.ok) throw new Failure(`GET ${url}: HTTP ${response.status}: ${await response.text()}`);
  try {
    return await response.json();
  } catch {
    throw new Failure(`GET ${url}: the answer is not JSON`);
  }
}

// OpenID Connect Discovery 1.0 §4: the issuer without a trailing slash, then the well-known path.
async function discover(issuer) {
  const url = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  const metadata = await getJson(url);
  if (metadata.issuer !== issuer) {
    throw new Failure(`discovery at ${url} names the issuer ${JSON.stringify(metadata.issuer)}, not ${JSON.stringify(issuer)}`);
  }
  for (const name of ['token_endpoint', 'jwks_uri']) {
    if (typeof metadata[name] !== 'string') throw new Failure(`discovery at ${url} has no ${name}`);
  }
  return metadata;
}

// RFC 6749 §2.3.1: the id and secret are form-urlencoded before they are joined for Basic.
function basic(id, secret) {
  const encode = (value) => encodeURIComponent(value).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${encode(id)}:${encode(secret)}`).toString('base64')}`;
}

async function tokenRequest(endpoint, options, extraHeaders) {
  const body = new URLSearchParams({ grant_type: 'client_credentials', resource: options.audience });
  let response;
  try {
    response = await fetch(endpoint, {
      method: 'POST',
      signal: AbortSignal.timeout(TIMEOUT_MS),
      headers: {
        authorization: basic(options.clientId, options.clientSecret),
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
        ...extraHeaders,
      },
      body,
    });
  } catch (err) {
    throw new Failure(`POST ${endpoint}: ${err.cause?.message ?? err.message}`);
  }
  const text = await response.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Failure(`POST ${endpoint}: HTTP ${response.status}, not JSON: ${text.slice(0, 500)}`);
  }
  return { response, json };
}

function describeError(status, json) {
  const detail = json.error_detail ? ` (${json.error_detail})` : '';
  return `HTTP ${status} ${json.error ?? '?'}: ${json.error_description ?? ''}${detail}`;
}

// Obtains a DPoP-bound token. The first proof has no nonce; if the token endpoint answers
// use_dpop_nonce with a DPoP-Nonce header (RFC 9449 §8), one more proof carries that nonce.
async function mintDpop(metadata, options) {
  const keyPair = await generateKeyPair(options.alg);
  const endpoint = metadata.token_endpoint;
  let nonce;
  let attempt = 0;
  for (;;) {
    attempt += 1;
    const proof = await generateProof(keyPair, endpoint, 'POST', nonce);
    const { response, json } = await tokenRequest(endpoint, options, { dpop: proof });
    if (response.ok) return { keyPair, body: json };
    const offered = response.headers.get('dpop-nonce');
    if (attempt === 1 && response.status === 400 && json.error === 'use_dpop_nonce' && offered) {
      console.error(`mint.js: the token endpoint asked for a DPoP nonce; retrying with it`);
      nonce = offered;
      continue;
    }
    throw new Failure(`the token request failed: ${describeError(response.status, json)}`);
  }
}

function readCertificate(file) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Failure(`cannot read ${file}: ${err.message}`);
  }
  const pem = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)?.[0];
  if (!pem) throw new Failure(`${file} has no PEM certificate`);
  try {
    return { pem: `${pem}\n`, certificate: new X509Certificate(pem) };
  } catch (err) {
    throw new Failure(`${file}: not a valid certificate: ${err.message}`);
  }
}

async function mintMtls(metadata, options) {
  const { pem, certificate } = readCertificate(options.certFile);
  // What a TLS-terminating proxy would pass on: the PEM, URL-encoded.
  const { response, json } = await tokenRequest(metadata.token_endpoint, options, {
    'x-client-cert': encodeURIComponent(pem),
  });
  if (!response.ok) throw new Failure(`the token request failed: ${describeError(response.status, json)}`);
  // RFC 8705 §3.1: base64url(SHA-256(DER of the certificate)).
  const x5t = createHash('sha256').update(certificate.raw).digest('base64url');
  return { body: json, x5t };
}

// Verifies the access token as a resource server would, and returns its claims.
async function checkToken(token, metadata, options) {
  if (typeof token !== 'string' || token.split('.').length !== 3) {
    throw new Failure(`the token response has no JWT access_token: ${JSON.stringify(token)?.slice(0, 200)}`);
  }
  let header;
  try {
    header = decodeProtectedHeader(token);
    decodeJwt(token);
  } catch (err) {
    throw new Failure(`the access token is not a JWT: ${err.message}`);
  }
  if (header.typ !== 'at+jwt') throw new Failure(`the access token's typ is ${JSON.stringify(header.typ)}, not "at+jwt"`);
  const jwks = await getJson(metadata.jwks_uri);
  try {
    const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), {
      issuer: options.issuer,
      audience: options.audience,
      typ: 'at+jwt',
    });
    return payload;
  } catch (err) {
    throw new Failure(`the access token does not verify against ${metadata.jwks_uri}: ${err.code ?? ''} ${err.message}`);
  }
}

async function main() {
  const options = parseCli(process.argv.slice(2));
  const metadata = await discover(options.issuer);

  if (options.kind === 'dpop') {
    const { keyPair, body } = await mintDpop(metadata, options);
    if (body.token_type !== 'DPoP') throw new Failure(`token_type is ${JSON.stringify(body.token_type)}, not "DPoP"`);
    const claims = await checkToken(body.access_token, metadata, options);
    // RFC 7638 thumbprint, two ways: npm dpop's and jose's over the exported public JWK.
    const jkt = await calculateThumbprint(keyPair.publicKey);
    const viaJose = await calculateJwkThumbprint(await exportJWK(keyPair.publicKey), 'sha256');
    if (jkt !== viaJose) throw new Failure(`dpop's thumbprint ${jkt} differs from jose's ${viaJose}`);
    if (claims.cnf?.jkt !== jkt) {
      throw new Failure(`the access token's cnf is ${JSON.stringify(claims.cnf)}, not {"jkt":"${jkt}"}`);
    }
    const proofs = [];
    for (let i = 0; i < options.proofs; i += 1) {
      proofs.push(await generateProof(keyPair, options.htu, options.htm, undefined, body.access_token));
    }
    process.stdout.write(`${JSON.stringify({ access_token: body.access_token, token_type: body.token_type, jkt, proofs })}\n`);
  } else {
    const { body, x5t } = await mintMtls(metadata, options);
    if (body.token_type !== 'Bearer') throw new Failure(`token_type is ${JSON.stringify(body.token_type)}, not "Bearer"`);
    const claims = await checkToken(body.access_token, metadata, options);
    if (claims.cnf?.['x5t#S256'] !== x5t) {
      throw new Failure(`the access token's cnf is ${JSON.stringify(claims.cnf)}, not {"x5t#S256":"${x5t}"}`);
    }
    process.stdout.write(
      `${JSON.stringify({ access_token: body.access_token, token_type: body.token_type, 'x5t#S256': x5t })}\n`,
    );
  }
}

main().catch((err) => {
  console.error(`mint.js: ${err instanceof Failure ? err.message : err.stack || err}`);
  process.exit(1);
});
