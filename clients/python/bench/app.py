"""The benchmarked FastAPI apps: the same route, ``GET /orders``, in one app
per way of protecting it, so that every row pays the same routing:

- ``unprotected``: no authentication;
- ``authd``: authd's FastAPI dependency (``authd.fastapi.Authorize``, warm
  revocation-aware cache);
- ``mw``: authd's ASGI middleware, the handler reading the token with
  ``verified_token()``;
- ``pyjwt``: the usual local verification (PyJWT with ``PyJWKClient``).

Each app also has ``GET /ready`` (public), answering once the cache caught
up. uvicorn builds one with ``--factory bench.app:from_env``, configured
from the environment: BENCH_ROUTE (one of the kinds above), AUTHD_TARGET,
WATCH_TOKEN, ISSUER_URL."""

from __future__ import annotations

import os

import jwt
from fastapi import FastAPI, HTTPException, Request

import authd.aio
from authd import ScopeRules, VerifiedToken
from authd.asgi import AuthMiddleware, verified_token
from authd.fastapi import Authorize

from .issuer import AUDIENCE

KINDS = ("unprotected", "authd", "mw", "pyjwt")


def make_app(kind: str, client: authd.aio.AuthClient, issuer_url: str) -> FastAPI:
    """The app of one row: ``/orders`` protected as ``kind`` says."""
    app = FastAPI()
    app.state.authd = client

    if kind == "unprotected":

        @app.get("/orders")
        async def unprotected() -> dict[str, str]:
            return {"subject": "nobody"}

    elif kind == "authd":

        @app.get("/orders")
        async def with_authd(
            token: VerifiedToken = Authorize(scopes=["read:orders"]),
        ) -> dict[str, str]:
            return {"subject": token.subject}

    elif kind == "mw":
        app.add_middleware(
            AuthMiddleware,
            client=client,
            rules=ScopeRules().require("/orders", ["read:orders"]).public("/ready"),
        )

        @app.get("/orders")
        async def with_middleware() -> dict[str, str]:
            return {"subject": verified_token().subject}

    elif kind == "pyjwt":
        jwks = jwt.PyJWKClient(issuer_url + ".well-known/jwks.json", cache_keys=True)

        @app.get("/orders")
        async def with_pyjwt(request: Request) -> dict[str, str]:
            # The PyJWT documentation's pattern, with the scope check an API adds.
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise HTTPException(401, headers={"WWW-Authenticate": "Bearer"})
            try:
                key = jwks.get_signing_key_from_jwt(token).key
                claims = jwt.decode(
                    token, key, algorithms=["RS256"], audience=AUDIENCE, issuer=issuer_url
                )
            except jwt.PyJWTError:
                raise HTTPException(
                    401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
                ) from None
            if "read:orders" not in str(claims.get("scope", "")).split():
                raise HTTPException(403)
            return {"subject": str(claims["sub"])}

    else:
        raise ValueError(f"no such route kind {kind!r}: one of {', '.join(KINDS)}")

    @app.get("/ready")
    async def ready() -> dict[str, bool]:
        if kind in ("authd", "mw"):
            return {"cache": await client.wait_for_cache(10)}
        return {"cache": True}

    return app


def from_env() -> FastAPI:
    """The app BENCH_ROUTE names, for ``uvicorn --factory``."""
    return make_app(
        os.environ["BENCH_ROUTE"],
        authd.aio.AuthClient(os.environ["AUTHD_TARGET"], watch_token=os.environ["WATCH_TOKEN"]),
        os.environ["ISSUER_URL"],
    )
