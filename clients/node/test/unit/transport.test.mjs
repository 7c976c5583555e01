// The Connect transport's pure parts (no authd): endpoints, the HTTP status
// table, and Connect error bodies read into AuthError — checked on the built
// package.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";

import { create, toBinary } from "@bufbuild/protobuf";

import { codeOfHttpStatus, fromConnectError, unaryError } from "../../dist/esm/connect.js";
import { Code } from "../../dist/esm/errors.js";
import { ErrorInfoSchema } from "../../dist/esm/gen/google/rpc/error_details_pb.js";
import { parseEndpoint } from "../../dist/esm/transport.js";

test("endpoints: URIs, bare host:port, IPv6, and what is refused", () => {
  assert.deepEqual(parseEndpoint("http://127.0.0.1:50051", undefined), {
    host: "127.0.0.1",
    port: 50051,
    authority: "127.0.0.1:50051",
    secure: false,
  });
  assert.deepEqual(parseEndpoint("https://authd.internal/", undefined), {
    host: "authd.internal",
    port: 443,
    authority: "authd.internal:443",
    secure: true,
  });
  assert.equal(parseEndpoint("authd:50051", {}).secure, true);
  assert.equal(parseEndpoint("authd:50051", undefined).secure, false);
  assert.deepEqual(parseEndpoint("http://[::1]:8080", undefined), {
    host: "::1",
    port: 8080,
    authority: "[::1]:8080",
    secure: false,
  });
  for (const bad of ["ftp://x", "http://h:0", "http://h:70000", "http://h:1/path", "authd", "h:p"]) {
    assert.throws(
      () => parseEndpoint(bad, undefined),
      (e) => e.code === Code.INVALID_ARGUMENT,
      bad,
    );
  }
});

test("HTTP statuses without a Connect body, as the protocol maps them", () => {
  const table = { 400: "INTERNAL", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "UNIMPLEMENTED" };
  Object.assign(table, { 429: "UNAVAILABLE", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "UNAVAILABLE" });
  Object.assign(table, { 405: "UNKNOWN", 415: "UNKNOWN", 500: "UNKNOWN", 418: "UNKNOWN" });
  for (const [status, name] of Object.entries(table))
    assert.equal(Code[codeOfHttpStatus(Number(status))], name, status);
  const proxy = unaryError(502, "text/html", Buffer.from("<html>bad gateway</html>"));
  assert.equal(proxy.code, Code.UNAVAILABLE);
  assert.equal(proxy.reason, undefined);
  // A JSON body that is not a Connect error is read by the status too.
  assert.equal(unaryError(503, "application/json", Buffer.from('{"status":"down"}')).code, Code.UNAVAILABLE);
});

test("a Connect error: code by name, reason and metadata from ErrorInfo's value (padded or not)", () => {
  const info = create(ErrorInfoSchema, { reason: "INSUFFICIENT_SCOPE", domain: "authd", metadata: { missing: "a b" } });
  const value = Buffer.from(toBinary(ErrorInfoSchema, info)).toString("base64");
  for (const v of [value, value.replace(/=+$/, "")]) {
    const error = fromConnectError({
      code: "permission_denied",
      message: "missing scopes",
      details: [{ type: "google.rpc.ErrorInfo", value: v, debug: { reason: "WRONG", domain: "authd" } }],
    });
    assert.equal(error.code, Code.PERMISSION_DENIED);
    assert.equal(error.reason, "INSUFFICIENT_SCOPE");
    assert.deepEqual({ ...error.metadata }, { missing: "a b" });
    assert.equal(error.message, "missing scopes");
  }
  const other = create(ErrorInfoSchema, { reason: "RBAC", domain: "mesh.example" });
  const mesh = fromConnectError({
    code: "permission_denied",
    details: [
      {
        type: "type.googleapis.com/google.rpc.ErrorInfo",
        value: Buffer.from(toBinary(ErrorInfoSchema, other)).toString("base64"),
      },
    ],
  });
  assert.equal(mesh.reason, undefined);
  assert.equal(fromConnectError({ code: "unavailable" }).code, Code.UNAVAILABLE);
  assert.equal(fromConnectError({ message: "no code" }), undefined);
  assert.equal(fromConnectError("text"), undefined);
});

test("grpc-js is loaded only by a client that speaks gRPC, at its first call", () => {
  // The CommonJS build, whose require.cache lists every module loaded.
  const script = (protocol) => `
    const { AuthClient } = require(${JSON.stringify(new URL("../../dist/cjs/index.js", import.meta.url).pathname)});
    const loaded = () => Object.keys(require.cache).some((m) => m.includes("@grpc/grpc-js"));
    const client = new AuthClient({ endpoints: "http://127.0.0.1:9", protocol: "${protocol}", cache: false, retry: { maxAttempts: 1 } });
    const before = loaded();
    client.verifyToken("a.b.c").catch((e) => {
      console.log(JSON.stringify({ before, after: loaded(), code: e.code }));
      client.close();
    });`;
  const run = (protocol) => JSON.parse(execFileSync(process.execPath, ["-e", script(protocol)], { encoding: "utf8" }));
  assert.deepEqual(run("connect"), { before: false, after: false, code: Code.UNAVAILABLE });
  assert.deepEqual(run("grpc"), { before: false, after: true, code: Code.UNAVAILABLE });
});

test("Code is grpc-js's status, name for name and number for number", async () => {
  const { status } = await import("@grpc/grpc-js");
  const names = (e) => Object.fromEntries(Object.entries(e).filter(([k]) => Number.isNaN(Number(k))));
  assert.deepEqual(names(Code), names(status));
});
