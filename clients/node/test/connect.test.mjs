// The Connect transport's own edges, whatever AUTHD_PROTOCOL says: what a
// request carries, answers without a Connect body (a proxy's 502, a 415) by
// their HTTP status, ErrorInfo read from `value` or from `debug`, a
// cancelled call, a kept-alive connection closed under a request, stream
// errors; and a real authd with Connect turned off. The fake servers here
// stand for what sits between a client and authd; authd itself is the real
// binary.

import assert from "node:assert/strict";
import { once } from "node:events";
import http from "node:http";
import http2 from "node:http2";
import { after, before, describe, test } from "node:test";

import { AuthClient, Code, Reasons } from "@authd/client";

import { Authd, Issuer, rejection } from "./support.mjs";

/** A loopback HTTP server (HTTP/`version`, h2c for 2) answering with `handler`; its URI and the requests it saw. */
async function fake(handler, version) {
  const seen = [];
  const sessions = new Set();
  const create = version === "2" ? http2.createServer : http.createServer;
  const server = create((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      seen.push({ path: req.url, headers: req.headers, body: Buffer.concat(chunks), socket: req.socket });
      handler(req, res, seen.length);
    });
  });
  let open = 0;
  let most = 0;
  server.on("connection", (socket) => {
    most = Math.max(most, ++open);
    socket.once("close", () => (open -= 1));
  });
  server.on("session", (session) => (sessions.add(session), session.once("close", () => sessions.delete(session))));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    uri: `http://127.0.0.1:${server.address().port}`,
    seen,
    /** The most connections open at once. */
    mostConnections: () => most,
    close: () => {
      for (const session of sessions) session.destroy();
      server.closeAllConnections?.();
      server.close();
    },
  };
}

for (const version of ["2", "1.1"]) {
  const fakeServer = (handler) => fake(handler, version);
  const connect = (uri, extra = {}) =>
    new AuthClient({
      endpoints: uri,
      protocol: "connect",
      httpVersion: version,
      cache: false,
      retry: { initialBackoffMs: 5 },
      ...extra,
    });

  describe(`Connect over HTTP/${version}: requests and answers`, () => {
    test("a unary call is a POST of application/proto with the protocol's headers", async () => {
      const server = await fakeServer((req, res) => res.writeHead(200, { "content-type": "application/proto" }).end());
      const client = connect(server.uri, { timeoutMs: 1_500 });
      try {
        assert.equal(await client.revokeSession({ userId: "auth0|x" }, { serviceToken: "svc" }), 0);
        const [{ path, headers, body }] = server.seen;
        assert.equal(path, "/auth.v1.AuthService/RevokeSession");
        assert.equal(headers["content-type"], "application/proto");
        assert.equal(headers["connect-protocol-version"], "1");
        assert.equal(headers["connect-timeout-ms"], "1500");
        assert.equal(headers.authorization, "Bearer svc");
        if (version === "1.1") assert.equal(headers.connection, "keep-alive");
        assert.ok(body.includes(Buffer.from("auth0|x")));
      } finally {
        client.close();
        server.close();
      }
    });

    const byStatus = [
      [502, Code.UNAVAILABLE, 3],
      [503, Code.UNAVAILABLE, 3],
      [504, Code.UNAVAILABLE, 3],
      [429, Code.UNAVAILABLE, 3],
      [415, Code.UNKNOWN, 1],
      [405, Code.UNKNOWN, 1],
      [404, Code.UNIMPLEMENTED, 1],
      [400, Code.INTERNAL, 1],
    ];
    for (const [status, code, attempts] of byStatus) {
      test(`HTTP ${status} without a Connect body is ${Code[code]}${attempts > 1 ? ", retried" : ", not retried"}`, async () => {
        const server = await fakeServer((req, res) =>
          res.writeHead(status, { "content-type": "text/plain" }).end(`from a proxy: ${status}`),
        );
        const client = connect(server.uri);
        try {
          const error = await rejection(client.verifyToken("a.b.c"));
          assert.equal(error.code, code, error.message);
          assert.equal(error.reason, undefined);
          assert.match(error.message, new RegExp(`HTTP ${status}: from a proxy`));
          assert.equal(server.seen.length, attempts);
        } finally {
          client.close();
          server.close();
        }
      });
    }

    test("a Connect error's reason comes from ErrorInfo's debug form when its value does not decode; another domain's is none", async () => {
      const bodies = [
        {
          code: "unauthenticated",
          message: "token expired",
          details: [
            {
              type: "google.rpc.ErrorInfo",
              value: "!!",
              debug: { reason: "TOKEN_EXPIRED", domain: "authd", metadata: { expired_at: "1" } },
            },
          ],
        },
        {
          code: "permission_denied",
          message: "by the mesh",
          details: [{ type: "google.rpc.ErrorInfo", debug: { reason: "RBAC", domain: "mesh.example" } }],
        },
        { code: "no_such_code", message: "newer" },
      ];
      const server = await fakeServer((req, res, n) =>
        res.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify(bodies[n - 1])),
      );
      const client = connect(server.uri);
      try {
        const expired = await rejection(client.verifyToken("a.b.c"));
        assert.equal(expired.code, Code.UNAUTHENTICATED);
        assert.equal(expired.reason, Reasons.TOKEN_EXPIRED);
        assert.equal(expired.metadata.expired_at, "1");
        assert.equal(expired.message, "token expired");
        const mesh = await rejection(client.verifyToken("a.b.c"));
        assert.equal(mesh.code, Code.PERMISSION_DENIED);
        assert.equal(mesh.reason, undefined);
        const unknown = await rejection(client.verifyToken("a.b.c"));
        assert.equal(unknown.code, Code.UNKNOWN);
      } finally {
        client.close();
        server.close();
      }
    });

    test("a 200 that is not application/proto is INTERNAL, never a verified token", async () => {
      const server = await fakeServer((req, res) => res.writeHead(200, { "content-type": "text/html" }).end("<html>"));
      const client = connect(server.uri);
      try {
        const error = await rejection(client.verifyToken("a.b.c"));
        assert.equal(error.code, Code.INTERNAL);
      } finally {
        client.close();
        server.close();
      }
    });

    test("an AbortSignal cancels a call in flight: CANCELLED, not retried", async () => {
      const server = await fakeServer(() => undefined); // never answers
      const client = connect(server.uri, { timeoutMs: 0 });
      try {
        const abort = new AbortController();
        setTimeout(() => abort.abort(), 50);
        const error = await rejection(client.verifyToken("a.b.c", { signal: abort.signal }));
        assert.equal(error.code, Code.CANCELLED);
        assert.equal(server.seen.length, 1);
        const already = await rejection(client.verifyToken("a.b.c", { signal: abort.signal }));
        assert.equal(already.code, Code.CANCELLED);
        assert.equal(server.seen.length, 1);
      } finally {
        client.close();
        server.close();
      }
    });

    test(`a burst of calls: ${version === "2" ? "one connection" : "at most 100 connections"}, each call under its deadline`, async () => {
      const server = await fakeServer(() => undefined); // holds every call
      const client = connect(server.uri, { timeoutMs: 400, retry: { maxAttempts: 1 } });
      try {
        const started = Date.now();
        const errors = await Promise.all(Array.from({ length: 150 }, () => rejection(client.verifyToken("a.b.c"))));
        assert.ok(
          errors.every((e) => e.code === Code.DEADLINE_EXCEEDED),
          errors.map((e) => e.code).join(),
        );
        assert.ok(Date.now() - started < 2_000, `took ${Date.now() - started} ms`);
        const most = server.mostConnections();
        if (version === "2") assert.equal(most, 1, `${most} connections at once`);
        else assert.ok(most <= 100 && most >= 90, `${most} connections at once`);
      } finally {
        client.close();
        server.close();
      }
    });

    test("a request authd never read (a connection closed under it, a refused stream): sent again once, even when not idempotent", async () => {
      const server = await fakeServer((req, res, n) => {
        // The second request: over HTTP/1.1 its kept-alive connection is
        // closed unanswered, as an idle timeout would close it; over HTTP/2
        // its stream is refused (REFUSED_STREAM: not processed).
        if (n === 2 && version === "2") req.stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
        else if (n === 2) req.socket.destroy();
        else res.writeHead(200, { "content-type": "application/proto" }).end();
      });
      const client = connect(server.uri, { retry: { maxAttempts: 1 } });
      try {
        await client.refreshSession({ sessionHandle: "h" });
        await client.refreshSession({ sessionHandle: "h" });
        assert.equal(server.seen.length, 3);
        if (version === "1.1") {
          assert.equal(server.seen[1].socket, server.seen[0].socket);
          assert.notEqual(server.seen[2].socket, server.seen[0].socket);
        }
      } finally {
        client.close();
        server.close();
      }
    });

    test("a stream's end-of-stream error is its AuthError; a stream cut short is UNAVAILABLE", async () => {
      const end = (json) => {
        const body = Buffer.from(JSON.stringify(json));
        const prefix = Buffer.alloc(5);
        prefix[0] = 2;
        prefix.writeUInt32BE(body.length, 1);
        return Buffer.concat([prefix, body]);
      };
      const server = await fakeServer((req, res, n) => {
        res.writeHead(200, { "content-type": "application/connect+proto" });
        if (n === 1) {
          res.end(
            end({
              error: {
                code: "resource_exhausted",
                message: "too slow",
                details: [{ type: "google.rpc.ErrorInfo", debug: { reason: "WATCHER_TOO_SLOW", domain: "authd" } }],
              },
            }),
          );
        } else {
          res.end(Buffer.from([0, 0, 0, 0])); // half an envelope, then the end
        }
      });
      const client = connect(server.uri);
      const drain = async () => {
        for await (const event of client.watchRevocations()) void event;
      };
      try {
        assert.equal(server.seen.length, 0);
        const tooSlow = await rejection(drain());
        assert.equal(tooSlow.code, Code.RESOURCE_EXHAUSTED);
        assert.equal(tooSlow.reason, Reasons.WATCHER_TOO_SLOW);
        assert.equal(server.seen[0].headers["content-type"], "application/connect+proto");
        const cut = await rejection(drain());
        assert.equal(cut.code, Code.UNAVAILABLE);
      } finally {
        client.close();
        server.close();
      }
    });
  });
}

test("over HTTP/2, calls beyond the server's max_concurrent_streams wait for a stream, and all are answered", async () => {
  let open = 0;
  let most = 0;
  const server = http2.createServer({ settings: { maxConcurrentStreams: 10 } }, (req, res) => {
    most = Math.max(most, ++open);
    req.resume();
    req.on("end", () =>
      setTimeout(() => {
        open -= 1;
        res.writeHead(200, { "content-type": "application/proto" }).end();
      }, 20),
    );
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const client = new AuthClient({
    endpoints: `http://127.0.0.1:${server.address().port}`,
    protocol: "connect",
    cache: false,
  });
  try {
    const answers = await Promise.all(Array.from({ length: 60 }, () => client.revokeSession({ userId: "x" })));
    assert.equal(answers.length, 60);
    assert.equal(most, 10);
  } finally {
    client.close();
    server.close();
  }
});

describe("an authd with Connect turned off", () => {
  let issuer;
  let authd;
  before(async () => {
    issuer = await Issuer.start();
    authd = await Authd.start(issuer.sessionsConfig(), { server: "connect = false\n" });
  });
  after(async () => {
    await authd?.stop();
    await issuer?.stop();
  });

  test("refuses a Connect client with 415 (UNKNOWN, saying why); protocol: grpc verifies", async () => {
    const token = await issuer.token({});
    const client = new AuthClient({ endpoints: authd.uri, protocol: "connect", cache: false });
    const grpc = new AuthClient({ endpoints: authd.uri, protocol: "grpc", cache: false });
    try {
      const error = await rejection(client.verifyToken(token));
      assert.equal(error.code, Code.UNKNOWN);
      assert.match(error.message, /HTTP 415.*connect = false/);
      assert.equal((await grpc.verifyToken(token)).subject, "authd-test-client@clients");
    } finally {
      client.close();
      grpc.close();
    }
  });
});
