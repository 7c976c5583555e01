// The classic Auth0 tutorial stack: Express + express-jwt + jwks-rsa.
// GET /verify with `Authorization: Bearer <token>` answers 200 {"sub": ...}
// for a token that verifies (RS256, issuer, audience, via the issuer's JWKS)
// and holds --required-scope; 401/403 otherwise. One Node process.
//
//   node express-jwt.mjs --issuer http://127.0.0.1:PORT/ --audience API [--port 0]
//
// Prints `READY http://127.0.0.1:PORT/verify` when listening (loopback only).

import { parseArgs } from 'node:util';
import express from 'express';
import { expressjwt } from 'express-jwt';
import jwksRsa from 'jwks-rsa';

const { values: args } = parseArgs({
  options: {
    issuer: { type: 'string' },
    audience: { type: 'string', default: 'https://api.authd.bench' },
    port: { type: 'string', default: '0' },
    'required-scope': { type: 'string', default: 'read:orders' },
  },
});
if (!args.issuer) {
  console.error('express-jwt peer: --issuer is required');
  process.exit(2);
}
const requiredScope = args['required-scope'];

const app = express();
app.disable('x-powered-by');
app.disable('etag');
app.get(
  '/verify',
  expressjwt({
    // The tutorial's settings: cached keys, rate-limited JWKS fetches.
    secret: jwksRsa.expressJwtSecret({
      cache: true,
      rateLimit: true,
      jwksRequestsPerMinute: 5,
      jwksUri: `${args.issuer}.well-known/jwks.json`,
    }),
    audience: args.audience,
    issuer: args.issuer,
    algorithms: ['RS256'],
  }),
  (req, res) => {
    const scopes = typeof req.auth.scope === 'string' ? req.auth.scope.split(' ') : [];
    const permissions = Array.isArray(req.auth.permissions) ? req.auth.permissions : [];
    if (requiredScope && !scopes.includes(requiredScope) && !permissions.includes(requiredScope)) {
      res.status(403).json({ error: 'insufficient_scope' });
      return;
    }
    res.json({ sub: req.auth.sub });
  },
);
// express-jwt's errors (UnauthorizedError) carry their status.
app.use((err, _req, res, _next) => {
  res.status(err.status || 500).json({ error: err.code || err.name });
});

const server = app.listen(Number(args.port), '127.0.0.1', () => {
  console.log(`READY http://127.0.0.1:${server.address().port}/verify`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
