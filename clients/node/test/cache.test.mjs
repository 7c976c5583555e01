// The revocation-aware cache against the real authd: repeated tokens come
// from memory; a revocation heard on WatchRevocations refuses a warm entry
// within the bound; a silent stream (SIGSTOPped authd) stops the cache and
// calls fail closed; a restarted authd is watched again from the cursor;
// without watch permission there is no cache, said once.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { AuthClient, Code, Reasons } from "@authd/client";

import { Authd, Issuer, eventually, rejection, transport } from "./support.mjs";

/** authd's heartbeat here; the cache's bound is max(maxSilenceMs, 3 heartbeats). */
const HEARTBEAT_MS = 200;
const MAX_SILENCE_MS = 1_000;

let issuer;
let authd;
let plain; // no cache: what a revoking service would use

before(async () => {
  issuer = await Issuer.start();
  authd = await Authd.start(issuer.sessionsConfig(`[watch]\nheartbeat_ms = ${HEARTBEAT_MS}\n`));
  plain = new AuthClient({ ...transport, endpoints: authd.uri, cache: false });
});

after(async () => {
  plain?.close();
  await authd?.stop();
  await issuer?.stop();
});

/** A client with the cache on, watching with a service token allowed to, once it answers. */
async function cachedClient(options = {}) {
  const watchToken = await issuer.token({ permissions: "revocations:watch" });
  const client = new AuthClient({
    ...transport,
    endpoints: authd.uri,
    watchToken,
    cache: { maxSilenceMs: MAX_SILENCE_MS },
    timeoutMs: 500,
    retry: { maxAttempts: 1 },
    ...options,
  }).watch();
  await eventually(() => client.cacheState === "answering", { what: "the cache answering" });
  return client;
}

/** A user's session known to authd: its handle and a current access token (with `sid`). */
async function session(user) {
  const login = await issuer.passwordLogin(user);
  const created = await plain.createSession({
    existingTokens: { refreshToken: login.refresh_token, idToken: login.id_token, accessToken: login.access_token },
  });
  return { handle: created.sessionHandle, token: created.accessToken };
}

describe("the cache", () => {
  test("answers repeated tokens from memory, keyed by token, scopes and audience", async () => {
    const client = await cachedClient();
    try {
      const token = await issuer.token({ scope: "read:orders" });
      assert.equal(client.cached(token, { requiredScopes: ["read:orders"] }), undefined);
      const first = await client.verifyToken(token, { requiredScopes: ["read:orders"] });
      const hit = client.cached(`Bearer ${token}`, { requiredScopes: ["read:orders"] });
      assert.deepEqual(hit, first);
      assert.equal(client.cacheStats().entries, 1);
      // Other scopes are another question, asked of authd.
      const denied = await rejection(client.verifyToken(token, { requiredScopes: ["delete:orders"] }));
      assert.equal(denied.reason, Reasons.INSUFFICIENT_SCOPE);
      // The same array, changed between the lookup and the verification:
      // the new scopes are asked of authd, not answered by the old entry.
      const scopes = ["read:orders"];
      assert.ok(client.cached(token, { requiredScopes: scopes }));
      scopes.push("delete:orders");
      const changed = await rejection(client.verifyToken(token, { requiredScopes: scopes }));
      assert.equal(changed.reason, Reasons.INSUFFICIENT_SCOPE);
      // A forged twin (same header and claims, another signature) is not the genuine entry.
      const [h, p, s] = token.split(".");
      const forged = `${h}.${p}.${s.slice(0, -4)}AAAA`;
      assert.equal(client.cached(forged, { requiredScopes: ["read:orders"] }), undefined);
      assert.equal(
        (await rejection(client.verifyToken(forged, { requiredScopes: ["read:orders"] }))).reason,
        Reasons.BAD_SIGNATURE,
      );
    } finally {
      client.close();
    }
  });

  test("a revoked session is refused through a warm cache within the bound", async () => {
    const client = await cachedClient();
    try {
      const { handle, token } = await session("alice");
      await client.verifyToken(token);
      assert.ok(client.cached(token), "warm");
      const revokedAt = performance.now();
      await plain.revokeSession({ sessionHandle: handle });
      await eventually(() => client.cached(token) === undefined, {
        withinMs: MAX_SILENCE_MS,
        everyMs: 5,
        what: "the cache refusing",
      });
      const delay = performance.now() - revokedAt;
      const error = await rejection(client.verifyToken(token));
      assert.equal(error.reason, Reasons.SESSION_REVOKED);
      assert.ok(delay < MAX_SILENCE_MS, `refused after ${delay.toFixed(0)} ms`);
    } finally {
      client.close();
    }
  });

  test("revoking every session of a user refuses that user's cached tokens, not others'", async () => {
    const client = await cachedClient();
    try {
      const carol = await issuer.token({ sub: "auth0|carol-cache" });
      const dave = await issuer.token({ sub: "auth0|dave-cache" });
      await client.verifyToken(carol);
      await client.verifyToken(dave);
      // A subject revocation refuses tokens issued at or before it: whole seconds.
      await new Promise((r) => setTimeout(r, 1_000));
      const service = await issuer.token({ permissions: "sessions:revoke" });
      await plain.revokeSession({ userId: "auth0|carol-cache" }, { serviceToken: service });
      await eventually(() => client.cached(carol) === undefined, {
        withinMs: MAX_SILENCE_MS,
        everyMs: 5,
        what: "carol refused",
      });
      assert.ok(client.cached(dave), "dave still answered from memory");
      assert.equal((await rejection(client.verifyToken(carol))).reason, Reasons.SESSION_REVOKED);
    } finally {
      client.close();
    }
  });

  test("a SIGSTOPped authd: the cache answers within the bound, then stops and calls fail closed", async () => {
    const client = await cachedClient();
    const token = await issuer.token({});
    await client.verifyToken(token);
    await eventually(() => client.cached(token), { what: "the token cached" });
    await authd.pause();
    try {
      // Within the bound, from memory (checked at once: the stream spoke
      // within a heartbeat or two).
      assert.ok(client.cached(token));
      // No later than the bound after the stream's last message, the cache stops.
      await eventually(() => client.cacheState === "silent", {
        withinMs: MAX_SILENCE_MS + 1_000,
        what: "the cache going silent",
      });
      assert.equal(client.cached(token), undefined);
      const error = await rejection(client.verifyToken(token));
      assert.equal(error.code, Code.DEADLINE_EXCEEDED);
      assert.ok(error.isUnavailable);
    } finally {
      authd.resume();
    }
    await eventually(() => client.cacheState === "answering", { what: "the cache answering again" });
    assert.ok(await client.verifyToken(token));
    client.close();
  });

  test("without permission to watch, there is no cache, said once, and every call asks authd", async () => {
    const warnings = [];
    const client = new AuthClient({ ...transport, endpoints: authd.uri, logger: { warn: (m) => warnings.push(m) } });
    try {
      const token = await issuer.token({});
      await client.verifyToken(token);
      await eventually(() => client.cacheState === "off", { what: "the cache off" });
      for (let i = 0; i < 5; i += 1) assert.ok(await client.verifyToken(token));
      assert.equal(client.cached(token), undefined);
      assert.equal(warnings.length, 1, warnings.join("\n"));
      assert.match(warnings[0], /without the verification cache/);
    } finally {
      client.close();
    }
  });

  test("cache: false turns it off", () => {
    const client = new AuthClient({ ...transport, endpoints: authd.uri, cache: false });
    assert.equal(client.cacheState, "off");
    client.close();
  });
});

describe("a restarted authd", () => {
  test("the stream resumes from its cursor, and a revocation on the new process is heard", async () => {
    const client = await cachedClient({ retry: { maxAttempts: 1 } });
    try {
      const { handle, token } = await session("bob");
      await client.verifyToken(token);
      const before = client.cacheStats();
      assert.equal(before.connections, 1);
      assert.equal(before.resumedFrom, "");
      assert.ok(before.cursor);
      await authd.kill();
      // Nothing arrives from a dead process: this is the last cursor heard.
      const last = client.cacheStats().cursor;
      assert.ok(last);
      authd = await Authd.start(authd.toml, { port: authd.port, dir: authd.dir });
      await eventually(() => client.cacheStats().connections === 2 && client.cacheState === "answering", {
        withinMs: 15_000,
        what: "the stream opened again",
      });
      assert.equal(client.cacheStats().resumedFrom, last);
      assert.ok(await client.verifyToken(token));
      await plain.revokeSession({ sessionHandle: handle });
      await eventually(() => client.cached(token) === undefined, {
        withinMs: MAX_SILENCE_MS,
        everyMs: 5,
        what: "refused after the restart",
      });
      assert.equal((await rejection(client.verifyToken(token))).reason, Reasons.SESSION_REVOKED);
    } finally {
      client.close();
    }
  });
});
