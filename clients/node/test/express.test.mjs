// The Express middleware against the real authd, through an app written as
// the README shows (examples/express-app.mjs): every answer of the table in
// src/express.ts, the cache in front, and 503 — never a pass-through — when
// authd does not answer.

import assert from "node:assert/strict";
import { once } from "node:events";
import { after, before, describe, test } from "node:test";

import { AuthClient } from "@authd/client";
import { auth, InvalidTokenError } from "@authd/client/express";
import express from "express";

import { app as readmeApp } from "../examples/express-app.mjs";
import { Authd, Issuer, eventually, freePort, transport } from "./support.mjs";

// Long enough for an HTTP round trip through the app on a loaded machine
// after SIGSTOP, while the cache still answers.
const MAX_SILENCE_MS = 2_000;

let issuer;
let authd;
let client;
const servers = [];

/** Serves `app` on an ephemeral loopback port (bound at once, no race); its base URL. */
async function serve(app) {
  app.set("env", "test"); // Express's handler: no stack traces on stderr
  const server = app.listen(0, "127.0.0.1");
  await once(server, "listening");
  servers.push(server);
  return `http://127.0.0.1:${server.address().port}`;
}

before(async () => {
  issuer = await Issuer.start();
  authd = await Authd.start(issuer.sessionsConfig("[watch]\nheartbeat_ms = 200\n"));
  client = new AuthClient({
    ...transport,
    endpoints: authd.uri,
    watchToken: await issuer.token({ permissions: "revocations:watch" }),
    cache: { maxSilenceMs: MAX_SILENCE_MS },
    timeoutMs: 500,
    retry: { maxAttempts: 1 },
  });
});

after(async () => {
  for (const server of servers) server.close();
  client?.close();
  await authd?.stop();
  await issuer?.stop();
});

const get = (url, token, init = {}) =>
  fetch(url, { ...init, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...init.headers } });

describe("the README's Express app", () => {
  let base;
  before(async () => {
    base = await serve(readmeApp({ client }));
  });

  test("a public route needs no token", async () => {
    assert.equal((await get(`${base}/healthz`)).status, 200);
  });

  test("a good token with the scope: 200 and req.auth.payload", async () => {
    const token = await issuer.token({ scope: "read:orders", sub: "auth0|express-alice" });
    const response = await get(`${base}/orders`, token);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { user: "auth0|express-alice", scope: "read:orders" });
  });

  test('no token: 401 with WWW-Authenticate: Bearer realm="api"', async () => {
    const response = await get(`${base}/orders`);
    assert.equal(response.status, 401);
    assert.equal(response.headers.get("www-authenticate"), 'Bearer realm="api"');
  });

  test("not a bearer header: 400 invalid_request", async () => {
    const response = await get(`${base}/orders`, undefined, { headers: { authorization: "Basic YTpi" } });
    assert.equal(response.status, 400);
    assert.match(response.headers.get("www-authenticate"), /^Bearer realm="api", error="invalid_request"/);
  });

  for (const [what, knobs] of [
    ["an expired token", { expires_in: "-60", scope: "read:orders" }],
    ["another audience", { audience: "https://other.test", scope: "read:orders" }],
  ]) {
    test(`${what}: 401 with error="invalid_token"`, async () => {
      const response = await get(`${base}/orders`, await issuer.token(knobs));
      assert.equal(response.status, 401);
      assert.match(
        response.headers.get("www-authenticate"),
        /^Bearer realm="api", error="invalid_token", error_description="[^"]+"$/,
      );
    });
  }

  test('a missing scope: 403 with error="insufficient_scope"', async () => {
    const token = await issuer.token({ scope: "read:orders" });
    const response = await get(`${base}/orders/7`, token, { method: "DELETE" });
    assert.equal(response.status, 403);
    assert.equal(
      response.headers.get("www-authenticate"),
      'Bearer realm="api", error="insufficient_scope", error_description="Insufficient Scope", scope="delete:orders"',
    );
  });
});

describe("auth() options and errors", () => {
  test("a repeated token's req.auth is shared and frozen: no handler changes what later requests see", async () => {
    const app = express();
    const seen = [];
    app.get("/me", auth({ client }), (req, res) => {
      seen.push(req.auth);
      const refused = [];
      for (const [what, change] of [
        ["payload", () => (req.auth.payload.sub = "auth0|mallory")],
        ["scopes", () => req.auth.verified.scopes.push("admin")],
        ["claims", () => (req.auth.verified.claims.extra = "added")],
        ["req.auth", () => (req.auth.token = "other")],
        ["header", () => (req.auth.header.alg = "none")],
      ]) {
        try {
          change();
        } catch (error) {
          if (error instanceof TypeError) refused.push(what);
        }
      }
      res.json({ sub: req.auth.payload.sub, scopes: req.auth.verified.scopes, refused });
    });
    const base = await serve(app);
    await eventually(() => client.cacheState === "answering");
    const token = await issuer.token({ scope: "read:orders", sub: "auth0|frozen" });
    // The usual spelling (the cache's fast path) and others (the full parse) alike.
    for (const authorization of [`Bearer ${token}`, `Bearer ${token}`, `bearer ${token}`, `Bearer  ${token}`]) {
      const response = await fetch(`${base}/me`, { headers: { authorization } });
      assert.equal(response.status, 200, authorization.slice(0, 8));
      assert.deepEqual(await response.json(), {
        sub: "auth0|frozen",
        scopes: ["read:orders"],
        refused: ["payload", "scopes", "claims", "req.auth", "header"],
      });
    }
    assert.equal(seen[0].token, token);
    // The first request asked authd; the cache answered the others, all with one req.auth.
    const [, ...hits] = seen;
    assert.ok(
      hits.every((a) => a === hits[0]),
      "one answer from the cache: one req.auth",
    );
    assert.deepEqual(seen[0].payload, hits[0].payload);
    // The JOSE header, decoded when read: the token's own, the same object each time.
    assert.deepEqual(hits[0].header, JSON.parse(Buffer.from(token.split(".")[0], "base64url").toString()));
    assert.equal(hits[0].header, hits[1].header);
  });

  test("requiredScopes in auth() are checked by authd: 403 insufficient_scope", async () => {
    const app = express();
    app.use(auth({ client, requiredScopes: ["write:orders"] }));
    app.get("/", (req, res) => res.send("in"));
    const base = await serve(app);
    const response = await get(base, await issuer.token({ scope: "read:orders" }));
    assert.equal(response.status, 403);
    assert.match(response.headers.get("www-authenticate"), /error="insufficient_scope".*scope="write:orders"/);
    assert.equal((await get(base, await issuer.token({ scope: "write:orders" }))).status, 200);
  });

  test("credentialsRequired: false lets a request without a token through, not a bad one", async () => {
    const app = express();
    app.use(auth({ client, credentialsRequired: false }));
    app.get("/", (req, res) => res.send(req.auth ? req.auth.payload.sub : "anonymous"));
    const base = await serve(app);
    assert.equal(await (await get(base)).text(), "anonymous");
    assert.equal((await get(base, "not-a-jwt")).status, 401);
  });

  test("the app's own error handler gets the error classes, with authd's reason", async () => {
    const app = express();
    app.use(auth({ client }));
    app.get("/", (req, res) => res.send("in"));
    app.use((err, req, res, next) => {
      void next;
      res
        .status(err.status)
        .json({ name: err.name, invalid: err instanceof InvalidTokenError, reason: err.cause?.reason });
    });
    const base = await serve(app);
    const response = await get(base, await issuer.token({ expires_in: "-60" }));
    assert.deepEqual(await response.json(), { name: "InvalidTokenError", invalid: true, reason: "TOKEN_EXPIRED" });
  });

  test("authd unreachable: 503, never a pass-through", async () => {
    const dead = new AuthClient({
      ...transport,
      endpoints: `http://127.0.0.1:${await freePort()}`,
      retry: { maxAttempts: 1 },
    });
    try {
      const app = express();
      app.use(auth({ client: dead }));
      app.get("/", (req, res) => res.send("in"));
      const base = await serve(app);
      const response = await get(base, await issuer.token({}));
      assert.equal(response.status, 503);
      assert.equal(response.headers.get("www-authenticate"), null);
    } finally {
      dead.close();
    }
  });

  test("a SIGSTOPped authd: answered from the cache within the bound, then 503", async () => {
    const app = express();
    app.use(auth({ client }));
    app.get("/", (req, res) => res.send("in"));
    const base = await serve(app);
    await eventually(() => client.cacheState === "answering", { what: "the cache answering" });
    const token = await issuer.token({});
    assert.equal((await get(base, token)).status, 200); // asks authd, cached
    await eventually(() => client.cached(token), { what: "the token cached" });
    await authd.pause();
    try {
      assert.equal((await get(base, token)).status, 200); // from memory
      await eventually(() => client.cacheState === "silent", { withinMs: 3 * MAX_SILENCE_MS, what: "silent" });
      assert.equal((await get(base, token)).status, 503);
      assert.equal((await get(base, await issuer.token({}))).status, 503);
    } finally {
      authd.resume();
    }
    await eventually(() => client.cacheState === "answering", { what: "answering again" });
    assert.equal((await get(base, token)).status, 200);
  });
});
