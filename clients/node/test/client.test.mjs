// AuthClient against the real authd binary and the real test issuer: every
// answer of VerifyToken the package decodes, sessions, profiles, the
// revocation stream, several endpoints, deadlines and retries.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { AuthClient, AuthError, Code, Reasons, Secret } from "@authd/client";

import { AUDIENCE, Authd, Issuer, freePort, rejection, transport } from "./support.mjs";

let issuer;
let authd;
let client;

before(async () => {
  issuer = await Issuer.start();
  authd = await Authd.start(issuer.sessionsConfig("[watch]\nheartbeat_ms = 200\n"));
  client = new AuthClient({ ...transport, endpoints: authd.uri, cache: false });
});

after(async () => {
  client?.close();
  await authd?.stop();
  await issuer?.stop();
});

/** The AuthError a verification of `token` throws. */
const refusal = (token, options) => rejection(client.verifyToken(token, options));

describe("verifyToken", () => {
  test("answers the verified claims, typed", async () => {
    const token = await issuer.token({
      scope: "read:orders write:orders",
      sub: "auth0|node-alice",
      jti: "j-1",
      sid: "s-1",
    });
    const verified = await client.verifyToken(token, { requiredScopes: ["read:orders"] });
    assert.equal(verified.subject, "auth0|node-alice");
    assert.equal(verified.issuer, issuer.url);
    assert.deepEqual(verified.audiences, [AUDIENCE]);
    assert.deepEqual(verified.scopes, ["read:orders", "write:orders"]);
    assert.equal(verified.tokenId, "j-1");
    assert.equal(verified.sessionId, "s-1");
    assert.equal(verified.authorizedParty, "authd-test-client");
    assert.ok(verified.expiresAt instanceof Date && verified.expiresAt > new Date());
    assert.ok(verified.issuedAt instanceof Date);
    assert.equal(verified.claims.gty, "client-credentials");
  });

  test("accepts a leading Bearer and an explicit audience", async () => {
    const token = await issuer.token({});
    const verified = await client.verifyToken(`Bearer ${token}`, { audience: AUDIENCE });
    assert.equal(verified.subject, "authd-test-client@clients");
  });

  const cases = [
    ["an expired token", { expires_in: "-120" }, {}, Code.UNAUTHENTICATED, Reasons.TOKEN_EXPIRED, "expired_at"],
    ["a token not yet valid", { nbf_offset: "600" }, {}, Code.UNAUTHENTICATED, Reasons.TOKEN_NOT_YET_VALID],
    [
      "a missing scope",
      { scope: "read:orders" },
      { requiredScopes: ["delete:orders"] },
      Code.PERMISSION_DENIED,
      Reasons.INSUFFICIENT_SCOPE,
      "missing",
    ],
    ["another audience", { audience: "https://other.test" }, {}, Code.UNAUTHENTICATED, Reasons.WRONG_AUDIENCE],
    [
      "an audience authd does not accept",
      {},
      { audience: "https://other.test" },
      Code.INVALID_ARGUMENT,
      Reasons.INVALID_REQUEST,
      "field",
    ],
    [
      "another issuer",
      { claims: JSON.stringify({ iss: "https://evil.test/" }) },
      {},
      Code.UNAUTHENTICATED,
      Reasons.WRONG_ISSUER,
    ],
  ];
  for (const [what, knobs, options, code, reason, metadataKey] of cases) {
    test(`refuses ${what}: ${reason}`, async () => {
      const error = await refusal(await issuer.token(knobs), options);
      assert.ok(error instanceof AuthError, String(error));
      assert.equal(error.code, code, error.message);
      assert.equal(error.reason, reason);
      if (metadataKey) assert.ok(error.metadata[metadataKey], JSON.stringify(error.metadata));
    });
  }

  test("refuses a bad signature, a malformed token and no token, each with its reason", async () => {
    const token = await issuer.token({});
    const [h, p, s] = token.split(".");
    const flipped = s.slice(0, 10) + (s[10] === "A" ? "B" : "A") + s.slice(11);
    assert.equal((await refusal(`${h}.${p}.${flipped}`)).reason, Reasons.BAD_SIGNATURE);
    const malformed = await refusal("not-a-jwt");
    assert.equal(malformed.reason, Reasons.MALFORMED_TOKEN);
    assert.equal(malformed.code, Code.UNAUTHENTICATED);
    const missing = await refusal("");
    assert.equal(missing.reason, Reasons.TOKEN_MISSING);
    assert.equal(missing.code, Code.INVALID_ARGUMENT);
    assert.equal(missing.codeName, "INVALID_ARGUMENT");
  });

  test("an unknown key id is UNKNOWN_KEY with the kid in its metadata", async () => {
    const token = await issuer.token({});
    const [, p, s] = token.split(".");
    const header = Buffer.from(JSON.stringify({ alg: "RS256", typ: "JWT", kid: "no-such-kid" })).toString("base64url");
    const error = await refusal(`${header}.${p}.${s}`);
    assert.equal(error.reason, Reasons.UNKNOWN_KEY);
    assert.equal(error.metadata.kid, "no-such-kid");
  });
});

describe("sessions and profiles", () => {
  test("a session is created from tokens, refreshed, revoked, and its token then refused", async () => {
    const login = await issuer.passwordLogin("alice");
    const created = await client.createSession({
      existingTokens: { refreshToken: login.refresh_token, idToken: login.id_token, accessToken: login.access_token },
    });
    assert.ok(created.sessionHandle instanceof Secret);
    assert.equal(String(created.sessionHandle), "Secret(…)");
    assert.equal(JSON.stringify({ h: created.sessionHandle }), '{"h":"Secret(…)"}');
    assert.equal(created.session.userId, "auth0|alice");
    assert.equal(created.profile.name, "Alice Example");

    const refreshed = await client.refreshSession({ sessionHandle: created.sessionHandle });
    assert.ok(refreshed.accessToken);
    assert.ok(refreshed.expiresAt > new Date());
    assert.equal((await client.verifyToken(refreshed.accessToken)).subject, "auth0|alice");

    assert.equal(await client.revokeSession({ sessionHandle: created.sessionHandle }), 1);
    const error = await refusal(refreshed.accessToken);
    assert.equal(error.reason, Reasons.SESSION_REVOKED);
    const again = await rejection(client.refreshSession({ sessionHandle: created.sessionHandle }));
    assert.equal(again.code, Code.UNAUTHENTICATED);
  });

  test("a raw refresh token is forwarded and rotated; a reused one is GRANT_REJECTED", async () => {
    const login = await issuer.passwordLogin("bob");
    const refreshed = await client.refreshSession({ refreshToken: login.refresh_token });
    assert.ok(refreshed.refreshToken instanceof Secret);
    assert.notEqual(refreshed.refreshToken.expose(), login.refresh_token);
    const reused = await rejection(client.refreshSession({ refreshToken: login.refresh_token }));
    assert.equal(reused.reason, Reasons.GRANT_REJECTED);
    assert.equal(reused.metadata.error, "invalid_grant");
  });

  test("an unknown session handle is refused with its reason", async () => {
    const error = await rejection(client.refreshSession({ sessionHandle: "x".repeat(43) }));
    assert.ok([Reasons.SESSION_NOT_FOUND, Reasons.INVALID_REQUEST].includes(error.reason), error.reason);
  });

  test("GetProfile answers the caller's profile; by user id it takes a trusted service", async () => {
    await issuer.control("users/node-zoe", { name: "Zoë Node", email: "zoe.node@example.com", email_verified: true });
    const token = await issuer.token({ sub: "auth0|node-zoe", scope: "openid profile email" });
    const profile = await client.getProfile({ accessToken: token });
    assert.equal(profile.userId, "auth0|node-zoe");
    assert.equal(profile.name, "Zoë Node");
    assert.equal(profile.emailVerified, true);

    const untrusted = await rejection(client.getProfile({ userId: "auth0|node-zoe" }));
    assert.equal(untrusted.code, Code.PERMISSION_DENIED);
    assert.equal(untrusted.reason, Reasons.CALLER_NOT_TRUSTED);
    const service = await issuer.token({ permissions: "profiles:read" });
    const byId = await client.getProfile({ userId: "auth0|node-zoe" }, { serviceToken: service });
    assert.equal(byId.email, "zoe.node@example.com");
  });

  test("revoking every session of a user takes a service token with sessions:revoke", async () => {
    const refused = await rejection(client.revokeSession({ userId: "auth0|nobody" }));
    assert.equal(refused.reason, Reasons.CALLER_NOT_TRUSTED);
    const service = await issuer.token({ permissions: "sessions:revoke" });
    assert.equal(await client.revokeSession({ userId: "auth0|nobody" }, { serviceToken: service }), 0);
  });
});

describe("watchRevocations", () => {
  test("streams the revocations in force, a heartbeat, then new ones, each with a cursor", async () => {
    const trusted = await issuer.token({ permissions: "revocations:watch sessions:revoke" });
    await client.revokeSession({ userId: "auth0|node-before" }, { serviceToken: trusted });
    const seen = [];
    const abort = new AbortController();
    let revokedAfter = false;
    for await (const event of client.watchRevocations({}, { serviceToken: trusted, signal: abort.signal })) {
      assert.ok(event.cursor);
      seen.push(event);
      if (event.kind === "heartbeat" && !revokedAfter) {
        revokedAfter = true;
        await client.revokeSession({ userId: "auth0|node-after" }, { serviceToken: trusted });
      }
      if (event.kind === "revocation" && event.revocation.value === "auth0|node-after") break;
    }
    const values = seen.filter((e) => e.kind === "revocation").map((e) => e.revocation.value);
    assert.ok(values.indexOf("auth0|node-before") < values.indexOf("auth0|node-after"));
    const after = seen.at(-1).revocation;
    assert.equal(after.kind, "subject");
    assert.equal(after.issuer, issuer.url);
    assert.ok(after.revokedAt instanceof Date && after.expiresAt instanceof Date);
  });

  test("is refused to an untrusted caller", async () => {
    const error = await rejection(
      (async () => {
        for await (const event of client.watchRevocations()) void event;
      })(),
    );
    assert.equal(error.code, Code.PERMISSION_DENIED);
    assert.equal(error.reason, Reasons.CALLER_NOT_TRUSTED);
  });
});

describe("endpoints, deadlines and retries", () => {
  test("several endpoints: a dead one is retried on the live one (UNAVAILABLE only)", async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const both = new AuthClient({
      ...transport,
      endpoints: [dead, authd.uri],
      cache: false,
      retry: { maxAttempts: 3, initialBackoffMs: 10 },
    });
    try {
      const token = await issuer.token({});
      for (let i = 0; i < 10; i += 1) assert.ok(await both.verifyToken(token));
      // A refusal is never retried: it comes back at once, with its reason.
      const error = await rejection(both.verifyToken(await issuer.token({ expires_in: "-60" })));
      assert.equal(error.reason, Reasons.TOKEN_EXPIRED);
    } finally {
      both.close();
    }
  });

  test("authd unreachable is UNAVAILABLE with no reason, after the retries", async () => {
    const dead = new AuthClient({
      ...transport,
      endpoints: `http://127.0.0.1:${await freePort()}`,
      cache: false,
      retry: { maxAttempts: 2, initialBackoffMs: 10 },
    });
    try {
      const error = await rejection(dead.verifyToken("a.b.c"));
      assert.equal(error.code, Code.UNAVAILABLE);
      assert.equal(error.reason, undefined);
      assert.equal(error.isUnavailable, true);
    } finally {
      dead.close();
    }
  });

  test("a deadline passes as DEADLINE_EXCEEDED while authd does not answer", async () => {
    const token = await issuer.token({});
    await client.verifyToken(token); // connected
    await authd.pause();
    try {
      const started = Date.now();
      const error = await rejection(client.verifyToken(token, { timeoutMs: 300 }));
      assert.equal(error.code, Code.DEADLINE_EXCEEDED);
      assert.ok(error.isUnavailable);
      assert.ok(Date.now() - started < 2_000, `took ${Date.now() - started} ms`);
    } finally {
      authd.resume();
    }
    assert.ok(await client.verifyToken(token));
  });

  test("endpoints that are not URIs are refused at construction", () => {
    assert.throws(
      () => new AuthClient({ ...transport, endpoints: "ftp://x" }),
      (e) => e instanceof AuthError && e.code === Code.INVALID_ARGUMENT,
    );
    assert.throws(() => new AuthClient({ ...transport, endpoints: [] }), AuthError);
  });
});
