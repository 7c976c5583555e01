// Instructions a request costs the app, counted by callgrind: the figure that
// does not move with the machine's load, where requests/s and CPU time move
// by tens of per cent within minutes on a shared machine.
//
// Each row's app (app.mjs, the same GET /orders as run.mjs) runs under
// `valgrind --tool=callgrind --smc-check=all --separate-threads=yes` (V8
// writes its code at run time); one keep-alive connection sends it
// BENCH_WARMUP requests, then the counters are zeroed (`callgrind_control
// -z`), BENCH_REQUESTS more are sent and counted (`callgrind_control -d`).
// Two figures a row, each divided by the requests counted:
//   - the main thread: Express, the package, node's HTTP, the JavaScript
//     itself; within ~3 % from run to run;
//   - the whole process: with V8's helper threads. Under callgrind their
//     work is mostly TurboFan compiling (70–99 % of it), which never stops
//     altogether; after 500 warm-up requests an app with @authd/client
//     still compiled its code for the first time (45–73 k instructions a
//     request more than the unprotected app), after 8,000 no longer, so
//     8,000 is the default warm-up. It comes in lumps, ±10 % a row between
//     runs.
// New-token rows send each token once, the warmup included, so that every
// counted request is a cache miss that asks authd.
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
const WARMUP = Number(process.env.BENCH_WARMUP ?? 8_000);

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

/** Dumps the counters of `pid` (`callgrind_control -d`): the main thread's total and the whole process's. */
function dump(out, pid) {
  execFileSync("callgrind_control", ["-d", String(pid)], { stdio: "ignore" });
  // The last dump: one file per thread, `<out>.<pid>.<dump>-<thread>`; the main thread is 01.
  const prefix = `${out.slice(work.length + 1)}.${pid}.`;
  const dumps = readdirSync(work).filter((f) => f.startsWith(prefix));
  const dumpOf = (f) => Number(f.slice(prefix.length).split("-")[0]);
  const last = Math.max(...dumps.map(dumpOf));
  let main = 0;
  let all = 0;
  for (const f of dumps.filter((d) => dumpOf(d) === last)) {
    const found = /^(?:summary|totals): (\d+)/m.exec(readFileSync(join(work, f), "utf8"));
    if (!found) throw new Error(`no totals in ${f}`);
    all += Number(found[1]);
    if (f.endsWith("-01")) main = Number(found[1]);
  }
  if (!main) throw new Error(`no main thread among ${dumps.join(", ")}`);
  return { main, all };
}

/** Instructions per request of the app of `route` (mode[:protocol[/HTTP version]][@use]). */
async function count(route, tokens, warmup) {
  const out = join(work, `callgrind.${route.replace(/[^a-z0-9.]/gi, "_")}.${tokens ? tokens.length : 0}`);
  const app = await startApp(
    route,
    ["valgrind", "--tool=callgrind", "--smc-check=all", "--separate-threads=yes", `--callgrind-out-file=${out}.%p`],
    { authd, issuer, watchToken },
    "ignore",
  );
  try {
    const { port, pid } = app;
    await send(port, warmup, WARMUP);
    execFileSync("callgrind_control", ["-z", String(pid)], { stdio: "ignore" });
    await send(port, tokens, REQUESTS);
    const counted = dump(out, pid);
    return { main: counted.main / REQUESTS, all: counted.all / REQUESTS };
  } finally {
    await app.stop();
  }
}

try {
  const one = [await issuer.token({ scope: "read:orders" })];
  // BENCH_ROUTES: only these routes, beside the unprotected one (the base of the ratios).
  const only = process.env.BENCH_ROUTES?.split(",");
  const wanted = (route) => !only || only.includes(route);
  const rows = [
    ["none", "repeated", null, null],
    ["none", "repeated (sent, not read)", one, one],
    ["noop@use", "repeated", null, null],
    ["authd:connect/2", "repeated", one, one],
    ["authd:connect/2@use", "repeated", one, one],
    ["express-jwt", "repeated", one, one],
  ].filter(([route], i) => i === 0 || wanted(route));
  for (const route of ["by-hand", "authd:connect/2", "authd:connect/1.1", "express-jwt"].filter(wanted)) {
    const fresh = await mint(issuer, WARMUP + REQUESTS);
    rows.push([route, "new", fresh.slice(WARMUP), fresh.slice(0, WARMUP)]);
  }
  const figures = [];
  const n = (x) => Math.round(x).toLocaleString("en");
  for (const [route, what, tokens, warmup] of rows) {
    const started = performance.now();
    const { main, all } = await count(route, tokens, warmup);
    figures.push({ route, what, main, all });
    console.error(
      `${route} ${what}: ${n(main)} instructions a request on the main thread, ${n(all)} in all (${((performance.now() - started) / 1000).toFixed(0)} s)`,
    );
  }
  const base = figures[0];
  const ratio = (r, k) => (r.what === "new" ? "—" : (base[k] / r[k]).toFixed(2));
  console.log(`\n${REQUESTS} requests after ${WARMUP}, one keep-alive connection, callgrind; instructions a request\n`);
  console.log("| route | tokens | main thread | × unprotected | whole process | × unprotected |");
  console.log("|---|---|---:|---:|---:|---:|");
  for (const r of figures) {
    console.log(`| ${r.route} | ${r.what} | ${n(r.main)} | ${ratio(r, "main")} | ${n(r.all)} | ${ratio(r, "all")} |`);
  }
  console.log(JSON.stringify({ requests: REQUESTS, warmup: WARMUP, rows: figures }));
} finally {
  await authd.stop();
  await issuer.stop();
}
