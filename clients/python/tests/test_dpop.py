"""The middleware passes a request's ``DPoP`` header, method and URI (its
configured origin and the path) through to VerifyToken, and answers RFC
9449's challenges; sender-constrained tokens never come from the cache."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import authd.aio
from authd.asgi import AuthMiddleware, verified_token

from .dpop import DpopKey
from .harness import Authd, Issuer

ORIGIN = "https://orders.example.test"


@contextmanager
def app(target: str, watch_token: str) -> Iterator[TestClient]:
    async def orders(request: Request) -> JSONResponse:
        token = verified_token(request)
        return JSONResponse({"jkt": token.binding.jkt if token.binding else None})

    client = authd.aio.AuthClient(target, watch_token=watch_token)
    application = Starlette(
        routes=[Route("/orders", orders)],
        middleware=[Middleware(AuthMiddleware, client=client, dpop_origin=ORIGIN)],
    )
    with TestClient(application) as test:
        yield test


def test_a_dpop_bound_token_passes_with_a_fresh_proof_only(
    authd_server: Authd, issuer: Issuer, watch_token: str
) -> None:
    key = DpopKey()
    token = issuer.token(sub="auth0|dora", claims=key.cnf_claims())
    htu = f"{ORIGIN}/orders"
    with app(authd_server.target, watch_token) as http:
        proof = key.proof("GET", htu, token)
        headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
        ok = http.get("/orders?page=2", headers=headers)
        assert (ok.status_code, ok.json()) == (200, {"jkt": key.thumbprint})

        replayed = http.get("/orders", headers=headers)
        assert replayed.status_code == 401
        assert replayed.headers["www-authenticate"].startswith('DPoP error="invalid_dpop_proof"')

        fresh = {"Authorization": f"DPoP {token}", "DPoP": key.proof("GET", htu, token)}
        assert http.get("/orders", headers=fresh).status_code == 200, "not a cached verdict"

        wrong_method = {"Authorization": f"DPoP {token}", "DPoP": key.proof("POST", htu, token)}
        refused = http.get("/orders", headers=wrong_method)
        assert refused.status_code == 401
        assert 'error="invalid_dpop_proof"' in refused.headers["www-authenticate"]

        as_bearer = http.get("/orders", headers={"Authorization": f"Bearer {token}"})
        assert as_bearer.status_code == 401
        assert 'error="invalid_token"' in as_bearer.headers["www-authenticate"]
