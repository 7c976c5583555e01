// What the tests share: free ports (as tests/src/lib.rs takes them), the
// real test issuer (tests/issuer) and the real authd binary, started per
// test file and stopped after it. Nothing here mocks authd.
//
// Environment: AUTHD_REPO (the repository root; default: two levels up from
// this package), AUTHD_BIN (default <repo>/target/debug/authd),
// AUTHD_PROTOCOL (the protocol every test's client speaks: connect or grpc;
// default: the client's own default), AUTHD_HTTP_VERSION (Connect's: 2 or
// 1.1; default: the client's).

import { spawn } from "node:child_process";
import { once } from "node:events";
import { createWriteStream, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = process.env.AUTHD_REPO ?? path.resolve(here, "../../..");
export const AUTHD_BIN = process.env.AUTHD_BIN ?? path.join(REPO, "target/debug/authd");
export const AUDIENCE = "https://api.authd.test";
export const CLIENT_ID = "authd-test-client";
export const CLIENT_SECRET = "authd-test-secret";
/** `{ protocol }` for every test's AuthClient, from AUTHD_PROTOCOL (empty: the client's default). */
export const PROTOCOL = process.env.AUTHD_PROTOCOL || undefined;
if (PROTOCOL !== undefined && PROTOCOL !== "connect" && PROTOCOL !== "grpc") {
  throw new Error(`AUTHD_PROTOCOL: connect or grpc, not ${PROTOCOL}`);
}
/** AUTHD_HTTP_VERSION (Connect: 2 or 1.1; empty: the client's default). */
export const HTTP_VERSION = process.env.AUTHD_HTTP_VERSION || undefined;
export const transport = {
  ...(PROTOCOL === undefined ? {} : { protocol: PROTOCOL }),
  ...(HTTP_VERSION === undefined ? {} : { httpVersion: HTTP_VERSION }),
};
export const TEST_SEAL_KEY = "dGVzdC1rZXktMzItYnl0ZXMtZm9yLWF1dGhkLXRlc3Q=";

// === ports ===

const canBind = (port) =>
  new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen({ port, host: "127.0.0.1", exclusive: true }, () => server.close(() => resolve(true)));
  });

let nextPort = 0;
/**
 * A free loopback port for a process that binds it later: from below the
 * kernel's ephemeral range (a port in that range can be taken by any
 * outgoing connection between our check and the later bind), starting at an
 * offset derived from the pid, each one checked by binding it.
 */
export async function freePort() {
  let ephemeralStart = 32768;
  try {
    ephemeralStart = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
  } catch {
    // not Linux: the usual default
  }
  const LOWEST = 10_000;
  const span = ephemeralStart - LOWEST;
  const offset = (process.pid * 7919) % span;
  for (let i = 0; i < span; i += 1) {
    const port = LOWEST + ((offset + nextPort++) % span);
    if (await canBind(port)) return port;
  }
  throw new Error("no free loopback port below the ephemeral range");
}

/** Polls until `check()` is truthy, at most `withinMs`; answers its value. */
export async function eventually(check, { withinMs = 10_000, everyMs = 20, what = "condition" } = {}) {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${withinMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

const accepts = (port) =>
  new Promise((resolve) => {
    const socket = net.connect({ port, host: "127.0.0.1" });
    socket.once("connect", () => (socket.destroy(), resolve(true)));
    socket.once("error", () => resolve(false));
  });

// === the issuer ===

export class Issuer {
  static async start() {
    const child = spawn(
      process.execPath,
      [path.join(REPO, "tests/issuer/issuer.js"), "--port", "0", "--audience", AUDIENCE],
      // Its log only when asked for (AUTHD_TEST_VERBOSE=1).
      { stdio: ["ignore", "pipe", process.env.AUTHD_TEST_VERBOSE ? "inherit" : "ignore"] },
    );
    const lines = createInterface({ input: child.stdout });
    const url = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("issuer did not print READY within 20 s")), 20_000);
      lines.on("line", (line) => {
        if (line.startsWith("READY ")) (clearTimeout(timer), resolve(line.slice(6).trim()));
      });
      child.once("exit", (code) => reject(new Error(`issuer exited (${code}) before READY`)));
    });
    return new Issuer(child, url);
  }

  constructor(child, url) {
    this.child = child;
    /** Its `iss`, with the trailing slash. */
    this.url = url;
  }

  async post(where, { form, json }) {
    const response = await fetch(
      this.url + where,
      form
        ? { method: "POST", body: new URLSearchParams(form) }
        : { method: "POST", body: JSON.stringify(json ?? {}), headers: { "content-type": "application/json" } },
    );
    const body = await response.json();
    if (!response.ok) throw new Error(`${where}: ${response.status} ${JSON.stringify(body)}`);
    return body;
  }

  /** An access token from the issuer's real token endpoint (client credentials, with its knobs). */
  async token(knobs = {}) {
    const form = { grant_type: "client_credentials", client_id: CLIENT_ID, client_secret: CLIENT_SECRET, ...knobs };
    return (await this.post("oauth/token", { form })).access_token;
  }

  /** A user's tokens by the password grant (an access token with `sid`, a refresh token, an id token). */
  async passwordLogin(user) {
    return this.post("oauth/token", {
      form: {
        grant_type: "password",
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        username: user,
        password: `${user}-password`,
        scope: "openid profile email offline_access",
        audience: AUDIENCE,
      },
    });
  }

  control(what, body = {}) {
    return this.post(`__control/${what}`, { json: body });
  }

  /** The `[[issuers]]` entry with authd's OAuth client, a sealing key and fast refetches. */
  sessionsConfig(extra = "") {
    return (
      `[[issuers]]\nissuer = "${this.url}"\naudiences = ["${AUDIENCE}"]\nalgorithms = ["RS256"]\n` +
      `client_id = "${CLIENT_ID}"\nclient_secret = { value = "${CLIENT_SECRET}" }\nrequest_timeout_ms = 1500\n` +
      `[[secrets.keys]]\nid = "k1"\nvalue = "${TEST_SEAL_KEY}"\n` +
      `[jwks]\nmin_refetch_interval_seconds = 0\n${extra}`
    );
  }

  async stop() {
    if (this.child.exitCode !== null) return;
    this.child.kill("SIGTERM");
    await once(this.child, "exit");
  }
}

// === authd ===

export class Authd {
  /**
   * Starts `authd serve` with `toml` (without `[server]` or `[store]`, which
   * this sets), on a free port, in a temporary directory; `port` and `dir`
   * start it again where an earlier one ran (same store, same address);
   * `server`, lines of its `[server]` table beside `listen`.
   */
  static async start(toml, { port, dir, server = "" } = {}) {
    dir ??= mkdtempSync(path.join(tmpdir(), "authd-node-"));
    port ??= await freePort();
    const config = path.join(dir, "authd.toml");
    writeFileSync(
      config,
      `[server]\nlisten = "127.0.0.1:${port}"\n${server}[store]\npath = "${path.join(dir, "data")}"\n${toml}`,
    );
    const log = createWriteStream(path.join(dir, "authd.log"), { flags: "a" });
    await once(log, "open");
    const child = spawn(AUTHD_BIN, ["serve", "--config", config], {
      stdio: ["ignore", log, log],
      env: { ...process.env, RUST_LOG: "warn" },
    });
    const exited = once(child, "exit").then(([code]) => {
      throw new Error(`authd exited (${code}) before listening: see ${path.join(dir, "authd.log")}`);
    });
    await Promise.race([eventually(() => accepts(port), { withinMs: 30_000, what: "authd's port" }), exited]);
    exited.catch(() => undefined);
    return new Authd(child, port, dir, toml, server);
  }

  constructor(child, port, dir, toml, server = "") {
    this.child = child;
    this.port = port;
    this.dir = dir;
    this.toml = toml;
    this.server = server;
    this.uri = `http://127.0.0.1:${port}`;
  }

  signal(name) {
    this.child.kill(name);
  }

  /** Every thread's state letter, from /proc (`T`: stopped). */
  #states() {
    const tasks = `/proc/${this.child.pid}/task`;
    return readdirSync(tasks).map((t) => readFileSync(`${tasks}/${t}/stat`, "utf8").replace(/^.*\) /s, "")[0]);
  }

  /**
   * SIGSTOP, and wait until every thread is stopped: the signal is
   * delivered asynchronously, and a thread running on another CPU could
   * still answer a call made right after kill().
   */
  async pause() {
    this.child.kill("SIGSTOP");
    await eventually(() => this.#states().every((s) => s === "T"), {
      withinMs: 5_000,
      everyMs: 2,
      what: "authd stopped",
    });
  }

  resume() {
    this.child.kill("SIGCONT");
  }

  /** Stops it (SIGKILL: a crash, as far as clients can tell). */
  async kill() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGCONT");
    this.child.kill("SIGKILL");
    await once(this.child, "exit");
  }

  /** The same authd again: same port, same store. */
  async restart() {
    await this.kill();
    return Authd.start(this.toml, { port: this.port, dir: this.dir, server: this.server });
  }

  async stop({ keep = false } = {}) {
    await this.kill();
    if (!keep) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The error a promise rejects with (fails when it resolves). */
export async function rejection(promise) {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

/** `authd dev`: authd with its own development issuer, on loopback, in a temporary directory. */
export class AuthdDev {
  static async start() {
    const dir = mkdtempSync(path.join(tmpdir(), "authd-dev-"));
    const port = await freePort();
    const child = spawn(
      AUTHD_BIN,
      ["dev", "--listen", `127.0.0.1:${port}`, "--data-dir", path.join(dir, "data"), "--metrics-listen", "127.0.0.1:0"],
      { stdio: ["ignore", "pipe", "pipe"], cwd: dir, env: { ...process.env, RUST_LOG: "warn", NO_COLOR: "1" } },
    );
    let output = "";
    child.stdout.on("data", (b) => (output += b));
    child.stderr.on("data", (b) => (output += b));
    const exited = once(child, "exit").then(([code]) => {
      throw new Error(`authd dev exited (${code}):\n${output}`);
    });
    await Promise.race([eventually(() => accepts(port), { withinMs: 30_000, what: "authd dev's port" }), exited]);
    exited.catch(() => undefined);
    const dev = new AuthdDev(child, port, dir);
    dev.output = () => output;
    return dev;
  }

  constructor(child, port, dir) {
    this.child = child;
    this.dir = dir;
    this.uri = `http://127.0.0.1:${port}`;
  }

  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill("SIGTERM");
      await once(this.child, "exit");
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
