// A Node.js client of authd, tested against a live authd: @grpc/grpc-js with
// @grpc/proto-loader loading proto/auth/v1/auth.proto at run time. The
// environment gives AUTHD_ADDR (host:port) and ISSUER_URL (the test issuer,
// with its trailing slash); tests/tests/other_languages.rs starts both.

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTO = path.resolve(__dirname, '../../../../proto');
const { AUTHD_ADDR, ISSUER_URL } = process.env;

// google.rpc.Status and ErrorInfo, as google/rpc/{status,error_details}.proto
// define them: enough to read the grpc-status-details-bin trailer. protobufjs
// carries google.protobuf.Any itself.
const withAny = protobuf.Root.fromJSON(protobuf.common['google/protobuf/any.proto']);
const rpc = protobuf.parse(`
  syntax = "proto3";
  package google.rpc;
  import "google/protobuf/any.proto";
  message Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
  message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
`, withAny).root;
const Status = rpc.lookupType('google.rpc.Status');
const ErrorInfo = rpc.lookupType('google.rpc.ErrorInfo');

/** The ErrorInfo of a failed call, decoded from grpc-status-details-bin. */
function errorInfo(err) {
  const [bin] = err.metadata.get('grpc-status-details-bin');
  assert.ok(bin, 'no grpc-status-details-bin trailer');
  const status = Status.decode(bin);
  const detail = status.details.find((d) => d.type_url === 'type.googleapis.com/google.rpc.ErrorInfo');
  assert.ok(detail, 'no ErrorInfo detail');
  return ErrorInfo.toObject(ErrorInfo.decode(detail.value));
}

async function issuerPost(where, { form, json }) {
  const response = await fetch(ISSUER_URL + where, form
    ? { method: 'POST', body: new URLSearchParams(form) }
    : { method: 'POST', body: JSON.stringify(json), headers: { 'content-type': 'application/json' } });
  assert.ok(response.ok, `${where}: ${response.status}`);
  return response.json();
}

/** An access token from the issuer's real token endpoint. */
async function mint(knobs) {
  const form = {
    grant_type: 'client_credentials', client_id: 'authd-test-client',
    client_secret: 'authd-test-secret', ...knobs,
  };
  return (await issuerPost('oauth/token', { form })).access_token;
}

/** A unary call as a promise. */
const call = (client, method, request) => new Promise((resolve, reject) => {
  client[method](request, (err, answer) => (err ? reject(err) : resolve(answer)));
});

// Plaintext, or mutual TLS when AUTHD_TLS_CA (and AUTHD_TLS_CERT,
// AUTHD_TLS_KEY: the client certificate) name PEM files.
const credentials = () => {
  const { AUTHD_TLS_CA, AUTHD_TLS_CERT, AUTHD_TLS_KEY } = process.env;
  if (!AUTHD_TLS_CA) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(
    fs.readFileSync(AUTHD_TLS_CA), fs.readFileSync(AUTHD_TLS_KEY), fs.readFileSync(AUTHD_TLS_CERT),
  );
};

let auth;
let health;
before(() => {
  const definition = protoLoader.loadSync('auth/v1/auth.proto', {
    includeDirs: [PROTO], keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true,
  });
  const { auth: { v1 } } = grpc.loadPackageDefinition(definition);
  auth = new v1.AuthService(AUTHD_ADDR, credentials());
  // grpc.health.v1 is small enough to define here; proto-loader takes it as
  // protobufjs JSON.
  const healthRoot = protobuf.parse(`
    syntax = "proto3";
    package grpc.health.v1;
    message HealthCheckRequest { string service = 1; }
    message HealthCheckResponse {
      enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
      ServingStatus status = 1;
    }
    service Health { rpc Check(HealthCheckRequest) returns (HealthCheckResponse); }
  `).root;
  const healthDefinition = protoLoader.fromJSON(healthRoot.toJSON(), { enums: String, defaults: true });
  const { Health } = grpc.loadPackageDefinition(healthDefinition).grpc.health.v1;
  health = new Health(AUTHD_ADDR, credentials());
});
after(() => { auth.close(); health.close(); });

test('VerifyToken answers the claims', async () => {
  const token = await mint({ scope: 'read:orders write:orders', sub: 'auth0|node-alice' });
  const answer = await call(auth, 'VerifyToken', { token, required_scopes: ['read:orders'] });
  assert.equal(answer.subject, 'auth0|node-alice');
  assert.equal(answer.issuer, ISSUER_URL);
  assert.deepEqual(answer.scopes, ['read:orders', 'write:orders']);
  assert.ok(answer.expires_at.seconds > 0);
});

test('an expired token is refused with its reason', async () => {
  const token = await mint({ expires_in: '-120' });
  const err = await call(auth, 'VerifyToken', { token }).then(() => assert.fail('accepted'), (e) => e);
  assert.equal(err.code, grpc.status.UNAUTHENTICATED);
  const info = errorInfo(err);
  assert.equal(info.domain, 'authd');
  assert.equal(info.reason, 'TOKEN_EXPIRED');
  assert.ok(info.metadata.expired_at);
});

test('a missing scope is PERMISSION_DENIED', async () => {
  const token = await mint({ scope: 'read:orders' });
  const err = await call(auth, 'VerifyToken', { token, required_scopes: ['delete:orders'] })
    .then(() => assert.fail('accepted'), (e) => e);
  assert.equal(err.code, grpc.status.PERMISSION_DENIED);
  const info = errorInfo(err);
  assert.equal(info.reason, 'INSUFFICIENT_SCOPE');
  assert.equal(info.metadata.missing, 'delete:orders');
});

test('health reports SERVING', async () => {
  const answer = await call(health, 'Check', { service: 'auth.v1.AuthService' });
  assert.equal(answer.status, 'SERVING');
});

test("GetProfile answers the caller's profile", async () => {
  // GetProfile: the storage issue has landed, so this asserts the real
  // profile (it asserted UNIMPLEMENTED / NOT_IMPLEMENTED before).
  await issuerPost('__control/users/node-zoe', {
    json: { name: 'Zoë Node', email: 'zoe.node@example.com', email_verified: true },
  });
  const token = await mint({ sub: 'auth0|node-zoe', scope: 'openid profile email' });
  const { profile } = await call(auth, 'GetProfile', { access_token: token });
  assert.equal(profile.user_id, 'auth0|node-zoe');
  assert.equal(profile.name, 'Zoë Node');
  assert.equal(profile.email, 'zoe.node@example.com');
  assert.equal(profile.email_verified, true);
});

test('GetProfile refuses a bad token', async () => {
  const err = await call(auth, 'GetProfile', { access_token: 'not-a-jwt' })
    .then(() => assert.fail('accepted'), (e) => e);
  assert.equal(err.code, grpc.status.UNAUTHENTICATED);
  assert.equal(errorInfo(err).reason, 'MALFORMED_TOKEN');
});
