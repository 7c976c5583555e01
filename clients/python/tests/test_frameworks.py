"""Every answer of every framework's middleware, through the framework's own
stack (its test client calls the real app in-process) against the real
authd: 200 with the verified token, 401 ``Bearer`` without a token, 401
``invalid_token``, 403 ``insufficient_scope``, 503 when authd does not
answer (never a pass-through), and public paths untouched."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import django
import pytest

import authd.aio
from authd import AuthClient, ScopeRules

from .harness import Authd, Issuer

django.setup()


@dataclass
class Answer:
    status: int
    challenge: str | None
    body: str


#: An app under test: GET path with headers -> Answer.
Call = Callable[[str, dict[str, str]], Answer]
RULES = ScopeRules(["read:orders"]).public("/healthz")


@contextmanager
def fastapi_app(target: str, watch: str) -> Iterator[Call]:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from authd import VerifiedToken
    from authd.fastapi import Authorize

    app = FastAPI()
    app.state.authd = authd.aio.AuthClient(target, watch_token=watch, timeout=0.5)

    @app.get("/orders")
    async def orders(token: VerifiedToken = Authorize(scopes=["read:orders"])) -> dict[str, str]:
        return {"subject": token.subject}

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    with TestClient(app) as client:
        yield lambda path, headers: _httpx(client.get(path, headers=headers))


@contextmanager
def fastapi_middleware_app(target: str, watch: str) -> Iterator[Call]:
    """FastAPI behind `authd.asgi.AuthMiddleware`, its handler a ``def`` (run
    in a worker thread) reading the token with ``verified_token()``."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from authd.asgi import AuthMiddleware, verified_token

    app = FastAPI()
    client = authd.aio.AuthClient(target, watch_token=watch, timeout=0.5)
    app.add_middleware(AuthMiddleware, client=client, rules=RULES)

    @app.get("/orders")
    def orders() -> dict[str, str]:
        return {"subject": verified_token().subject}

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        with pytest.raises(LookupError):
            verified_token()  # a public path: no token
        return {"ok": True}

    with TestClient(app) as test:
        yield lambda path, headers: _httpx(test.get(path, headers=headers))


@contextmanager
def starlette_app(target: str, watch: str) -> Iterator[Call]:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from authd.asgi import AuthMiddleware, verified_token

    async def orders(request: Request) -> JSONResponse:
        assert request.state.authd_token is verified_token(request)
        assert verified_token() is verified_token(request)
        return JSONResponse({"subject": verified_token(request).subject})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    client = authd.aio.AuthClient(target, watch_token=watch, timeout=0.5)
    app = Starlette(
        routes=[Route("/orders", orders), Route("/healthz", healthz)],
        middleware=[Middleware(AuthMiddleware, client=client, rules=RULES)],
    )
    with TestClient(app) as test:
        yield lambda path, headers: _httpx(test.get(path, headers=headers))


def _httpx(response: object) -> Answer:
    return Answer(
        response.status_code,  # type: ignore[attr-defined]
        response.headers.get("www-authenticate"),  # type: ignore[attr-defined]
        response.text,  # type: ignore[attr-defined]
    )


@contextmanager
def flask_app(target: str, watch: str) -> Iterator[Call]:
    from flask import Flask, request

    from authd.wsgi import AuthMiddleware, verified_token

    app = Flask(__name__)
    app.wsgi_app = AuthMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, AuthClient(target, watch_token=watch, timeout=0.5), RULES
    )

    @app.get("/orders")
    def orders() -> dict[str, str]:
        return {"subject": verified_token(request.environ).subject}

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    test = app.test_client()

    def call(path: str, headers: dict[str, str]) -> Answer:
        response = test.get(path, headers=headers)
        return Answer(response.status_code, response.headers.get("WWW-Authenticate"), response.text)

    yield call


@contextmanager
def _django(target: str, watch: str, middleware: list[str], prefix: str) -> Iterator[Call]:
    from django.test import Client, override_settings

    client = AuthClient(target, watch_token=watch, timeout=0.5)
    with override_settings(AUTHD_CLIENT=client, AUTHD_RULES=RULES, MIDDLEWARE=middleware):
        test = Client()

        def call(path: str, headers: dict[str, str]) -> Answer:
            response = test.get(prefix + path if path != "/healthz" else path, headers=headers)
            return Answer(
                response.status_code,
                response.headers.get("WWW-Authenticate"),
                response.content.decode(),
            )

        yield call


def django_app(target: str, watch: str) -> AbstractContextManager[Call]:
    return _django(target, watch, ["authd.django.AuthMiddleware"], "")


def drf_app(target: str, watch: str) -> AbstractContextManager[Call]:
    return _django(target, watch, [], "/api")


FRAMEWORKS: dict[str, Callable[[str, str], AbstractContextManager[Call]]] = {
    "fastapi": fastapi_app,
    "fastapi-middleware": fastapi_middleware_app,
    "starlette": starlette_app,
    "flask": flask_app,
    "django": django_app,
    "drf": drf_app,
}


@pytest.fixture(params=sorted(FRAMEWORKS))
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_every_answer(
    framework: str, authd_server: Authd, issuer: Issuer, watch_token: str
) -> None:
    good = issuer.token(scope="read:orders", sub=f"auth0|{framework}")
    narrow = issuer.token(scope="write:orders")
    expired = issuer.token(scope="read:orders", expires_in="-120")
    with FRAMEWORKS[framework](authd_server.target, watch_token) as get:
        ok = get("/orders", {"Authorization": f"Bearer {good}"})
        assert (ok.status, f"auth0|{framework}" in ok.body) == (200, True), ok
        again = get("/orders", {"Authorization": f"bearer {good}"})
        assert again.status == 200, again

        none = get("/orders", {})
        assert (none.status, none.challenge) == (401, "Bearer"), none
        basic = get("/orders", {"Authorization": "Basic dTpw"})
        assert (basic.status, basic.challenge) == (401, "Bearer"), basic

        bad = get("/orders", {"Authorization": f"Bearer {expired}"})
        assert bad.status == 401, bad
        assert bad.challenge is not None
        assert bad.challenge.startswith('Bearer error="invalid_token", error_description="')

        forbidden = get("/orders", {"Authorization": f"Bearer {narrow}"})
        assert forbidden.status == 403, forbidden
        assert forbidden.challenge is not None
        assert forbidden.challenge.startswith('Bearer error="insufficient_scope"')
        assert 'scope="read:orders"' in forbidden.challenge

        if framework != "drf":  # DRF has no public-path rules: its views choose
            assert get("/healthz", {}).status == 200


def test_authd_not_answering_is_503_never_a_pass_through(
    framework: str, issuer: Issuer, unreachable: str
) -> None:
    good = issuer.token(scope="read:orders")
    with FRAMEWORKS[framework](unreachable, "") as get:
        down = get("/orders", {"Authorization": f"Bearer {good}"})
        assert down.status == 503, down
        assert down.challenge is None
        assert "subject" not in down.body
