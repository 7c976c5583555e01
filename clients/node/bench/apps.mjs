// What run.mjs and instructions.mjs share: the benchmark's tokens and
// app.mjs started for one route.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

import { AUDIENCE } from "../test/support.mjs";

/** `n` tokens with the route's scope, each its own `jti` (so, to authd and the app, new). */
export async function mint(issuer, n) {
  const tokens = [];
  const run = Date.now();
  for (let i = 0; i < n; i += 64) {
    const batch = Array.from({ length: Math.min(64, n - i) }, (_, j) =>
      issuer.token({ scope: "read:orders", jti: `b-${run}-${i + j}` }),
    );
    tokens.push(...(await Promise.all(batch)));
  }
  return tokens;
}

/**
 * app.mjs serving `route` (`mode[:protocol[/HTTP version]][@use]`), run as
 * `[...command, node, app.mjs]` (a `taskset`, a `valgrind`), once it answers:
 * `{ port, pid, stop }`. `context`: `{ authd, issuer, watchToken }`.
 */
export async function startApp(route, command, { authd, issuer, watchToken }, stderr = "inherit") {
  const [spec, mount = "route"] = route.split("@");
  const [mode, how = ""] = spec.split(":");
  const [protocol, httpVersion] = how.split("/");
  const [program, ...args] = [...command, process.execPath, new URL("./app.mjs", import.meta.url).pathname];
  const child = spawn(program, args, {
    env: {
      ...process.env,
      BENCH_MODE: mode,
      BENCH_MOUNT: mount,
      AUTHD_URL: authd.uri,
      AUTHD_PROTOCOL: protocol ?? "",
      AUTHD_HTTP_VERSION: httpVersion ?? "",
      ISSUER_URL: issuer.url,
      WATCH_TOKEN: watchToken,
      AUDIENCE,
    },
    stdio: ["ignore", "pipe", stderr],
  });
  const port = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on("line", (l) => l.startsWith("READY ") && resolve(Number(l.slice(6))));
    child.once("exit", (code) => reject(new Error(`app ${route} exited ${code}`)));
  });
  return { port, pid: child.pid, stop: () => new Promise((r) => (child.once("exit", r), child.kill("SIGTERM"))) };
}
