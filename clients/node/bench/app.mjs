// One Express route, GET /orders, protected three ways (BENCH_MODE):
//   none         no authentication
//   noop         a middleware that only calls next() (what Express's own layer costs)
//   authd        @authd/client's middleware, its cache on (watching with WATCH_TOKEN),
//                speaking AUTHD_PROTOCOL to authd (connect or grpc; default: the client's),
//                Connect over AUTHD_HTTP_VERSION (2 or 1.1; default: the client's)
//   express-jwt  express-jwt + jwks-rsa exactly as the classic Auth0 snippet configures them
//   by-hand      every request's token sent to authd with one node:http POST (Connect,
//                HTTP/1.1 keep-alive), no package, no cache, no checks of the answer
//                but its status: the least any app that asks authd can spend on a request
// BENCH_MOUNT: "route" (the default) puts the middleware on the route, as
// Auth0's quickstart does (`app.get("/orders", checkJwt, handler)`); "use"
// mounts it with app.use() before every route.
// Listens on 127.0.0.1:0 and prints `READY <port>` once it can answer (for
// authd: once its cache answers).
import express from "express";

const {
  BENCH_MODE: mode,
  AUTHD_URL,
  AUTHD_PROTOCOL,
  AUTHD_HTTP_VERSION,
  ISSUER_URL,
  WATCH_TOKEN,
  AUDIENCE,
} = process.env;
const app = express();
const guards = [];
const mount = (guard) => (process.env.BENCH_MOUNT === "use" ? app.use(guard) : guards.push(guard));
app.set("env", "test"); // refusals are not logged (there should be none)
let ready = Promise.resolve();

if (mode === "authd") {
  const { AuthClient } = await import("@authd/client");
  const { auth } = await import("@authd/client/express");
  const client = new AuthClient({
    endpoints: AUTHD_URL,
    watchToken: WATCH_TOKEN,
    ...(AUTHD_PROTOCOL ? { protocol: AUTHD_PROTOCOL } : {}),
    ...(AUTHD_HTTP_VERSION ? { httpVersion: AUTHD_HTTP_VERSION } : {}),
  });
  mount(auth({ client }));
  client.watch();
  ready = new Promise((resolve) => {
    const check = setInterval(() => client.cacheState === "answering" && (clearInterval(check), resolve()), 10);
  });
} else if (mode === "express-jwt") {
  const { expressjwt: jwt } = await import("express-jwt");
  const jwksRsa = (await import("jwks-rsa")).default;
  const checkJwt = jwt({
    secret: jwksRsa.expressJwtSecret({
      cache: true,
      rateLimit: true,
      jwksRequestsPerMinute: 5,
      jwksUri: `${ISSUER_URL}.well-known/jwks.json`,
    }),
    audience: AUDIENCE,
    issuer: ISSUER_URL,
    algorithms: ["RS256"],
  });
  mount(checkJwt);
} else if (mode === "by-hand") {
  const http = await import("node:http");
  const { create, toBinary } = await import("@bufbuild/protobuf");
  const { VerifyTokenRequestSchema } = await import("../dist/esm/gen/auth/v1/auth_pb.js");
  const url = new URL(AUTHD_URL);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 100 });
  mount((req, res, next) => {
    const body = toBinary(
      VerifyTokenRequestSchema,
      create(VerifyTokenRequestSchema, { token: req.headers.authorization.slice(7) }),
    );
    const ask = http.request(
      {
        agent,
        host: url.hostname,
        port: url.port,
        method: "POST",
        path: "/auth.v1.AuthService/VerifyToken",
        headers: { "content-type": "application/proto", "content-length": body.byteLength },
      },
      (answer) => {
        answer.resume();
        answer.on("end", () => (answer.statusCode === 200 ? next() : next(new Error(`authd: ${answer.statusCode}`))));
      },
    );
    ask.on("error", next);
    ask.end(body);
  });
} else if (mode === "noop") {
  mount((req, res, next) => next());
} else if (mode !== "none") {
  throw new Error(`BENCH_MODE: ${mode}?`);
}

app.get("/orders", ...guards, (req, res) =>
  res.json({ orders: [], user: req.auth?.payload?.sub ?? req.auth?.sub ?? null }),
);

await ready;
const server = app.listen(0, "127.0.0.1", () => console.log(`READY ${server.address().port}`));
process.on("SIGTERM", () => process.exit(0));
