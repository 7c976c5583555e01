// Instructions a request costs the app, counted by callgrind: the figure that
// does not move with the machine's load, where requests/s and CPU time move
// by tens of per cent within minutes on a shared machine.
//
// Each row's app (app.mjs, the same GET /orders as run.mjs) runs under
// `valgrind --tool=callgrind --smc-check=all` (V8 writes its code at run
// time); one keep-alive connection sends it BENCH_WARMUP requests, then the
// counters are zeroed (`callgrind_control -z`), BENCH_REQUESTS more are sent
// and counted (`callgrind_control -d`). A row's figure is the instructions of
// the whole node process (Express, the package, V8's compilers and collector,
// the revocation stream's heartbeats) over those requests, divided by their
// number. New-token rows send each token once, the warmup included, so that
// every counted request is a cache miss that asks authd.
//
//   AUTHD_BIN=… node instructions.mjs      # from clients/node/bench; valgrind
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { Authd, Issuer } from "../test/support.mjs";
import { mint, startApp } from "./apps.mjs";

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 2_000);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 500);

const issuer = await Issuer.start();
const authd = await Authd.start(issuer.sessionsConfig());
const watchToken = await issuer.token({ permissions: "revocations:watch" });
const work = mkdtempSync(join(tmpdir(), "authd-node-instructions-"));

/** `tokens` (null: none) sent one after another on one keep-alive connection; each must be 200. */
async function send(port, tokens, count) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < count; i += 1) {
    const token = tokens?.[i % tokens.length];
    await new Promise((resolve, reject) => {
      const req = http.get(
        { host: "127.0.0.1", port, path: "/orders", agent, headers: token ? { authorization: `Bearer ${token}` } : {} },
        (res) => {
          res.resume();
          res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`answered ${res.statusCode}`))));
        },
      );
      req.on("error", reject);
    });
  }
  agent.destroy();
}

/** Instructions per request of the app of `route` (mode[:protocol[/HTTP version]][@use]). */
async function count(route, tokens, warmup) {
  const out = join(work, `callgrind.${route.replace(/[^a-z0-9.]/gi, "_")}.${tokens ? tokens.length : 0}`);
  const app = await startApp(
    route,
    ["valgrind", "--tool=callgrind", "--smc-check=all", `--callgrind-out-file=${out}.%p`],
    { authd, issuer, watchToken },
    "ignore",
  );
  try {
    const { port, pid } = app;
    await send(port, warmup, WARMUP);
    execFileSync("callgrind_control", ["-z", String(pid)], { stdio: "ignore" });
    await send(port, tokens, REQUESTS);
    execFileSync("callgrind_control", ["-d", String(pid)], { stdio: "ignore" });
    const prefix = `${out.slice(work.length + 1)}.${pid}.`;
    const dumps = readdirSync(work)
      .filter((f) => f.startsWith(prefix))
      .sort((a, b) => Number(a.slice(prefix.length)) - Number(b.slice(prefix.length)));
    const found = /^(?:summary|totals): (\d+)/m.exec(readFileSync(join(work, dumps.at(-1)), "utf8"));
    if (!found) throw new Error(`no totals in ${dumps.at(-1)}`);
    return Number(found[1]) / REQUESTS;
  } finally {
    await app.stop();
  }
}

try {
  const one = [await issuer.token({ scope: "read:orders" })];
  const rows = [
    ["none", "repeated", null, null],
    ["none", "repeated (sent, not read)", one, one],
    ["noop@use", "repeated", null, null],
    ["authd:connect/2", "repeated", one, one],
    ["authd:connect/2@use", "repeated", one, one],
    ["express-jwt", "repeated", one, one],
  ];
  for (const route of ["authd:connect/2", "authd:connect/1.1", "express-jwt"]) {
    const fresh = await mint(issuer, WARMUP + REQUESTS);
    rows.push([route, "new", fresh.slice(WARMUP), fresh.slice(0, WARMUP)]);
  }
  const figures = [];
  for (const [route, what, tokens, warmup] of rows) {
    const started = performance.now();
    const value = await count(route, tokens, warmup);
    figures.push({ route, what, value });
    console.error(
      `${route} ${what}: ${Math.round(value).toLocaleString("en")} instructions a request (${((performance.now() - started) / 1000).toFixed(0)} s)`,
    );
  }
  const base = figures[0].value;
  console.log(`\n${REQUESTS} requests after ${WARMUP}, one keep-alive connection, callgrind\n`);
  console.log("| route | tokens | instructions a request | × unprotected |");
  console.log("|---|---|---:|---:|");
  for (const { route, what, value } of figures) {
    const ratio = what === "new" ? "—" : (base / value).toFixed(2);
    console.log(`| ${route} | ${what} | ${Math.round(value).toLocaleString("en")} | ${ratio} |`);
  }
  console.log(JSON.stringify({ requests: REQUESTS, warmup: WARMUP, rows: figures }));
} finally {
  await authd.stop();
  await issuer.stop();
}
