// deviceLogin(): the whole RFC 8628 loop against authd and the test issuer's
// device grant — approval, refusal, expiry, and a slow down that lengthens
// the interval for good.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { AuthClient, DeviceLoginError } from "@authd/client";

import { Authd, AuthdDev, Issuer, transport } from "./support.mjs";

let issuer;
let authd;
let client;

before(async () => {
  issuer = await Issuer.start();
  authd = await Authd.start(issuer.sessionsConfig());
  await issuer.control("device-config", { interval: 1 });
  client = new AuthClient({ ...transport, endpoints: authd.uri, cache: false });
});

after(async () => {
  client?.close();
  await authd?.stop();
  await issuer?.stop();
});

test("approved: the helper polls until the user approves and answers the session", async () => {
  const shown = [];
  const session = await client.deviceLogin({
    scopes: ["read:orders"],
    onCode: async (code) => {
      shown.push(code);
      assert.equal("deviceCode" in code, false, "the device code is not shown");
      // The user approves on their phone a little later.
      setTimeout(() => void issuer.control(`device/${code.userCode}`, { action: "approve", user: "alice" }), 1_500);
    },
  });
  assert.equal(shown.length, 1);
  assert.ok(shown[0].verificationUri.startsWith(issuer.url));
  assert.ok(shown[0].userCode);
  assert.equal(session.session.userId, "auth0|alice");
  const verified = await client.verifyToken(session.accessToken);
  assert.ok(verified.scopes.includes("read:orders"));
});

for (const action of ["deny", "expire"]) {
  test(`${action}: the helper throws DeviceLoginError`, async () => {
    const error = await client
      .deviceLogin({ onCode: (code) => void issuer.control(`device/${code.userCode}`, { action }) })
      .then(
        () => assert.fail("approved"),
        (e) => e,
      );
    assert.ok(error instanceof DeviceLoginError, String(error));
    assert.equal(error.state, action === "deny" ? "denied" : "expired");
  });
}

test("slow down: the longer interval sticks (RFC 8628 §3.5)", async () => {
  // A spy on the real client (every call still goes to authd): what the
  // helper sent and was answered.
  const spied = new AuthClient({ ...transport, endpoints: authd.uri, cache: false });
  const polls = [];
  let deviceCode;
  const start = spied.startDeviceLogin.bind(spied);
  const poll = spied.pollDeviceLogin.bind(spied);
  spied.startDeviceLogin = async (...args) => {
    const code = await start(...args);
    deviceCode = code.deviceCode;
    return code;
  };
  spied.pollDeviceLogin = async (code, request, options) => {
    const answer = await poll(code, request, options);
    polls.push({ sent: request.interval, state: answer.state, at: Date.now() });
    return answer;
  };
  try {
    const started = Date.now();
    const session = await spied.deviceLogin({
      onCode: async (code) => {
        // Someone polled just now and the issuer now wants 3 s: the
        // helper's first poll, 1 s later, is too soon.
        await poll(deviceCode, { interval: 1 });
        await issuer.control(`device/${code.userCode}`, { interval: 3 });
        setTimeout(() => void issuer.control(`device/${code.userCode}`, { action: "approve", user: "bob" }), 2_000);
      },
    });
    assert.equal(session.session.userId, "auth0|bob");
    assert.deepEqual(
      polls.map((p) => [p.sent, p.state]),
      [
        [1, "slow_down"],
        [6, "approved"],
      ],
    );
    assert.ok(polls[1].at - polls[0].at >= 6_000, `${polls[1].at - polls[0].at} ms between polls`);
    assert.ok(Date.now() - started < 12_000);
  } finally {
    spied.close();
  }
});

test("an aborted login rejects with the signal's reason", async () => {
  const abort = new AbortController();
  const error = await client
    .deviceLogin({ onCode: () => abort.abort(new Error("user closed the window")), signal: abort.signal })
    .then(
      () => assert.fail("approved"),
      (e) => e,
    );
  assert.equal(error.message, "user closed the window");
});

test("against `authd dev`'s own issuer: the user opens verificationUriComplete and the helper answers the session", async () => {
  const dev = await AuthdDev.start();
  const devClient = new AuthClient({ ...transport, endpoints: dev.uri, cache: false });
  try {
    const session = await devClient.deviceLogin({
      scopes: ["read:orders"],
      // The "other device": opening the complete URI approves for the demo user.
      onCode: async (code) => assert.ok((await fetch(code.verificationUriComplete)).ok),
    });
    const verified = await devClient.verifyToken(session.accessToken);
    assert.equal(verified.subject, session.session.userId);
  } finally {
    devClient.close();
    await dev.stop();
  }
});
