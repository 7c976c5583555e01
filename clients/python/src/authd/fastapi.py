"""`Authorize`: a FastAPI dependency that verifies the request's bearer token
with authd and returns the `VerifiedToken`::

    from fastapi import FastAPI
    import authd.aio
    from authd import VerifiedToken
    from authd.fastapi import Authorize

    app = FastAPI()
    app.state.authd = authd.aio.AuthClient("authd.internal:50051")

    @app.get("/orders")
    async def orders(token: VerifiedToken = Authorize(scopes=["read:orders"])):
        return {"user": token.subject}

The client is ``client=`` or else ``request.app.state.authd``. A refusal is
an ``HTTPException`` with RFC 6750's status and ``WWW-Authenticate`` (see
`authd.middleware`); authd unreachable is 503, never a pass-through. The
request's TLS client certificate goes to authd for certificate-bound tokens
(RFC 8705), read as `authd.asgi` reads it: the ASGI TLS extension, or with
``client_cert_header=`` only that header of a TLS-terminating proxy.
Needs the ``fastapi`` extra: ``pip install 'authd-client[fastapi]'``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Depends, HTTPException, Request

from .asgi import client_certificate, read_headers, text
from .cache import bearer_key, scope_part
from .middleware import AnyClient, Refusal, authorize_async
from .types import VerifiedToken


class Authorizer:
    """The dependency `Authorize` makes; callable by FastAPI."""

    def __init__(
        self,
        scopes: Sequence[str] = (),
        client: AnyClient | None = None,
        dpop_origin: str | None = None,
        client_cert_header: str | None = None,
    ) -> None:
        self.scopes = tuple(scopes)
        self._part = scope_part(self.scopes)
        self.client = client
        self.dpop_origin = dpop_origin
        self.client_cert_header = client_cert_header.lower() if client_cert_header else None
        self._cert_key = (
            client_cert_header.lower().encode("latin-1") if client_cert_header else None
        )

    async def __call__(self, request: Request) -> VerifiedToken:
        client = self.client or getattr(request.app.state, "authd", None)
        if client is None:
            raise RuntimeError("authd.fastapi.Authorize: pass client= or set app.state.authd")
        # Read from the ASGI scope: what Request.headers and Request.url
        # would build costs more than the cache hit itself.
        scope = request.scope
        authorization, proof, certs = read_headers(scope, self._cert_key)
        try:
            # A repeated Bearer token: the cache answers, with nothing else made.
            if proof is None and authorization is not None:
                der = client_certificate(scope, self.client_cert_header, certs)
                hit = client._cached(bearer_key(authorization, self._part), der)
                if hit is not None:
                    return hit
            return await authorize_async(
                client,
                text(authorization),
                proof,
                scope.get("method", "GET"),
                scope.get("path", ""),
                self.dpop_origin,
                self.scopes,
                lambda: client_certificate(scope, self.client_cert_header, certs),
            )
        except Refusal as refused:
            raise HTTPException(
                status_code=refused.status,
                detail=refused.code or "temporarily_unavailable",
                headers=dict(refused.headers),
            ) from None


def Authorize(  # noqa: N802 - reads as FastAPI's own Depends/Security
    scopes: Sequence[str] = (),
    *,
    client: AnyClient | None = None,
    dpop_origin: str | None = None,
    client_cert_header: str | None = None,
) -> Any:
    """A dependency verifying the request's token with authd, requiring every
    scope in ``scopes``; its value is the `VerifiedToken`. Use it as a
    parameter default (``token: VerifiedToken = Authorize(scopes=[...])``) or
    in ``dependencies=[Authorize(...)]``. ``client_cert_header``: see
    `authd.asgi.AuthMiddleware`."""
    return Depends(Authorizer(scopes, client, dpop_origin, client_cert_header))
