// Where the app's CPU goes on a cache miss: app.mjs (BENCH_MODE, default
// authd) run with --cpu-prof under the new-token load (one request per
// token, none seen before), then its profile summed by self time, grouped by
// package. `node profile.mjs` (with AUTHD_BIN); PROFILE_DIR keeps the
// .cpuprofile (default: a temporary directory).
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";

import autocannon from "autocannon";

import { AUDIENCE, Authd, Issuer } from "../test/support.mjs";

const MODE = process.env.BENCH_MODE ?? "authd";
const TOKENS = Number(process.env.BENCH_NEW_TOKENS ?? 5_000);
/** A process's CPU time (user + system) so far, in ms, from /proc. */
export function cpuMs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8")
    .replace(/^.*\) /s, "")
    .split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

const dir = process.env.PROFILE_DIR ?? mkdtempSync(path.join(tmpdir(), "authd-prof-"));

const issuer = await Issuer.start();
const authd = await Authd.start(issuer.sessionsConfig());
try {
  const watchToken = await issuer.token({ permissions: "revocations:watch" });
  const tokens = [];
  for (let i = 0; i < TOKENS + 500; i += 64) {
    const n = Math.min(64, TOKENS + 500 - i);
    tokens.push(
      ...(await Promise.all(
        Array.from({ length: n }, (_, j) => issuer.token({ scope: "read:orders", jti: `p-${i + j}` })),
      )),
    );
  }
  const child = spawn(
    "taskset",
    [
      "-c",
      process.env.BENCH_APP_CPU ?? "0",
      process.execPath,
      "--cpu-prof",
      `--cpu-prof-dir=${dir}`,
      new URL("./app.mjs", import.meta.url).pathname,
    ],
    {
      env: {
        ...process.env,
        BENCH_MODE: MODE,
        AUTHD_URL: authd.uri,
        ISSUER_URL: issuer.url,
        WATCH_TOKEN: watchToken,
        AUDIENCE,
      },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  const port = await new Promise((resolve) =>
    createInterface({ input: child.stdout }).on("line", (l) => l.startsWith("READY ") && resolve(Number(l.slice(6)))),
  );
  let i = 0;
  const run = (list) =>
    autocannon({
      url: `http://127.0.0.1:${port}/orders`,
      connections: 32,
      amount: list.length,
      requests: [
        { setupRequest: (req) => ({ ...req, headers: { authorization: `Bearer ${list[i++ % list.length]}` } }) },
      ],
    });
  await run(tokens.slice(0, 500)); // warm-up
  i = 0;
  const cpu0 = cpuMs(child.pid);
  const r = await run(tokens.slice(500));
  const perRequest = ((cpuMs(child.pid) - cpu0) * 1000) / TOKENS;
  console.log(
    `${MODE}: ${r.requests.average} req/s, app CPU ${perRequest.toFixed(0)} µs/request, ${r.non2xx + r.errors} failed`,
  );
  await new Promise((resolve) => (child.once("exit", resolve), child.kill("SIGTERM")));
  const file = readdirSync(dir)
    .filter((f) => f.endsWith(".cpuprofile"))
    .sort()
    .at(-1);
  const profile = JSON.parse(readFileSync(path.join(dir, file), "utf8"));
  // Self time per node from the samples.
  const dt = new Map();
  for (let k = 0; k < profile.samples.length; k += 1) {
    dt.set(profile.samples[k], (dt.get(profile.samples[k]) ?? 0) + (profile.timeDeltas[k] ?? 0));
  }
  const parent = new Map();
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const packageOf = (url, functionName) =>
    /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1] ??
    (/clients\/node\/dist\//.test(url)
      ? "@authd/client"
      : url.startsWith("node:")
        ? url
        : url
          ? path.basename(url)
          : `(${functionName || "native"})`);
  // Self time charged to the nearest frame of a package (not node's own
  // modules, not native): who made node do that work.
  const byCaller = new Map();
  for (const node of profile.nodes) {
    const t = dt.get(node.id) ?? 0;
    if (!t) continue;
    let id = node.id;
    let who;
    let nodeModule;
    while (id !== undefined) {
      const { url, functionName } = byId.get(id).callFrame;
      if (url && !url.startsWith("node:") && !url.startsWith("internal")) {
        who = packageOf(url, functionName);
        break;
      }
      if (url && !nodeModule) nodeModule = url;
      id = parent.get(id);
    }
    // Called from node's event loop with no package frame: by the module
    // that ran (e.g. node:internal/http2/core reading grpc-js's frames).
    who ??= nodeModule ? `${nodeModule} (no package frame)` : `(${node.callFrame.functionName || "native"})`;
    byCaller.set(who, (byCaller.get(who) ?? 0) + t);
  }
  const byPackage = new Map();
  const byFunction = new Map();
  let total = 0;
  for (const node of profile.nodes) {
    const t = dt.get(node.id) ?? 0;
    if (!t) continue;
    total += t;
    const { url, functionName, lineNumber } = node.callFrame;
    const pkg = packageOf(url, functionName);
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + t);
    const fn = `${functionName || "(anonymous)"} ${url ? `${path.basename(url)}:${lineNumber + 1}` : ""}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + t);
  }
  const show = (map, n) =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(
        ([k, v]) =>
          `${((100 * v) / total).toFixed(1).padStart(5)}%  ${(v / TOKENS).toFixed(1).padStart(6)} µs/req  ${k}`,
      )
      .join("\n");
  console.log(`profile: ${path.join(dir, file)}; ${(total / 1000).toFixed(0)} ms sampled over ${TOKENS} requests`);
  console.log(`\nby package (self time):\n${show(byPackage, 15)}`);
  console.log(`\nby package, node's own work charged to the package that asked for it:\n${show(byCaller, 15)}`);
  console.log(`\nby function (self time):\n${show(byFunction, 30)}`);
} finally {
  await authd.stop();
  await issuer.stop();
}
