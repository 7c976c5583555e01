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
        return PlainTextResponse(verified_token(request).subject)

A verified request carries the `VerifiedToken` in ``scope["authd.token"]``
(and ``request.state.authd_token``); a refused one is answered here (see
`authd.middleware` for the answers). WebSocket handshakes are checked too and
closed (403) when refused. Lifespan events pass through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .middleware import AnyClient, Refusal, ScopeRules, missing, presented, verify_async
from .types import VerifiedToken

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Where a verified request's token is kept in the ASGI scope.
SCOPE_KEY = "authd.token"


def credentials(scope: Scope) -> tuple[str | None, str | None]:
    """The ``Authorization`` and ``DPoP`` headers, in one pass. Several DPoP
    headers are joined, for authd's checks to refuse."""
    authorization: str | None = None
    proofs: list[str] = []
    for key, value in scope.get("headers", ()):
        if len(key) == 13 and key.lower() == b"authorization":
            authorization = value.decode("latin-1")
        elif len(key) == 4 and key.lower() == b"dpop":
            proofs.append(value.decode("latin-1"))
    return authorization, ",".join(proofs) if proofs else None


class AuthMiddleware:
    """Verifies the bearer token of every HTTP request (and WebSocket
    handshake) with authd before it reaches ``app``.

    ``client``: `authd.aio.AuthClient` (or a blocking `authd.AuthClient`,
    called in a worker thread on a cache miss). ``rules``: the scopes per
    path (default: a verified token, no particular scope). ``dpop_origin``:
    the scheme and authority clients address this service by
    (``https://api.example.com``), for DPoP proofs' ``htu``.
    """

    def __init__(
        self,
        app: ASGIApp,
        client: AnyClient,
        rules: ScopeRules | None = None,
        dpop_origin: str | None = None,
    ) -> None:
        self.app = app
        self.client = client
        self.rules = rules or ScopeRules()
        self.dpop_origin = dpop_origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        scopes = self.rules.access(path)
        if scopes is None:
            await self.app(scope, receive, send)
            return
        authorization, proof = credentials(scope)
        p = presented(
            authorization,
            proof,
            scope.get("method", "GET"),
            path,
            self.dpop_origin,
        )
        try:
            if p is None:
                raise missing()
            token = await verify_async(self.client, p, scopes)
        except Refusal as refused:
            await _refuse(scope, send, refused)
            return
        scope[SCOPE_KEY] = token
        state = scope.setdefault("state", {})
        if isinstance(state, MutableMapping):
            state["authd_token"] = token
        await self.app(scope, receive, send)


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


def verified_token(request: Any) -> VerifiedToken:
    """The token `AuthMiddleware` verified, from a Starlette ``Request`` (or
    an ASGI scope). Raises ``LookupError`` when the middleware did not run."""
    scope = request if isinstance(request, MutableMapping) else request.scope
    token = scope.get(SCOPE_KEY)
    if not isinstance(token, VerifiedToken):
        raise LookupError("no token verified by authd.asgi.AuthMiddleware for this request")
    return token
