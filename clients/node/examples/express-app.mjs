// The README's Express app, as written there. `node examples/express-app.mjs`
// with AUTHD_URL and AUTHD_WATCH_TOKEN set; the tests import `app()`.
import express from "express";
import { AuthClient } from "@authd/client";
import { auth, requiredScopes } from "@authd/client/express";

export function app({ authdUrl = process.env.AUTHD_URL, watchToken = process.env.AUTHD_WATCH_TOKEN, client } = {}) {
  const authd = client ?? new AuthClient({ endpoints: authdUrl, watchToken });

  const app = express();
  app.get("/healthz", (req, res) => res.send("ok"));

  app.use(auth({ client: authd, audience: "https://api.authd.test" }));
  app.get("/orders", requiredScopes("read:orders"), (req, res) => {
    res.json({ user: req.auth.payload.sub, scope: req.auth.payload.scope });
  });
  app.delete("/orders/:id", requiredScopes("delete:orders"), (req, res) => res.sendStatus(204));
  return app;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  app().listen(8080, () => console.log("listening on http://127.0.0.1:8080"));
}
