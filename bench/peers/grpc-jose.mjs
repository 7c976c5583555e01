// A VerifyToken service as a team would write it in Node.js:
// @grpc/grpc-js + @grpc/proto-loader (auth.proto loaded at run time) + jose.
// Verifies signature (remote JWKS), issuer, audience and algorithm, checks
// the required scopes, answers a VerifyTokenResponse; a bad token is
// UNAUTHENTICATED, a missing scope PERMISSION_DENIED. One Node process.
//
//   node grpc-jose.mjs --issuer http://127.0.0.1:PORT/ --audience API --alg RS256 [--port 0]
//
// Prints `READY 127.0.0.1:PORT` when listening (loopback only).

import { parseArgs } from 'node:util';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const { values: args } = parseArgs({
  options: {
    issuer: { type: 'string' },
    audience: { type: 'string', default: 'https://api.authd.bench' },
    alg: { type: 'string', default: 'RS256' },
    port: { type: 'string', default: '0' },
  },
});
if (!args.issuer) {
  console.error('grpc-jose peer: --issuer is required');
  process.exit(2);
}

const protoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../proto');
const definition = protoLoader.loadSync('auth/v1/auth.proto', {
  includeDirs: [protoRoot],
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});
const { auth } = grpc.loadPackageDefinition(definition);

const jwks = createRemoteJWKSet(new URL(`${args.issuer}.well-known/jwks.json`));
const options = { issuer: args.issuer, audience: args.audience, algorithms: [args.alg] };

async function verifyToken(call, callback) {
  const token = call.request.token.replace(/^Bearer /, '');
  if (!token) {
    callback({ code: grpc.status.INVALID_ARGUMENT, details: 'no token' });
    return;
  }
  let payload;
  try {
    ({ payload } = await jwtVerify(token, jwks, options));
  } catch (error) {
    callback({ code: grpc.status.UNAUTHENTICATED, details: error.code || error.message });
    return;
  }
  const scopes = typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : [];
  const permissions = Array.isArray(payload.permissions) ? payload.permissions : [];
  const missing = call.request.requiredScopes.filter(
    (s) => !scopes.includes(s) && !permissions.includes(s),
  );
  if (missing.length > 0) {
    callback({ code: grpc.status.PERMISSION_DENIED, details: `missing ${missing.join(' ')}` });
    return;
  }
  callback(null, {
    subject: payload.sub,
    issuer: payload.iss,
    audiences: [].concat(payload.aud ?? []),
    scopes,
    permissions,
    authorizedParty: payload.azp ?? '',
    issuedAt: payload.iat ? { seconds: payload.iat } : null,
    expiresAt: { seconds: payload.exp },
  });
}

const server = new grpc.Server();
// Other methods are answered UNIMPLEMENTED by grpc-js.
server.addService(auth.v1.AuthService.service, { verifyToken });
server.bindAsync(`127.0.0.1:${args.port}`, grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error) {
    console.error(`grpc-jose peer: ${error.message}`);
    process.exit(1);
  }
  console.log(`READY 127.0.0.1:${port}`);
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
