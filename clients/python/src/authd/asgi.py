"""`AuthMiddleware`: protects any ASGI app (Starlette, FastAPI, Quart) with
authd. Needs no framework::

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    import authd.aio
    from authd import ScopeRules
    from authd.asgi import AuthMiddleware, verified_token

    client = authd.aio.AuthClient("authd.internal:50051")
    app = Starlette(routes=[...], middleware=[
        Middleware(AuthMiddleware, client=client,
                   rules=ScopeRules(["read:orders"]).public("/healthz")),
    ])

    async def orders(request):
        return PlainTextResponse(verified_token().subject)

A verified request carries the `VerifiedToken` in ``scope["authd.token"]``
(and ``request.state.authd_token``), and `verified_token()` returns it to
any code the request runs, with no ``Request`` to pass along (a context
variable, set for the rest of the request; FastAPI and Starlette carry it
into the worker thread of a ``def`` endpoint). A refused request is
answered here (see `authd.middleware` for the answers). WebSocket
handshakes are checked too and closed (403) when refused. Lifespan events
pass through.

**Client certificates** (RFC 8705 certificate-bound tokens) go to authd with
the token, from the ASGI TLS extension (``scope["extensions"]["tls"]
["client_cert_chain"]``, PEM, the leaf first) of servers that implement it,
or, with ``client_cert_header=``, only from that header, as a proxy that
terminates TLS sets it (``"x-forwarded-client-cert"``: Envoy's format; any
other name: a URL-encoded PEM, as nginx's ``$ssl_client_escaped_cert``).
Set a header only behind a proxy that removes it from what clients send.
uvicorn (0.55) and Hypercorn (0.18) do not fill the TLS extension: behind
them a certificate arrives only by a proxy's header.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

from .cache import bearer_key
from .middleware import (
    AnyClient,
    Refusal,
    ScopeRules,
    authorize_async,
    certificate_from_header,
    pem_to_der,
    unusable_certificate,
)
from .types import VerifiedToken

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Where a verified request's token is kept in the ASGI scope.
SCOPE_KEY = "authd.token"

#: The token of the request being served, for `verified_token()`.
_CURRENT: ContextVar[VerifiedToken | None] = ContextVar("authd.token", default=None)


def credentials(scope: Scope) -> tuple[str | None, str | None]:
    """The ``Authorization`` and ``DPoP`` headers, in one pass. Several DPoP
    headers are joined, for authd's checks to refuse."""
    authorization, proof, _ = read_headers(scope, None)
    return text(authorization), proof


def text(value: bytes | None) -> str | None:
    """A header's raw value as text (ISO 8859-1, as HTTP has it)."""
    return value.decode("latin-1") if value is not None else None


def read_headers(
    scope: Scope, cert_header: bytes | None
) -> tuple[bytes | None, str | None, list[str] | None]:
    """The ``Authorization`` header's raw value, the ``DPoP`` headers and
    the values of ``cert_header`` (lower case), in one pass."""
    authorization: bytes | None = None
    proofs: list[str] | None = None
    certs: list[str] | None = None
    for key, value in scope.get("headers", ()):
        # ASGI servers give names in lower case; others are still read.
        if key == b"authorization":
            authorization = value
            continue
        size = len(key)
        if size == 13 and key.lower() == b"authorization":
            authorization = value
        elif size == 4 and key != b"host" and key.lower() == b"dpop":
            if proofs is None:
                proofs = []
            proofs.append(value.decode("latin-1"))
        elif cert_header is not None and key.lower() == cert_header:
            if certs is None:
                certs = []
            certs.append(value.decode("latin-1"))
    return authorization, ",".join(proofs) if proofs else None, certs


def client_certificate(scope: Scope, header: str | None, values: list[str] | None) -> bytes | None:
    """The request's client certificate (DER): from ``header``'s ``values``
    when a header is configured (then only from there), else from the ASGI
    TLS extension. Raises `Refusal` (400) for a header that holds something
    else than one certificate."""
    if header is not None:
        if not values:
            return None
        if len(values) > 1:
            raise unusable_certificate(f"several {header} headers")
        return certificate_from_header(header, values[0])
    extensions = scope.get("extensions")
    tls = extensions.get("tls") if extensions else None
    if not tls:
        return None
    chain = tls.get("client_cert_chain")
    if not chain:
        return None
    leaf = next(iter(chain), None)
    if not leaf:
        return None
    return pem_to_der(leaf, "the TLS extension's client_cert_chain")


class AuthMiddleware:
    """Verifies the bearer token of every HTTP request (and WebSocket
    handshake) with authd before it reaches ``app``.

    ``client``: `authd.aio.AuthClient` (or a blocking `authd.AuthClient`,
    called in a worker thread on a cache miss). ``rules``: the scopes per
    path (default: a verified token, no particular scope). ``dpop_origin``:
    the scheme and authority clients address this service by
    (``https://api.example.com``), for DPoP proofs' ``htu``.
    ``client_cert_header``: the header a TLS-terminating proxy puts the
    client certificate in (``"x-forwarded-client-cert"`` for Envoy's XFCC,
    or one holding a URL-encoded PEM); ``None`` (the default) reads the ASGI
    TLS extension instead. Trust a header only behind a proxy that strips it
    from what clients send.
    """

    def __init__(
        self,
        app: ASGIApp,
        client: AnyClient,
        rules: ScopeRules | None = None,
        dpop_origin: str | None = None,
        client_cert_header: str | None = None,
    ) -> None:
        self.app = app
        self.client = client
        self.rules = rules or ScopeRules()
        self.dpop_origin = dpop_origin
        self.client_cert_header = client_cert_header.lower() if client_cert_header else None
        self._cert_key = (
            client_cert_header.lower().encode("latin-1") if client_cert_header else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        rule = self.rules.rule(path)
        if rule is None:
            await self.app(scope, receive, send)
            return
        authorization, proof, certs = read_headers(scope, self._cert_key)
        try:
            token = None
            # A repeated Bearer token: the cache answers, with nothing else made.
            if proof is None and authorization is not None:
                der = client_certificate(scope, self.client_cert_header, certs)
                token = self.client._cached(bearer_key(authorization, rule.part), der)
            if token is None:
                token = await authorize_async(
                    self.client,
                    text(authorization),
                    proof,
                    scope.get("method", "GET"),
                    path,
                    self.dpop_origin,
                    rule.scopes,
                    lambda: client_certificate(scope, self.client_cert_header, certs),
                )
        except Refusal as refused:
            await _refuse(scope, send, refused)
            return
        scope[SCOPE_KEY] = token
        state = scope.get("state")
        if state is None:
            scope["state"] = state = {}
        if type(state) is dict or isinstance(state, MutableMapping):
            state["authd_token"] = token
        current = _CURRENT.set(token)
        try:
            await self.app(scope, receive, send)
        finally:
            _CURRENT.reset(current)


async def _refuse(scope: Scope, send: Send, refused: Refusal) -> None:
    if scope["type"] == "websocket":
        # Closing before accepting answers the handshake with 403.
        await send({"type": "websocket.close", "code": 1008})
        return
    body = refused.body()
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in refused.headers]
    headers.append((b"content-type", b"application/json"))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def verified_token(request: Any = None) -> VerifiedToken:
    """The token `AuthMiddleware` verified for the request being served, or
    for ``request`` (a Starlette ``Request`` or an ASGI scope) when given.
    Raises ``LookupError`` when the middleware did not verify one."""
    if request is None:
        token = _CURRENT.get()
    else:
        mapping = type(request) is dict or isinstance(request, MutableMapping)
        scope = request if mapping else request.scope
        token = scope.get(SCOPE_KEY)
    if not isinstance(token, VerifiedToken):
        raise LookupError("no token verified by authd.asgi.AuthMiddleware for this request")
    return token
