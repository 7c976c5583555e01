// Sender-constrained tokens through the Express middleware against the real
// authd: the `DPoP` header, the method and the URL reach VerifyToken, a
// DPoP-bound token passes only with a fresh proof by its key, and the cache
// never answers for a proof (a replayed proof is refused after a success).

import assert from "node:assert/strict";
import { createHash, generateKeyPairSync, randomUUID, sign } from "node:crypto";
import { once } from "node:events";
import { after, before, test } from "node:test";

import { AuthClient } from "@authd/client";
import { auth } from "@authd/client/express";
import express from "express";

import { Authd, Issuer, eventually, transport } from "./support.mjs";

const b64url = (bytes) => Buffer.from(bytes).toString("base64url");
const sha256 = (text) => createHash("sha256").update(text).digest();

/** A DPoP key: its public JWK, its RFC 7638 thumbprint, and a proof maker (RFC 9449 §4.2). */
function dpopKey() {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const { kty, crv, x, y } = publicKey.export({ format: "jwk" });
  const jwk = { crv, kty, x, y }; // the thumbprint's member order
  const proof = (htm, htu, token) => {
    const header = b64url(JSON.stringify({ typ: "dpop+jwt", alg: "ES256", jwk }));
    const claims = { jti: randomUUID(), htm, htu, iat: Math.floor(Date.now() / 1000), ath: b64url(sha256(token)) };
    const input = `${header}.${b64url(JSON.stringify(claims))}`;
    return `${input}.${b64url(sign("sha256", Buffer.from(input), { key: privateKey, dsaEncoding: "ieee-p1363" }))}`;
  };
  return { jkt: b64url(sha256(JSON.stringify(jwk))), proof };
}

let issuer;
let authd;
let client;
let server;
let base;

before(async () => {
  issuer = await Issuer.start();
  authd = await Authd.start(issuer.sessionsConfig("[watch]\nheartbeat_ms = 200\n"));
  client = new AuthClient({
    ...transport,
    endpoints: authd.uri,
    watchToken: await issuer.token({ permissions: "revocations:watch" }),
  });
  const app = express();
  app.set("env", "test");
  app.use(auth({ client }));
  app.get("/orders", (req, res) => res.json({ sub: req.auth.payload.sub }));
  server = app.listen(0, "127.0.0.1");
  await once(server, "listening");
  base = `http://127.0.0.1:${server.address().port}`;
  await eventually(() => client.cacheState === "answering", { what: "the cache answering" });
});

after(async () => {
  server?.close();
  client?.close();
  await authd?.stop();
  await issuer?.stop();
});

test("a DPoP-bound token passes with a fresh proof by its key, and never from the cache", async () => {
  const key = dpopKey();
  const token = await issuer.token({ claims: JSON.stringify({ cnf: { jkt: key.jkt } }) });
  const url = `${base}/orders`;
  const first = key.proof("GET", url, token);
  const ok = await fetch(url, { headers: { authorization: `DPoP ${token}`, dpop: first } });
  assert.equal(ok.status, 200, await ok.clone().text());
  assert.equal((await ok.json()).sub, "authd-test-client@clients");
  // Another request needs another proof: the same one again is a replay.
  const replayed = await fetch(url, { headers: { authorization: `DPoP ${token}`, dpop: first } });
  assert.equal(replayed.status, 401);
  assert.match(replayed.headers.get("www-authenticate"), /^DPoP realm="api", error="invalid_token"/);
  const again = await fetch(url, { headers: { authorization: `DPoP ${token}`, dpop: key.proof("GET", url, token) } });
  assert.equal(again.status, 200);
  assert.equal(client.cacheStats().entries, 0, "nothing sender-constrained is cached");
});

test("a bound token as a bearer token, or with a proof for another URL or key, is refused", async () => {
  const key = dpopKey();
  const token = await issuer.token({ claims: JSON.stringify({ cnf: { jkt: key.jkt } }) });
  const url = `${base}/orders`;
  const bearer = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(bearer.status, 401);
  assert.match(bearer.headers.get("www-authenticate"), /^Bearer realm="api", error="invalid_token"/);
  const elsewhere = await fetch(url, {
    headers: { authorization: `DPoP ${token}`, dpop: key.proof("GET", `${base}/other`, token) },
  });
  assert.equal(elsewhere.status, 401);
  const otherKey = await fetch(url, {
    headers: { authorization: `DPoP ${token}`, dpop: dpopKey().proof("GET", url, token) },
  });
  assert.equal(otherKey.status, 401);
});
