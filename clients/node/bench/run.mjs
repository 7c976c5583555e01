// The benchmark of issue 19 item 6, one run: GET /orders unprotected, behind
// @authd/client (warm cache), and behind express-jwt + jwks-rsa as the
// classic Auth0 snippet configures them; with one token repeated and with a
// new token on every request; the unprotected route also with the token sent
// (not read), and with a no-op app.use() middleware (what Express's own layer
// costs). The apps are pinned to CPU 0 (BENCH_APP_CPU), everything else —
// authd, the issuer, autocannon — to the other CPU(s) by `./run`.
// @authd/client is measured speaking each protocol to authd (Connect over
// HTTP/2 and over HTTP/1.1, and gRPC).
//
// Every route's app is started once and the routes are measured in turns,
// BENCH_ROUNDS rounds (3), so that a machine whose speed drifts over minutes
// moves every row alike: each row is the median of its rounds, and its ratio
// to the unprotected route the median of the same-round ratios. Each sample
// has the app's CPU time per request (user + system, from /proc, over the
// measured requests). Then the revocation-to-refusal delay through the Node
// cache, in each protocol.
import { readFileSync } from "node:fs";

import autocannon from "autocannon";
import { AuthClient } from "@authd/client";

import { Authd, Issuer, eventually } from "../test/support.mjs";
import { mint, startApp } from "./apps.mjs";

const APP_CPU = process.env.BENCH_APP_CPU ?? "0";
const DURATION_S = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
// A new-token sample comes after the same app's repeated-token one, which
// runs only the cache's hit path, so V8 compiles the miss path again first.
// With the first defaults (1,000 warm-up tokens, 2,000 measured) a sample
// measured that compilation: 305–330 µs a miss, against 230–240 µs with
// these.
const NEW_TOKENS = Number(process.env.BENCH_NEW_TOKENS ?? 5_000);
const WARM_TOKENS = Number(process.env.BENCH_WARM_TOKENS ?? 3_000);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const REVOCATIONS = Number(process.env.BENCH_REVOCATIONS ?? 200);

const issuer = await Issuer.start();
const authd = await Authd.start(issuer.sessionsConfig());
const watchToken = await issuer.token({ permissions: "revocations:watch" });

/**
 * CPU time (user + system) so far, in µs, from /proc (USER_HZ 100): the
 * whole process's (`/proc/<pid>/stat`) and its main thread's
 * (`/proc/<pid>/task/<pid>/stat`), where Express, the package and node's HTTP
 * run; the rest is V8's helper threads (its optimising compiler, its
 * concurrent marking).
 */
function cpuUs(pid) {
  const read = (path) => {
    const fields = readFileSync(path, "utf8")
      .replace(/^.*\) /s, "")
      .split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
  };
  return { all: read(`/proc/${pid}/stat`), main: read(`/proc/${pid}/task/${pid}/stat`) };
}

/** `tokens` sent to `port`; `seen` hears the time of each answer. */
function load(port, tokens, options, seen) {
  let i = 0;
  return autocannon({
    url: `http://127.0.0.1:${port}/orders`,
    connections: CONNECTIONS,
    ...options,
    requests: [
      {
        setupRequest: (req) => {
          if (tokens) req.headers = { ...req.headers, authorization: `Bearer ${tokens[i++ % tokens.length]}` };
          return req;
        },
        ...(seen ? { onResponse: () => seen(performance.now()) } : {}),
      },
    ],
  });
}

/** One sample: `tokens` sent to `app` (`options`: autocannon's duration or amount). */
async function sample(app, tokens, options) {
  const cpu0 = cpuUs(app.pid);
  const start = performance.now();
  let last = start;
  const r = await load(app.port, tokens, options, (t) => (last = t));
  const cpu1 = cpuUs(app.pid);
  const requests = Math.max(1, r.requests.total);
  return {
    cpu: (cpu1.all - cpu0.all) / requests,
    main: (cpu1.main - cpu0.main) / requests,
    // Requests from the first sent to the last answered: autocannon ends
    // a run of a set amount at its next whole second, so its own
    // duration would make every short run's rate alike.
    rps: r.requests.total / ((last - start) / 1000),
    p50: r.latency.p50,
    p99: r.latency.p99,
    total: r.requests.total,
    bad: r.non2xx + r.errors + r.timeouts,
  };
}

const median = (xs) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

const apps = [];
try {
  const one = await issuer.token({ scope: "read:orders" });
  // Each protected route is mounted on GET /orders itself (`@use`: with
  // app.use). BENCH_ROTATE=n: the protected routes in another order.
  // BENCH_ROUTES: a comma-separated list instead.
  const guarded = ["authd:connect/2", "authd:connect/1.1", "authd:grpc", "express-jwt"];
  const turn = Number(process.env.BENCH_ROTATE ?? 0) % guarded.length;
  const routes = process.env.BENCH_ROUTES?.split(",") ?? [
    "none",
    ...guarded.slice(turn),
    ...guarded.slice(0, turn),
    "noop@use",
    "authd:connect/2@use",
    // The least any app that asks authd can spend: one node:http POST, no package.
    "by-hand",
  ];
  const unguarded = (route) => route === "none" || route.startsWith("noop");
  // Rows with new tokens: the protected routes mounted on the route.
  const renewed = routes.filter((r) => !unguarded(r) && !r.endsWith("@use"));
  const perRound = WARM_TOKENS + NEW_TOKENS;
  console.error(`minting ${perRound * ROUNDS * renewed.length} tokens...`);
  const fresh = await mint(issuer, perRound * ROUNDS * renewed.length);
  let taken = 0;
  const take = (n) => fresh.slice(taken, (taken += n));

  const rows = [];
  for (const route of routes) {
    const app = await startApp(route, ["taskset", "-c", APP_CPU], { authd, issuer, watchToken });
    apps.push(app);
    const tokens = unguarded(route) ? null : [one];
    rows.push({ route, what: "repeated", app, tokens, samples: [] });
    // The same requests as the protected rows (the token sent, not read):
    // what protection costs, apart from what a bigger request costs.
    if (route === "none") rows.push({ route, what: "repeated (sent, not read)", app, tokens: [one], samples: [] });
    if (renewed.includes(route)) rows.push({ route, what: "new", app, samples: [] });
    // Warm up: connections and JIT, with the token measured (so the cache holds it).
    await load(app.port, tokens, { duration: 2 });
  }
  const repeatedRows = rows.filter((r) => r.what !== "new");
  for (let round = 0; round < ROUNDS; round += 1) {
    for (const row of rows) {
      let s;
      if (row.what === "new") {
        // Fresh tokens of the route's own, none ever sent before: first
        // WARM_TOKENS of them, so that the path of a new token is as warm as
        // in a service that keeps seeing new ones, then the sample.
        await load(row.app.port, take(WARM_TOKENS), { amount: WARM_TOKENS });
        const mine = take(NEW_TOKENS);
        s = await sample(row.app, mine, { amount: mine.length });
      } else {
        s = await sample(row.app, row.tokens, { duration: DURATION_S });
      }
      row.samples.push(s);
      console.error(
        `round ${round + 1} ${row.route} ${row.what}: ${s.rps.toFixed(0)} req/s, ${s.cpu.toFixed(1)} µs CPU/request (main thread ${s.main.toFixed(1)}), ${s.bad} failed`,
      );
    }
  }
  const table = repeatedRows.concat(rows.filter((r) => r.what === "new"));
  const none = repeatedRows.find((r) => r.route === "none" && r.what === "repeated");
  for (const app of apps.splice(0)) await app.stop();

  // Revocation to refusal through the cache: revoke a session whose token
  // the cache holds, and time until the cache refuses it.
  const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
  const delays = [];
  for (const protocol of ["connect", "grpc"]) {
    const client = new AuthClient({ endpoints: authd.uri, watchToken, protocol }).watch();
    const plain = new AuthClient({ endpoints: authd.uri, cache: false, protocol });
    await eventually(() => client.cacheState === "answering");
    const fromCall = [];
    const fromAnswer = [];
    for (let i = 0; i < REVOCATIONS; i += 1) {
      const login = await issuer.passwordLogin("alice");
      const session = await plain.createSession({
        existingTokens: { refreshToken: login.refresh_token, idToken: login.id_token, accessToken: login.access_token },
      });
      await client.verifyToken(session.accessToken);
      if (!client.cached(session.accessToken)) throw new Error("not cached");
      const t0 = performance.now();
      const revoked = plain.revokeSession({ sessionHandle: session.sessionHandle }).then(() => performance.now());
      while (client.cached(session.accessToken)) await new Promise((r) => setImmediate(r));
      const t1 = performance.now();
      fromCall.push(t1 - t0);
      fromAnswer.push(t1 - (await revoked));
    }
    client.close();
    plain.close();
    delays.push({ protocol, fromCall, fromAnswer });
  }

  console.log(
    `\nGET /orders, app on CPU ${APP_CPU}, ${CONNECTIONS} connections; ${ROUNDS} rounds, the routes in turns; repeated: ${DURATION_S} s a sample; new: ${NEW_TOKENS} tokens a sample, one request each\n`,
  );
  console.log(
    "| route | tokens | req/s | × unprotected (req/s) | × unprotected (CPU) | app CPU µs/req (rounds) | main thread µs/req | × unprotected (main thread) | p99 ms | requests | failed |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|---|");
  const x = (a, b) => median(a.samples.map((s, i) => b(s, none.samples[i])));
  for (const r of table) {
    const bad = r.samples.reduce((n, s) => n + s.bad, 0);
    const total = r.samples.reduce((n, s) => n + s.total, 0);
    const rounds = r.samples.map((s) => s.cpu.toFixed(1)).join(", ");
    const byRps = r.what === "new" || !none ? "—" : x(r, (s, n) => s.rps / n.rps).toFixed(2);
    const byCpu = r.what === "new" || !none ? "—" : x(r, (s, n) => n.cpu / s.cpu).toFixed(2);
    const byMain = r.what === "new" || !none ? "—" : x(r, (s, n) => n.main / s.main).toFixed(2);
    const main = median(r.samples.map((s) => s.main)).toFixed(1);
    console.log(
      `| ${r.route} | ${r.what} | ${median(r.samples.map((s) => s.rps)).toFixed(0)} | ${byRps} | ${byCpu} | ${median(r.samples.map((s) => s.cpu)).toFixed(1)} (${rounds}) | ${main} | ${byMain} | ${median(r.samples.map((s) => s.p99))} | ${total} | ${bad} |`,
    );
  }

  // Issue 19's target for new tokens: ahead of express-jwt. Same-round
  // ratios, express-jwt's CPU a request over the row's (above 1: ahead).
  const peer = rows.find((r) => r.route === "express-jwt" && r.what === "new");
  if (peer) {
    console.log("\nnew tokens, app CPU × express-jwt's (express-jwt's µs ÷ the row's, same-round; above 1: cheaper):");
    for (const r of rows.filter((r) => r.what === "new" && r !== peer)) {
      const ratios = r.samples.map((s, i) => peer.samples[i].cpu / s.cpu);
      console.log(`- ${r.route}: ${median(ratios).toFixed(2)} (${ratios.map((v) => v.toFixed(2)).join(", ")})`);
    }
  }

  const f = (x) => x.toFixed(2);
  for (const { protocol, fromCall, fromAnswer } of delays) {
    console.log(`\nrevocation → refusal through the Node cache (${protocol}), ${REVOCATIONS} sessions (ms):`);
    console.log(
      `- from the RevokeSession call: p50 ${f(pct(fromCall, 50))}, p99 ${f(pct(fromCall, 99))}, max ${f(Math.max(...fromCall))}`,
    );
    console.log(
      `- after RevokeSession answered: p50 ${f(pct(fromAnswer, 50))}, p99 ${f(pct(fromAnswer, 99))}, max ${f(Math.max(...fromAnswer))} (negative: the push beat the answer)`,
    );
  }
} finally {
  for (const app of apps) await app.stop();
  await authd.stop();
  await issuer.stop();
}
