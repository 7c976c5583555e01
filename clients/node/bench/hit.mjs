// The cost of a cache hit in-process, without HTTP: the Express middleware's
// whole hit path (header parsing, cache lookup, req.auth) and
// client.cached() alone. The loop yields every 10 000 calls, so that the
// revocation stream's heartbeats keep the cache answering.
import { AuthClient } from "@authd/client";
import { auth } from "@authd/client/express";
import { Authd, Issuer, eventually } from "../test/support.mjs";
const issuer = await Issuer.start();
const authd = await Authd.start(issuer.sessionsConfig());
const client = new AuthClient({
  endpoints: authd.uri,
  watchToken: await issuer.token({ permissions: "revocations:watch" }),
}).watch();
await eventually(() => client.cacheState === "answering");
const token = await issuer.token({ scope: "read:orders" });
await client.verifyToken(token);
const mw = auth({ client });
const req = { headers: { authorization: `Bearer ${token}` } };
for (const round of [1, 2, 3]) {
  const n = 100_000;
  let busy = 0;
  for (let k = 0; k < 10; k++) {
    const t = performance.now();
    for (let i = 0; i < n / 10; i++)
      mw(req, null, (e) => {
        if (e) throw e;
      });
    busy += performance.now() - t;
    await new Promise((r) => setImmediate(r));
  }
  const perHit = (busy * 1000) / n;
  if (client.cacheState !== "answering") throw new Error(client.cacheState);
  const t1 = performance.now();
  for (let i = 0; i < n; i++) client.cached(token);
  console.log(
    `round ${round}: middleware hit ${perHit.toFixed(2)} µs; client.cached ${(((performance.now() - t1) * 1000) / n).toFixed(2)} µs`,
  );
}
client.close();
await authd.stop();
await issuer.stop();
