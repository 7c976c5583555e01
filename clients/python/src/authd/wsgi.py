"""`AuthMiddleware`: protects any WSGI app (Flask, Bottle, Pyramid, ...) with
authd::

    from flask import Flask, request
    from authd import AuthClient, ScopeRules
    from authd.wsgi import AuthMiddleware, verified_token

    app = Flask(__name__)
    client = AuthClient("authd.internal:50051")   # its channel is made per worker
    app.wsgi_app = AuthMiddleware(app.wsgi_app, client,
                                  ScopeRules(["read:orders"]).public("/healthz"))

    @app.get("/orders")
    def orders():
        return {"user": verified_token(request.environ).subject}

A verified request carries the `VerifiedToken` in ``environ["authd.token"]``;
a refused one is answered here (see `authd.middleware`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .client import AuthClient
from .middleware import Refusal, ScopeRules, missing, presented, verify
from .types import VerifiedToken

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: Where a verified request's token is kept in the WSGI environ.
ENVIRON_KEY = "authd.token"

_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}


class AuthMiddleware:
    """Verifies the bearer token of every request with authd before it
    reaches ``app``. ``rules``: the scopes per path (default: a verified
    token, no particular scope). ``dpop_origin``: the scheme and authority
    clients address this service by, for DPoP proofs' ``htu``."""

    def __init__(
        self,
        app: WSGIApp,
        client: AuthClient,
        rules: ScopeRules | None = None,
        dpop_origin: str | None = None,
    ) -> None:
        self.app = app
        self.client = client
        self.rules = rules or ScopeRules()
        self.dpop_origin = dpop_origin

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        scopes = self.rules.access(path)
        if scopes is None:
            return self.app(environ, start_response)
        p = presented(
            environ.get("HTTP_AUTHORIZATION"),
            environ.get("HTTP_DPOP"),
            environ.get("REQUEST_METHOD", "GET"),
            environ.get("SCRIPT_NAME", "") + path,
            self.dpop_origin,
        )
        try:
            if p is None:
                raise missing()
            environ[ENVIRON_KEY] = verify(self.client, p, scopes)
        except Refusal as refused:
            body = refused.body()
            status = f"{refused.status} {_REASONS.get(refused.status, '')}".rstrip()
            headers = [
                *refused.headers,
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
            ]
            start_response(status, headers)
            return [body]
        return self.app(environ, start_response)


def verified_token(environ: Mapping[str, Any]) -> VerifiedToken:
    """The token `AuthMiddleware` verified (Flask: ``request.environ``).
    Raises ``LookupError`` when the middleware did not run."""
    token = environ.get(ENVIRON_KEY)
    if not isinstance(token, VerifiedToken):
        raise LookupError("no token verified by authd.wsgi.AuthMiddleware for this request")
    return token
