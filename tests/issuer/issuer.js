#!/usr/bin/env node
// Launcher of the Auth0-shaped OpenID Connect issuer used by authd's integration tests.
//
//   node tests/issuer/issuer.js [--port N] [--audience URL] [--client-id ID]
//        [--client-secret S] [--reuse-interval-seconds N] [--userinfo-limit N] [--verbose]
//
// Binds 127.0.0.1 only. Once listening it prints exactly one line to stdout,
//   READY http://127.0.0.1:PORT/
// and everything else goes to stderr. SIGTERM / SIGINT stop it with exit code 0.
// See README.md for the endpoints and the /__control API.

import { parseArgs } from 'node:util';

import { DEFAULTS, startIssuer } from './lib/app.js';

const USAGE = `usage: node issuer.js [options]
  --port N                    port on 127.0.0.1, 0 = ephemeral (default ${DEFAULTS.port})
  --audience URL              API identifier, the access tokens' aud (default ${DEFAULTS.audience})
  --client-id ID              the one registered client (default ${DEFAULTS.clientId})
  --client-secret S           its secret (default ${DEFAULTS.clientSecret})
  --reuse-interval-seconds N  refresh-token reuse leeway (default ${DEFAULTS.reuseIntervalSeconds})
  --userinfo-limit N          /userinfo calls per user per 60 s, 0 = unlimited (default ${DEFAULTS.userinfoLimit})
  --verbose                   log every request to stderr
  -h, --help                  this text`;

function fail(message) {
  console.error(`issuer.js: ${message}\n${USAGE}`);
  process.exit(2);
}

function integerOption(values, name, fallback, { max = Number.MAX_SAFE_INTEGER } = {}) {
  const raw = values[name];
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) > max) fail(`--${name} must be an integer between 0 and ${max}`);
  return Number(raw);
}

function parseCli(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        port: { type: 'string' },
        audience: { type: 'string' },
        'client-id': { type: 'string' },
        'client-secret': { type: 'string' },
        'reuse-interval-seconds': { type: 'string' },
        'userinfo-limit': { type: 'string' },
        verbose: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    fail(err.message);
  }
  if (values.help) {
    console.error(USAGE);
    process.exit(0);
  }
  for (const name of ['audience', 'client-id', 'client-secret']) {
    if (values[name] === '') fail(`--${name} must not be empty`);
  }
  return {
    port: integerOption(values, 'port', DEFAULTS.port, { max: 65535 }),
    audience: values.audience ?? DEFAULTS.audience,
    clientId: values['client-id'] ?? DEFAULTS.clientId,
    clientSecret: values['client-secret'] ?? DEFAULTS.clientSecret,
    reuseIntervalSeconds: integerOption(values, 'reuse-interval-seconds', DEFAULTS.reuseIntervalSeconds),
    userinfoLimit: integerOption(values, 'userinfo-limit', DEFAULTS.userinfoLimit),
    verbose: values.verbose ?? false,
  };
}

async function main() {
  const options = parseCli(process.argv.slice(2));
  let issuer;
  try {
    issuer = await startIssuer(options);
  } catch (err) {
    console.error(`issuer.js: cannot start: ${err.message}`);
    process.exit(1);
  }

  let stopping = false;
  const stop = async (signal) => {
    if (stopping) return;
    stopping = true;
    console.error(`[authd-issuer] ${signal}: stopping`);
    await issuer.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  console.error(
    `[authd-issuer] listening on ${issuer.url} (audience ${options.audience}, client ${options.clientId}, ` +
      `reuse interval ${options.reuseIntervalSeconds}s, userinfo limit ${options.userinfoLimit}/min)`,
  );
  // The one and only stdout line. Writes to a pipe are synchronous on Linux,
  // so the line is flushed by the time write() returns.
  process.stdout.write(`READY ${issuer.url}\n`);
}

main();
