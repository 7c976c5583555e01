// The benchmark of issue 19 item 6, one run: GET /orders unprotected, behind
// @authd/client (warm cache), and behind express-jwt + jwks-rsa as the
// classic Auth0 snippet configures them; with one token repeated and with a
// new token on every request; the unprotected route also with the token sent
// (not read). The app is pinned to CPU 0 (BENCH_APP_CPU),
// everything else — authd, the issuer, autocannon — to the other CPU(s) by
// `./run`. @authd/client is measured speaking each protocol to authd
// (Connect over HTTP/2 and over HTTP/1.1, and gRPC). Each row has the app's CPU time per request (user +
// system, from /proc, over the measured requests). Then the
// revocation-to-refusal delay through the Node cache, in each protocol.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";

import autocannon from "autocannon";
import { AuthClient } from "@authd/client";

import { AUDIENCE, Authd, Issuer, eventually } from "../test/support.mjs";

const APP_CPU = process.env.BENCH_APP_CPU ?? "0";
const DURATION_S = Number(process.env.BENCH_SECONDS ?? 10);
const NEW_TOKENS = Number(process.env.BENCH_NEW_TOKENS ?? 5_000);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const REVOCATIONS = Number(process.env.BENCH_REVOCATIONS ?? 200);

const issuer = await Issuer.start();
const authd = await Authd.start(issuer.sessionsConfig());
const watchToken = await issuer.token({ permissions: "revocations:watch" });

async function mint(n) {
  const tokens = [];
  for (let i = 0; i < n; i += 64) {
    const batch = Array.from({ length: Math.min(64, n - i) }, (_, j) =>
      issuer.token({ scope: "read:orders", jti: `b-${i + j}` }),
    );
    tokens.push(...(await Promise.all(batch)));
  }
  return tokens;
}

/** A process's CPU time (user + system) so far, in µs, from /proc (USER_HZ 100). */
function cpuUs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8")
    .replace(/^.*\) /s, "")
    .split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

async function startApp(mode, protocol, httpVersion) {
  const child = spawn("taskset", ["-c", APP_CPU, process.execPath, new URL("./app.mjs", import.meta.url).pathname], {
    env: {
      ...process.env,
      BENCH_MODE: mode,
      AUTHD_URL: authd.uri,
      AUTHD_PROTOCOL: protocol ?? "",
      AUTHD_HTTP_VERSION: httpVersion ?? "",
      ISSUER_URL: issuer.url,
      WATCH_TOKEN: watchToken,
      AUDIENCE,
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const port = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on("line", (l) => l.startsWith("READY ") && resolve(Number(l.slice(6))));
    child.once("exit", (code) => reject(new Error(`app ${mode} exited ${code}`)));
  });
  return { port, pid: child.pid, stop: () => new Promise((r) => (child.once("exit", r), child.kill("SIGTERM"))) };
}

function load(port, tokens, options) {
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
      },
    ],
  });
}

const rows = [];
async function measure(route, what, tokens, options, warmup) {
  // mode[:protocol[/HTTP version]]
  const [mode, how = ""] = route.split(":");
  const [protocol, httpVersion] = how.split("/");
  const app = await startApp(mode, protocol, httpVersion);
  try {
    // Warm up: connections and JIT, with a token of its own (for
    // repeated: the one measured, so the cache holds it).
    await load(app.port, warmup, { duration: 2 });
    const cpu0 = cpuUs(app.pid);
    const r = await load(app.port, tokens, options);
    const cpu = (cpuUs(app.pid) - cpu0) / Math.max(1, r.requests.total);
    const bad = r.non2xx + r.errors + r.timeouts;
    rows.push({
      mode: route,
      what,
      cpu,
      // Requests over the run's duration (to 10 ms): a new-token run lasts
      // a few seconds, too few for autocannon's per-second average.
      rps: r.requests.total / r.duration,
      p50: r.latency.p50,
      p99: r.latency.p99,
      total: r.requests.total,
      bad,
    });
    console.error(
      `${route} ${what}: ${(r.requests.total / r.duration).toFixed(0)} req/s, ${cpu.toFixed(0)} µs CPU/request, p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms, ${bad} failed`,
    );
  } finally {
    await app.stop();
  }
}

try {
  const one = await issuer.token({ scope: "read:orders" });
  // BENCH_ROTATE=n: the protected routes in another order (runs alternate
  // it, so that none is always measured first on a machine whose load moves).
  const guarded = ["authd:connect/2", "authd:connect/1.1", "authd:grpc", "express-jwt"];
  const turn = Number(process.env.BENCH_ROTATE ?? 0) % guarded.length;
  const routes = ["none", ...guarded.slice(turn), ...guarded.slice(0, turn)];
  const protectedRoutes = routes.length - 1;
  console.error(`minting ${NEW_TOKENS * protectedRoutes} tokens...`);
  const fresh = await mint(NEW_TOKENS * protectedRoutes);
  let share = 0;
  for (const route of routes) {
    const warmup = route === "none" ? null : [one];
    await measure(route, "repeated", warmup, { duration: DURATION_S }, warmup);
    // The same requests as the protected rows (the token sent, not read):
    // what protection costs, apart from what a bigger request costs.
    if (route === "none") await measure(route, "repeated (sent, not read)", [one], { duration: DURATION_S }, [one]);
    if (route !== "none") {
      // Each its own share of the fresh tokens: none has been seen by authd or the app.
      const mine = fresh.slice(share * NEW_TOKENS, (share + 1) * NEW_TOKENS);
      share += 1;
      await measure(route, "new", mine, { amount: mine.length }, warmup);
    }
  }

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

  const none = rows.find((r) => r.mode === "none").rps;
  console.log(
    `\nGET /orders, app on CPU ${APP_CPU}, ${CONNECTIONS} connections; repeated: ${DURATION_S} s; new: one request per token\n`,
  );
  console.log("| route | tokens | req/s | × unprotected | app CPU µs/req | p50 ms | p99 ms | requests | failed |");
  console.log("|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(
      `| ${r.mode} | ${r.what} | ${r.rps.toFixed(0)} | ${(r.rps / none).toFixed(2)} | ${r.cpu.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.total} | ${r.bad} |`,
    );
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
  await authd.stop();
  await issuer.stop();
}
