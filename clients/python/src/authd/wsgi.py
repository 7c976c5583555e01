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

**Client certificates** (RFC 8705 certificate-bound tokens) go to authd with
the token, read where WSGI servers put the TLS peer's certificate:
``environ["SSL_CLIENT_CERT"]`` (PEM: Werkzeug's server, and Apache
mod_wsgi with ``SSLOptions +ExportCertData``), else gunicorn's
``environ["gunicorn.socket"]`` (its TLS socket's ``getpeercert``), or, with
``client_cert_header=``, only from that header, as a proxy that terminates TLS
sets it (``"x-forwarded-client-cert"``: Envoy's format; any other name: a
URL-encoded PEM, as nginx's ``$ssl_client_escaped_cert``). Set a header only
behind a proxy that removes it from what clients send.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .client import AuthClient
from .middleware import (
    Refusal,
    ScopeRules,
    certificate_from_header,
    missing,
    pem_to_der,
    presented,
    verify,
)
from .types import VerifiedToken

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: Where a verified request's token is kept in the WSGI environ.
ENVIRON_KEY = "authd.token"

_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}


def environ_key(header: str) -> str:
    """The WSGI environ key of an HTTP request header (``HTTP_X_...``)."""
    return "HTTP_" + header.upper().replace("-", "_")


def client_certificate(environ: Mapping[str, Any], header: str | None = None) -> bytes | None:
    """The request's TLS client certificate (DER): from ``header`` when one
    is configured (then only from there), else ``SSL_CLIENT_CERT`` (PEM),
    else the peer certificate of gunicorn's TLS socket. ``None`` when the
    client sent none; raises `Refusal` (400) when what is there is not a
    certificate."""
    if header is not None:
        value = environ.get(environ_key(header))
        return certificate_from_header(header, value) if value else None
    pem = environ.get("SSL_CLIENT_CERT")
    if pem:
        return pem_to_der(pem, "SSL_CLIENT_CERT")
    sock = environ.get("gunicorn.socket")
    peer = getattr(sock, "getpeercert", None)
    if peer is not None:
        try:
            der = peer(binary_form=True)
        except ValueError:  # not connected, or the handshake has not finished
            return None
        return bytes(der) if der else None
    return None


class AuthMiddleware:
    """Verifies the bearer token of every request with authd before it
    reaches ``app``. ``rules``: the scopes per path (default: a verified
    token, no particular scope). ``dpop_origin``: the scheme and authority
    clients address this service by, for DPoP proofs' ``htu``.
    ``client_cert_header``: the header a TLS-terminating proxy puts the
    client certificate in (``"x-forwarded-client-cert"`` for Envoy's XFCC,
    or one holding a URL-encoded PEM); ``None`` (the default) reads the
    server's ``SSL_CLIENT_CERT`` or gunicorn's socket instead."""

    def __init__(
        self,
        app: WSGIApp,
        client: AuthClient,
        rules: ScopeRules | None = None,
        dpop_origin: str | None = None,
        client_cert_header: str | None = None,
    ) -> None:
        self.app = app
        self.client = client
        self.rules = rules or ScopeRules()
        self.dpop_origin = dpop_origin
        self.client_cert_header = client_cert_header

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
            p = p.with_certificate(client_certificate(environ, self.client_cert_header))
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
