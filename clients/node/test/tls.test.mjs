// TLS and mutual TLS against the real authd: the client certificate names
// the caller (a SPIFFE ID), authd's [[callers]] grants it WatchRevocations,
// so the cache is on with no service token. Certificates are made here with
// the openssl command line (an EC P-256 CA, a server certificate for
// 127.0.0.1, a client certificate whose only URI SAN is a SPIFFE ID).

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";

import { AuthClient, Code, Reasons } from "@authd/client";

import { Authd, Issuer, eventually, rejection, transport } from "./support.mjs";

const SPIFFE = "spiffe://prod.test/ns/clients/sa/node";
let dir;
let issuer;
let authd;
const pem = (name) => readFileSync(path.join(dir, name));

function openssl(...args) {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
}

/** A key and a certificate signed by the CA, with `san` as subjectAltName. */
function leaf(name, san, usage) {
  openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${name}.key`);
  openssl("req", "-new", "-key", `${name}.key`, "-subj", `/CN=${name}`, "-out", `${name}.csr`);
  writeFileSync(
    path.join(dir, `${name}.ext`),
    `subjectAltName=${san}\nextendedKeyUsage=${usage}\nbasicConstraints=CA:FALSE\n`,
  );
  openssl(
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    `${name}.ext`,
    "-out",
    `${name}.pem`,
  );
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "authd-node-tls-"));
  openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key");
  openssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=authd node test CA", "-days", "2", "-out", "ca.pem");
  leaf("server", "DNS:localhost,IP:127.0.0.1", "serverAuth");
  leaf("client", `URI:${SPIFFE}`, "clientAuth");
  issuer = await Issuer.start();
  authd = await Authd.start(
    issuer.sessionsConfig("[watch]\nheartbeat_ms = 200\n") +
      `[server.tls]\ncert_file = "${path.join(dir, "server.pem")}"\nkey_file = "${path.join(dir, "server.key")}"\n` +
      `client_ca_file = "${path.join(dir, "ca.pem")}"\nclient_auth = "optional"\n` +
      `[[callers]]\nidentities = ["${SPIFFE}"]\nrpcs = ["/auth.v1.AuthService/WatchRevocations"]\n`,
  );
});

after(async () => {
  await authd?.stop();
  await issuer?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const endpoint = () => `https://127.0.0.1:${authd.port}`;

test("mutual TLS: verifies, and the certificate's caller may watch, so the cache answers", async () => {
  const client = new AuthClient({
    ...transport,
    endpoints: endpoint(),
    tls: { ca: pem("ca.pem"), cert: pem("client.pem"), key: pem("client.key"), servername: "localhost" },
    cache: { maxSilenceMs: 1_000 },
  }).watch();
  try {
    const token = await issuer.token({});
    assert.equal((await client.verifyToken(token)).subject, "authd-test-client@clients");
    await eventually(() => client.cacheState === "answering", { what: "the cache answering over mTLS" });
    await client.verifyToken(token);
    assert.ok(client.cached(token));
  } finally {
    client.close();
  }
});

test("TLS without a client certificate: the handshake succeeds, and authd's policy refuses the anonymous caller", async () => {
  const client = new AuthClient({
    ...transport,
    endpoints: endpoint(),
    tls: { ca: pem("ca.pem"), servername: "localhost" },
    cache: false,
  });
  try {
    const error = await rejection(client.verifyToken(await issuer.token({})));
    assert.equal(error.code, Code.PERMISSION_DENIED);
    assert.equal(error.reason, Reasons.CALLER_NOT_TRUSTED);
    assert.equal(error.metadata.caller, "anonymous");
  } finally {
    client.close();
  }
});

test("a CA that did not sign authd's certificate: UNAVAILABLE, no reason", async () => {
  const client = new AuthClient({
    ...transport,
    endpoints: endpoint(),
    tls: {},
    cache: false,
    retry: { maxAttempts: 1 },
  });
  try {
    const error = await rejection(client.verifyToken(await issuer.token({})));
    assert.equal(error.code, Code.UNAVAILABLE);
    assert.equal(error.reason, undefined);
  } finally {
    client.close();
  }
});

test("over mTLS a trusted RPC the policy does not grant is CALLER_NOT_TRUSTED", async () => {
  const client = new AuthClient({
    ...transport,
    endpoints: endpoint(),
    tls: { ca: pem("ca.pem"), cert: pem("client.pem"), key: pem("client.key"), servername: "localhost" },
    cache: false,
  });
  try {
    const error = await rejection(client.revokeSession({ userId: "auth0|x" }));
    assert.equal(error.reason, Reasons.CALLER_NOT_TRUSTED);
    assert.equal(error.metadata.caller, SPIFFE);
  } finally {
    client.close();
  }
});
