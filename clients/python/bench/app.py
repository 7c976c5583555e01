"""The benchmarked FastAPI app: one route unprotected, one protected by
authd's FastAPI dependency (``authd.fastapi.Authorize``, warm
revocation-aware cache), one by authd's ASGI middleware (``/mw``; the
middleware's rules leave every other path public), one by the usual local
verification (PyJWT with ``PyJWKClient``). Configured from the environment:
AUTHD_TARGET, WATCH_TOKEN, ISSUER_URL."""

from __future__ import annotations

import os

import jwt
from fastapi import FastAPI, HTTPException, Request

import authd.aio
from authd import ScopeRules, VerifiedToken
from authd.asgi import AuthMiddleware, verified_token
from authd.fastapi import Authorize

from .issuer import AUDIENCE

ISSUER = os.environ["ISSUER_URL"]
app = FastAPI()
app.state.authd = authd.aio.AuthClient(
    os.environ["AUTHD_TARGET"], watch_token=os.environ["WATCH_TOKEN"]
)
app.add_middleware(
    AuthMiddleware,
    client=app.state.authd,
    rules=ScopeRules()
    .default_scopes([])
    .public("/unprotected")
    .public("/authd")
    .public("/pyjwt")
    .public("/ready")
    .require("/mw", ["read:orders"]),
)
jwks = jwt.PyJWKClient(ISSUER + ".well-known/jwks.json", cache_keys=True)


@app.get("/unprotected")
async def unprotected() -> dict[str, str]:
    return {"subject": "nobody"}


@app.get("/authd")
async def with_authd(token: VerifiedToken = Authorize(scopes=["read:orders"])) -> dict[str, str]:
    return {"subject": token.subject}


@app.get("/mw")
async def with_middleware(request: Request) -> dict[str, str]:
    return {"subject": verified_token(request).subject}


@app.get("/pyjwt")
async def with_pyjwt(request: Request) -> dict[str, str]:
    # The PyJWT documentation's pattern, with the scope check an API adds.
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, headers={"WWW-Authenticate": "Bearer"})
    try:
        key = jwks.get_signing_key_from_jwt(token).key
        claims = jwt.decode(token, key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER)
    except jwt.PyJWTError:
        raise HTTPException(
            401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from None
    if "read:orders" not in str(claims.get("scope", "")).split():
        raise HTTPException(403)
    return {"subject": str(claims["sub"])}


@app.get("/ready")
async def ready() -> dict[str, bool]:
    client = app.state.authd
    assert isinstance(client, authd.aio.AuthClient)
    return {"cache": await client.wait_for_cache(10)}
