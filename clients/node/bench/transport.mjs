// The app's CPU per call to authd, by protocol, without Express: VerifyToken
// with the cache off, 32 calls in flight, in a child pinned to CPU 0
// (BENCH_APP_CPU), its user + system time over the calls. `node
// transport.mjs` (with AUTHD_BIN); BENCH_CALLS (5 000), BENCH_ROUNDS (3).
import { spawn } from "node:child_process";

import { Authd, Issuer } from "../test/support.mjs";

const CALLS = Number(process.env.BENCH_CALLS ?? 5_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

if (process.argv[2] === "child") {
  const { AuthClient } = await import("@authd/client");
  const [, , , variant, endpoint, token] = process.argv;
  const [protocol, httpVersion] = variant.split("/");
  const client = new AuthClient({
    endpoints: endpoint,
    protocol,
    cache: false,
    ...(httpVersion ? { httpVersion } : {}),
  });
  const run = async (n) => {
    let next = 0;
    const worker = async () => {
      while (next++ < n) await client.verifyToken(token);
    };
    await Promise.all(Array.from({ length: 32 }, worker));
  };
  await run(500); // connections and JIT
  const cpu = process.cpuUsage();
  const t = performance.now();
  await run(CALLS);
  const used = process.cpuUsage(cpu);
  const wall = performance.now() - t;
  console.log(JSON.stringify({ us: (used.user + used.system) / CALLS, rps: (CALLS * 1000) / wall }));
  client.close();
  process.exit(0);
}

const issuer = await Issuer.start();
const authd = await Authd.start(issuer.sessionsConfig());
try {
  const token = await issuer.token({ scope: "read:orders" });
  const results = { grpc: [], "connect/2": [], "connect/1.1": [] };
  for (let round = 0; round < ROUNDS; round += 1) {
    for (const protocol of Object.keys(results)) {
      const child = spawn(
        "taskset",
        [
          "-c",
          process.env.BENCH_APP_CPU ?? "0",
          process.execPath,
          new URL(import.meta.url).pathname,
          "child",
          protocol,
          authd.uri,
          token,
        ],
        { stdio: ["ignore", "pipe", "inherit"] },
      );
      let out = "";
      child.stdout.on("data", (b) => (out += b));
      await new Promise((r) => child.once("exit", r));
      const r = JSON.parse(out);
      results[protocol].push(r);
      console.error(
        `round ${round + 1} ${protocol}: ${r.us.toFixed(0)} µs of app CPU a call, ${r.rps.toFixed(0)} calls/s`,
      );
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`\nVerifyToken, cache off, 32 in flight, ${CALLS} calls a round, median of ${ROUNDS}:`);
  console.log("| protocol | app CPU µs/call | calls/s |\n|---|---|---|");
  for (const [p, rs] of Object.entries(results)) {
    console.log(`| ${p} | ${median(rs.map((r) => r.us)).toFixed(0)} | ${median(rs.map((r) => r.rps)).toFixed(0)} |`);
  }
} finally {
  await authd.stop();
  await issuer.stop();
}
