// The cache and the revocation matching by themselves (no authd): the rules
// of authd-client's cache.rs and revoked.rs, checked on the built package.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";

import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";

import { cacheKey, VerifyCache } from "../../dist/esm/cache.js";
import { RevocationKind, RevocationSchema } from "../../dist/esm/gen/auth/v1/auth_pb.js";
import { identityOf, Revoked } from "../../dist/esm/revoked.js";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sha = (s) => createHash("sha256").update(s).digest("hex");
const nowS = () => Math.floor(Date.now() / 1000);

function verified({ sub = "auth0|alice", sid = "sid-1", iat = nowS() - 10, lifetimeMs = 3_600_000 } = {}) {
  return {
    subject: sub,
    issuer: "https://i/",
    audiences: [],
    scopes: [],
    permissions: [],
    sessionId: sid,
    issuedAt: iat === undefined ? undefined : new Date(iat * 1000),
    expiresAt: new Date(Date.now() + lifetimeMs),
    claims: {},
  };
}

function revocation(kind, value, at = nowS(), expiresInS = 600) {
  return create(RevocationSchema, {
    kind,
    issuer: "https://i/",
    value,
    revokedAt: timestampFromMs(at * 1000),
    expiresAt: timestampFromMs((nowS() + expiresInS) * 1000),
  });
}

function cache(options = {}) {
  const c = new VerifyCache({ maxTtlMs: 30_000, maxEntries: 10, ...options });
  c.heartbeat(2_000);
  return c;
}

test("the key depends on the token, the audience and the scope set, not its order", () => {
  const a = cacheKey("t", ["read", "write"]);
  assert.equal(a, cacheKey("t", ["write", "read", "read"]));
  assert.notEqual(a, cacheKey("t", ["read"]));
  assert.notEqual(a, cacheKey("u", ["read", "write"]));
  assert.notEqual(cacheKey("t", [], "https://a"), cacheKey("t", []));
  assert.notEqual(cacheKey("t", [], ""), cacheKey("t", []));
  // Parts are length-prefixed: they cannot run into each other.
  assert.notEqual(cacheKey("t", ["read"]), cacheKey("t\u0000read", []));
});

test("an entry lives no longer than maxTtlMs, nor than the token", async () => {
  const c = cache({ maxTtlMs: 80 });
  c.set("k", "h.p.s", verified());
  c.set("short", "h.p.s", verified({ lifetimeMs: 40 }));
  assert.ok(c.get("k") && c.get("short"));
  await sleep(50);
  assert.ok(c.get("k"));
  assert.equal(c.get("short"), undefined);
  await sleep(50);
  assert.equal(c.get("k"), undefined);
  c.set("expired", "h.p.s", verified({ lifetimeMs: -1000 }));
  assert.equal(c.size, 0);
});

test("the oldest entry goes when full; a renewed entry is young again", () => {
  const c = cache({ maxEntries: 3 });
  for (const k of ["a", "b", "a", "c", "d"]) c.set(k, "h.p.s", verified());
  assert.equal(c.size, 3);
  assert.equal(c.get("b"), undefined);
  assert.ok(c.get("a") && c.get("c") && c.get("d"));
});

test("nothing is answered before the first heartbeat, nor after the stream falls silent", async () => {
  const c = new VerifyCache({ maxSilenceMs: 60 });
  assert.equal(c.state, "syncing");
  c.set("k", "h.p.s", verified());
  assert.equal(c.get("k"), undefined);
  c.heartbeat(10);
  assert.equal(c.state, "answering");
  assert.ok(c.get("k"));
  await sleep(80);
  assert.equal(c.state, "silent");
  assert.equal(c.get("k"), undefined);
  // Three announced heartbeats are the least silence allowed.
  c.heartbeat(50);
  assert.equal(c.silenceMs, 150);
  c.streamOpened();
  assert.equal(c.state, "syncing");
});

test("a session revocation refuses tokens of that sid only", () => {
  const c = cache();
  c.set("s1", "h.p1.s", verified({ sid: "s1" }));
  c.set("s2", "h.p2.s", verified({ sid: "s2" }));
  c.set("none", "h.p3.s", verified({ sid: undefined }));
  c.revoked(revocation(RevocationKind.SESSION_ID, "s1"));
  assert.equal(c.get("s1"), undefined);
  assert.ok(c.get("s2") && c.get("none"));
  // An answer authd gave before the revocation reached it is not kept.
  c.set("s1", "h.p1.s", verified({ sid: "s1" }));
  assert.equal(c.size, 2);
});

test("a subject revocation refuses tokens issued at or before it, and tokens without iat", () => {
  const revoked = new Revoked();
  const at = nowS();
  assert.ok(revoked.add(revocation(RevocationKind.SUBJECT, "alice", at)));
  for (const [iat, refused] of [
    [at - 5, true],
    [at, true],
    [at + 1, false],
    [undefined, true],
  ]) {
    assert.equal(revoked.refuses(identityOf("h.p.s", verified({ sub: "alice", iat }))), refused, `iat ${iat}`);
  }
  assert.equal(revoked.refuses(identityOf("h.p.s", verified({ sub: "bob", iat: at - 5 }))), false);
});

test("a signed digest refuses every encoding of the signature; a token hash that token only", () => {
  const revoked = new Revoked();
  revoked.add(revocation(RevocationKind.SIGNED_DIGEST, sha("hdr.claims")));
  for (const twin of ["hdr.claims.sig-1", "hdr.claims.other-sig"])
    assert.ok(revoked.refuses(identityOf(twin, verified())));
  assert.equal(revoked.refuses(identityOf("hdr.claimz.sig-1", verified())), false);
  revoked.add(revocation(RevocationKind.TOKEN_HASH, sha("old.token.sig").toUpperCase()));
  assert.ok(revoked.refuses(identityOf("old.token.sig", verified())));
  assert.equal(revoked.refuses(identityOf("old.token.sig2", verified())), false);
});

test("what cannot be matched empties the cache; expired revocations are forgotten", () => {
  const c = cache();
  c.set("k", "h.p.s", verified());
  assert.equal(c.revoked(revocation(RevocationKind.SIGNED_DIGEST, "zz")), false);
  assert.equal(c.size, 0);
  const revoked = new Revoked();
  assert.equal(revoked.add(revocation(RevocationKind.UNSPECIFIED, "x")), false);
  revoked.add(revocation(RevocationKind.SESSION_ID, "old", nowS(), -1));
  revoked.add(revocation(RevocationKind.SESSION_ID, "live"));
  revoked.prune();
  assert.equal(revoked.size, 1);
});

test("turned off, the cache keeps and answers nothing", () => {
  const c = cache();
  c.set("k", "h.p.s", verified());
  assert.equal(c.turnOff(), true);
  assert.equal(c.turnOff(), false);
  c.set("k", "h.p.s", verified());
  assert.equal(c.get("k"), undefined);
  assert.equal(new VerifyCache({ maxEntries: 0 }).state, "off");
});
