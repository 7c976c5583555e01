// The package's reasons are the proto's ErrorReason enum: read from
// proto/auth/v1/auth.proto itself, so a proto that grows a reason the
// generated code does not have (generation not rerun) fails here.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";

import { AuthError, Code, Reasons } from "@authd/client";

import { REPO } from "./support.mjs";

test("the package's reasons are exactly the proto's ErrorReason values", () => {
  const proto = readFileSync(path.join(REPO, "proto/auth/v1/auth.proto"), "utf8");
  const body = /enum ErrorReason \{([\s\S]*?)\n\}/.exec(proto)[1];
  const inProto = [...body.matchAll(/^\s*ERROR_REASON_([A-Z0-9_]+)\s*=\s*\d+;/gm)]
    .map((m) => m[1])
    .filter((name) => name !== "UNSPECIFIED");
  assert.ok(inProto.length >= 31, `${inProto.length} reasons`);
  assert.deepEqual(Object.keys(Reasons).sort(), inProto.sort());
  for (const [name, value] of Object.entries(Reasons)) assert.equal(name, value);
});

test("an unknown reason is kept as sent", () => {
  const error = new AuthError(Code.UNAUTHENTICATED, "x", "QUOTA_EXCEEDED");
  assert.equal(error.reason, "QUOTA_EXCEEDED");
  assert.equal(error.codeName, "UNAUTHENTICATED");
  assert.equal(error.isUnavailable, false);
});
