// Test-only control API, mounted at /__control. JSON in, JSON out.
// Control calls are not counted in the stats and never fail on purpose.
// The README lists every endpoint.

import express from 'express';

import { UserStore, emptyStats, nowMs } from './state.js';

const isPlainObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const isNonNegativeInteger = (v) => Number.isInteger(v) && v >= 0;

/** What a test may want to know about a device code. */
const deviceView = (record) => ({
  user_code: record.userCode,
  status: record.status, // pending | approved | denied | consumed
  expired: nowMs() >= record.expiresAt,
  user: record.userName ? UserStore.subOf(record.userName) : null,
  scope: record.scope,
  interval: record.interval,
  expires_at: new Date(record.expiresAt).toISOString(),
});

export function controlRouter(state) {
  const router = express.Router();
  // Any body is read as JSON, so `curl -d '{...}'` works without a content type.
  router.use(express.json({ type: () => true }));

  const bad = (res, message, status = 400) => res.status(status).json({ error: 'bad_request', message });
  const body = (req) => (isPlainObject(req.body) ? req.body : {});

  // --- keys ---
  router.post('/rotate', async (req, res) => {
    const { alg = 'RS256', drop_old: dropOld = false } = body(req);
    try {
      const key = await state.keys.generate(alg, { dropOld: dropOld === true });
      res.json({ kid: key.kid, alg: key.alg });
    } catch (err) {
      bad(res, err.message);
    }
  });
  router.get('/keys', (req, res) => res.json({ keys: state.keys.list() }));

  // --- failure injection ---
  router.post('/fail', (req, res) => {
    try {
      res.json(state.failures.set(body(req)));
    } catch (err) {
      bad(res, err.message);
    }
  });
  router.post('/heal', (req, res) => {
    state.failures.clear(body(req).endpoint); // no endpoint: clear all
    res.json({ failures: state.failures.list() });
  });
  router.get('/failures', (req, res) => res.json({ failures: state.failures.list() }));

  // --- statistics ---
  router.get('/stats', (req, res) => res.json(state.stats));
  router.post('/reset-stats', (req, res) => {
    Object.assign(state.stats, emptyStats());
    res.json(state.stats);
  });

  // --- users ---
  router.get('/users/:name', (req, res) => {
    const name = UserStore.nameOf(req.params.name);
    if (!state.users.has(name)) return bad(res, `no user ${name}`, 404);
    res.json(state.users.profile(name));
  });
  router.post('/users/:name', (req, res) => {
    if (!isPlainObject(req.body)) return bad(res, 'body must be a JSON object of profile fields');
    res.json(state.users.update(UserStore.nameOf(req.params.name), req.body));
  });

  // --- userinfo rate limit ---
  router.post('/userinfo-limit', (req, res) => {
    const { limit = state.limiter.limit } = body(req);
    if (!isNonNegativeInteger(limit)) return bad(res, 'limit must be a non-negative integer (0 = unlimited)');
    state.limiter.reset(limit); // also forgets every user's current window
    res.json({ limit: state.limiter.limit });
  });

  // --- access-token claims ---
  router.post('/access-token-sid', (req, res) => {
    const { include } = body(req);
    if (typeof include !== 'boolean') return bad(res, 'include must be true or false');
    state.accessTokenSid = include;
    res.json({ include });
  });

  // --- device authorization grant ---
  router.post('/device-config', (req, res) => {
    const { interval = state.devices.config.interval, expires_in: expiresIn = state.devices.config.expiresIn } = body(req);
    if (!isNonNegativeInteger(interval)) return bad(res, 'interval must be a non-negative integer');
    if (!Number.isInteger(expiresIn) || expiresIn < 1) return bad(res, 'expires_in must be a positive integer');
    state.devices.config = { interval, expiresIn };
    res.json({ interval, expires_in: expiresIn });
  });
  router.get('/device/:userCode', (req, res) => {
    const record = state.devices.byUserCode(req.params.userCode);
    if (!record) return bad(res, `no device code with user_code ${req.params.userCode}`, 404);
    res.json(deviceView(record));
  });
  router.post('/device/:userCode', (req, res) => {
    const record = state.devices.byUserCode(req.params.userCode);
    if (!record) return bad(res, `no device code with user_code ${req.params.userCode}`, 404);
    const { action, user = 'alice', interval } = body(req);
    if (interval !== undefined) {
      if (!isNonNegativeInteger(interval)) return bad(res, 'interval must be a non-negative integer');
      record.interval = interval;
    }
    switch (action) {
      case 'approve':
      case 'deny':
        if (record.status !== 'pending') return bad(res, `device code is ${record.status}, not pending`, 409);
        if (action === 'approve') {
          record.userName = UserStore.nameOf(user);
          state.users.ensure(record.userName);
          record.status = 'approved';
        } else {
          record.status = 'denied';
        }
        break;
      case 'expire':
        record.expiresAt = nowMs();
        break;
      case undefined: // only the interval was changed
        break;
      default:
        return bad(res, 'action must be approve, deny or expire');
    }
    res.json(deviceView(record));
  });

  // --- debugging ---
  router.get('/refresh-families', (req, res) => res.json({ families: state.refresh.snapshot() }));

  router.use((req, res) => bad(res, `no control endpoint ${req.method} ${req.originalUrl}`, 404));
  router.use((err, req, res, _next) => bad(res, err.message)); // e.g. malformed JSON
  return router;
}
