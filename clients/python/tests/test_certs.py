"""Certificate-bound tokens (RFC 8705): oidc-provider (tests/issuer-dpop)
binds a token to alice's certificate at its real token endpoint, and every
middleware passes the request's TLS client certificate to the real authd,
from where its server puts it or from a trusted proxy's header. Alice's
certificate passes (and a cached verdict is reused for it only), mallory's
and none are refused with ``TOKEN_BINDING_MISMATCH``, as the Rust tests
expect (tests/tests/sender_constrained.rs)."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import django
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

import authd.aio
from authd import AuthClient, ScopeRules
from authd.middleware import Refusal, certificate_from_header

from .conftest import WATCH
from .harness import Authd, DpopIssuer, Issuer
from .test_tls import _certificate, _key_pem, _pem

django.setup()

RULES = ScopeRules().public("/healthz")
MISMATCH = "the token is bound to a key or certificate the call does not prove"


@dataclass
class Leaf:
    pem: str
    der: bytes
    cert_file: Path
    key_file: Path


@dataclass
class Pki:
    ca_file: Path
    server: Leaf
    alice: Leaf
    mallory: Leaf


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    import ipaddress

    directory = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("client CA", ca_key, None, [], ca=True)
    (directory / "ca.pem").write_bytes(_pem(ca))

    def leaf(name: str, san: list[x509.GeneralName]) -> Leaf:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(name, key, (ca, ca_key), san)
        (directory / f"{name}.pem").write_bytes(_pem(cert))
        (directory / f"{name}.key").write_bytes(_key_pem(key))
        return Leaf(
            _pem(cert).decode(),
            cert.public_bytes(serialization.Encoding.DER),
            directory / f"{name}.pem",
            directory / f"{name}.key",
        )

    return Pki(
        directory / "ca.pem",
        leaf("server", [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        leaf("alice", [x509.UniformResourceIdentifier("spiffe://test/alice")]),
        leaf("mallory", [x509.UniformResourceIdentifier("spiffe://test/mallory")]),
    )


@dataclass
class Bound:
    authd: Authd
    token: str
    x5t: str


@pytest.fixture(scope="module")
def bound(issuer: Issuer, pki: Pki) -> Iterator[Bound]:
    """authd trusting both issuers, and a token oidc-provider bound to alice."""
    dpop_issuer = DpopIssuer()
    server = Authd(issuer.config(WATCH) + dpop_issuer.config())
    try:
        minted = dpop_issuer.mint_mtls(pki.alice.cert_file)
        yield Bound(server, minted["access_token"], minted["x5t#S256"])
    finally:
        server.close()
        dpop_issuer.stop()


@dataclass
class Answer:
    status: int
    challenge: str | None
    body: str

    def reason(self) -> str | None:
        """authd's reason: the body's ``reason`` where the middleware writes
        one, else (FastAPI's and DRF's own bodies) read off the challenge,
        which carries authd's message."""
        try:
            body = json.loads(self.body)
        except ValueError:
            body = {}
        if isinstance(body, dict) and "reason" in body:
            return str(body["reason"])
        if self.challenge and MISMATCH in self.challenge:
            return "TOKEN_BINDING_MISMATCH"
        return None


#: GET /orders with a token and the client's certificate (PEM) or none.
Call = Callable[[str, "Leaf | None"], Answer]


def _httpx(response: Any) -> Answer:
    return Answer(response.status_code, response.headers.get("www-authenticate"), response.text)


def xfcc(leaf: Leaf) -> str:
    """Envoy's ``X-Forwarded-Client-Cert`` for a client presenting ``leaf``
    (``forward_client_cert_details: SANITIZE_SET`` with ``cert``, ``subject``
    and ``uri`` details), followed by the element a second proxy appended."""
    digest = x509.load_pem_x509_certificate(leaf.pem.encode()).fingerprint(hashes.SHA256()).hex()
    cert = urllib.parse.quote(leaf.pem, safe="")
    return (
        f'By=spiffe://test/orders;Hash={digest};Cert="{cert}";'
        f'Subject="CN=client,O=Test; Inc.";URI=spiffe://test/client,'
        f"By=spiffe://test/sidecar;Hash=00ff;URI=spiffe://test/edge"
    )


def escaped(leaf: Leaf) -> str:
    """nginx's ``$ssl_client_escaped_cert``: the PEM, URL-encoded."""
    return urllib.parse.quote(leaf.pem, safe="")


class TlsExtension:
    """Stands for an ASGI server implementing the TLS extension (uvicorn and
    Hypercorn do not): the certificate a test client "connected with" comes
    in the test-only ``x-test-peer`` header, which this takes out of the
    request and puts where such a server puts its peer's chain."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            peer = [v.decode() for k, v in scope["headers"] if k == b"x-test-peer"]
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"x-test-peer"]
            chain = [urllib.parse.unquote(peer[0])] if peer else []
            tls = {"server_cert": None, "client_cert_chain": chain, "tls_version": 0x0304}
            scope["extensions"] = {**scope.get("extensions", {}), "tls": tls}
        await self.app(scope, receive, send)


@contextmanager
def starlette_app(target: str, watch: str, header: str | None) -> Iterator[Call]:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from authd.asgi import AuthMiddleware, verified_token

    async def orders(request: Request) -> JSONResponse:
        binding = verified_token(request).binding
        return JSONResponse({"x5t": binding.x5t_s256 if binding else None})

    client = authd.aio.AuthClient(target, watch_token=watch)
    mw = Middleware(AuthMiddleware, client=client, rules=RULES, client_cert_header=header)
    app: Any = Starlette(routes=[Route("/orders", orders)], middleware=[mw])
    with TestClient(app if header else TlsExtension(app)) as test:

        def call(token: str, leaf: Leaf | None) -> Answer:
            headers = {"Authorization": f"Bearer {token}"}
            if leaf is not None:
                headers[header or "x-test-peer"] = xfcc(leaf) if header else escaped(leaf)
            return _httpx(test.get("/orders", headers=headers))

        yield call


@contextmanager
def fastapi_app(target: str, watch: str, header: str | None) -> Iterator[Call]:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from authd import VerifiedToken
    from authd.fastapi import Authorize

    app = FastAPI()
    app.state.authd = authd.aio.AuthClient(target, watch_token=watch)

    @app.get("/orders")
    async def orders(token: VerifiedToken = Authorize(client_cert_header=header)) -> Any:
        return {"x5t": token.binding.x5t_s256 if token.binding else None}

    with TestClient(app if header else TlsExtension(app)) as test:

        def call(token: str, leaf: Leaf | None) -> Answer:
            headers = {"Authorization": f"Bearer {token}"}
            if leaf is not None:
                headers[header or "x-test-peer"] = escaped(leaf)
            return _httpx(test.get("/orders", headers=headers))

        yield call


@contextmanager
def flask_app(target: str, watch: str, header: str | None) -> Iterator[Call]:
    from flask import Flask, request

    from authd.wsgi import AuthMiddleware, verified_token

    app = Flask(__name__)
    app.wsgi_app = AuthMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, AuthClient(target, watch_token=watch), RULES, client_cert_header=header
    )

    @app.get("/orders")
    def orders() -> dict[str, str | None]:
        binding = verified_token(request.environ).binding
        return {"x5t": binding.x5t_s256 if binding else None}

    test = app.test_client()

    def call(token: str, leaf: Leaf | None) -> Answer:
        headers = {"Authorization": f"Bearer {token}"}
        environ: dict[str, str] = {}
        if leaf is not None and header:
            headers[header] = xfcc(leaf)
        elif leaf is not None:
            # As Werkzeug's own server and mod_wsgi (+ExportCertData) set it.
            environ["SSL_CLIENT_CERT"] = leaf.pem
        response = test.get("/orders", headers=headers, environ_overrides=environ)
        return Answer(response.status_code, response.headers.get("WWW-Authenticate"), response.text)

    yield call


@contextmanager
def _django(target: str, watch: str, header: str | None, drf: bool) -> Iterator[Call]:
    from django.test import Client, override_settings

    client = AuthClient(target, watch_token=watch)
    middleware = [] if drf else ["authd.django.AuthMiddleware"]
    with override_settings(
        AUTHD_CLIENT=client,
        AUTHD_RULES=ScopeRules(["read:orders"]).require("/bound", []),
        AUTHD_CLIENT_CERT_HEADER=header,
        MIDDLEWARE=middleware,
    ):
        test = Client()

        def call(token: str, leaf: Leaf | None) -> Answer:
            headers = {"Authorization": f"Bearer {token}"}
            extra: dict[str, str] = {}
            if leaf is not None and header:
                headers[header] = xfcc(leaf)
            elif leaf is not None:
                extra["SSL_CLIENT_CERT"] = leaf.pem
            path = "/api/bound" if drf else "/bound"
            response = test.get(path, headers=headers, **extra)  # type: ignore[arg-type]
            return Answer(
                response.status_code,
                response.headers.get("WWW-Authenticate"),
                response.content.decode(),
            )

        yield call


def django_app(target: str, watch: str, header: str | None) -> AbstractContextManager[Call]:
    return _django(target, watch, header, drf=False)


def drf_app(target: str, watch: str, header: str | None) -> AbstractContextManager[Call]:
    return _django(target, watch, header, drf=True)


XFCC = "x-forwarded-client-cert"
APPS: dict[
    str, tuple[Callable[[str, str, str | None], AbstractContextManager[Call]], str | None]
] = {
    "starlette, TLS extension": (starlette_app, None),
    "starlette, Envoy XFCC header": (starlette_app, XFCC),
    "fastapi, TLS extension": (fastapi_app, None),
    "fastapi, nginx escaped-cert header": (fastapi_app, "x-ssl-client-escaped-cert"),
    "flask, SSL_CLIENT_CERT": (flask_app, None),
    "flask, Envoy XFCC header": (flask_app, XFCC),
    "django, Envoy XFCC header": (django_app, XFCC),
    "drf, SSL_CLIENT_CERT": (drf_app, None),
}


@pytest.mark.parametrize("name", list(APPS))
def test_a_certificate_bound_token_passes_with_its_certificate_only(
    name: str, bound: Bound, pki: Pki, issuer: Issuer, watch_token: str
) -> None:
    make, header = APPS[name]
    with make(bound.authd.target, watch_token, header) as get:
        ok = get(bound.token, pki.alice)
        assert ok.status == 200, ok
        if not name.startswith(("django", "drf")):
            assert json.loads(ok.body) == {"x5t": bound.x5t}
        answered = bound.authd.verifications()
        again = get(bound.token, pki.alice)
        assert again.status == 200, again
        assert bound.authd.verifications() == answered, "the same certificate: from the cache"

        for what, leaf in (("another certificate", pki.mallory), ("no certificate", None)):
            refused = get(bound.token, leaf)
            assert (refused.status, refused.reason()) == (401, "TOKEN_BINDING_MISMATCH"), what
            assert refused.challenge is not None
            assert refused.challenge.startswith('Bearer error="invalid_token"'), refused

        # A token bound to nothing passes with a certificate as without one.
        plain = issuer.token(sub="auth0|unbound", scope="read:orders")
        assert get(plain, pki.mallory).status == 200
        assert get(plain, None).status == 200


def test_a_forwarded_header_that_holds_no_certificate_is_refused_not_dropped(
    bound: Bound, watch_token: str
) -> None:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from authd.asgi import AuthMiddleware

    async def orders(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    client = authd.aio.AuthClient(bound.authd.target, watch_token=watch_token)
    mw = Middleware(AuthMiddleware, client=client, client_cert_header="x-client-cert")
    app = Starlette(routes=[Route("/orders", orders)], middleware=[mw])
    with TestClient(app) as http:
        for value in (
            "not a certificate",
            "-----BEGIN CERTIFICATE-----%21%21-----END CERTIFICATE-----",
        ):
            answer = http.get(
                "/orders",
                headers={"Authorization": f"Bearer {bound.token}", "x-client-cert": value},
            )
            assert answer.status_code == 400, value
            assert answer.json() == {"error": "invalid_request"}
            assert answer.headers["www-authenticate"].startswith('Bearer error="invalid_request"')
        twice = http.get(
            "/orders",
            headers=[
                ("Authorization", f"Bearer {bound.token}"),
                ("x-client-cert", "a"),
                ("x-client-cert", "b"),
            ],
        )
        assert twice.status_code == 400


def test_certificate_from_header_reads_envoy_and_nginx(pki: Pki) -> None:
    assert certificate_from_header(XFCC, xfcc(pki.alice)) == pki.alice.der
    assert certificate_from_header("x-ssl-client-cert", escaped(pki.alice)) == pki.alice.der
    # A chain: the leaf is first.
    chain = escaped(pki.alice) + escaped(pki.mallory)
    assert certificate_from_header("x-ssl-client-cert", chain) == pki.alice.der
    # nginx sends the variable empty, Envoy an element without Cert, when
    # the client presented no certificate.
    assert certificate_from_header("x-ssl-client-cert", "") is None
    assert certificate_from_header(XFCC, "By=spiffe://a;Hash=00;URI=spiffe://b") is None
    for name, value in (
        (XFCC, 'Hash=00;Cert="garbage"'),
        # Two headers a WSGI server joined: never one of them silently.
        ("x-ssl-client-cert", escaped(pki.alice) + "," + escaped(pki.mallory)),
    ):
        with pytest.raises(Refusal) as refused:
            certificate_from_header(name, value)
        assert refused.value.status == 400


def test_the_cache_answers_a_certificate_bound_token_for_its_certificate_only(
    bound: Bound, pki: Pki, watch_token: str
) -> None:
    client = AuthClient(bound.authd.target, watch_token=watch_token)
    assert client.wait_for_cache()
    verified = client.verify_token(bound.token, client_certificate=pki.alice.der)
    assert verified.binding is not None and verified.binding.x5t_s256 == bound.x5t
    assert client.cached(bound.token, client_certificate=pki.alice.der) == verified
    assert client.cached(bound.token) is None
    assert client.cached(bound.token, client_certificate=pki.mallory.der) is None
    from authd import AuthError

    for certificate in (None, pki.mallory.der):
        with pytest.raises(AuthError) as refused:
            client.verify_token(bound.token, client_certificate=certificate)
        assert refused.value.reason == "TOKEN_BINDING_MISMATCH"
    client.close()


# === real TLS connections ===


def _client_context(pki: Pki, leaf: Leaf | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    if leaf is not None:
        context.load_cert_chain(leaf.cert_file, leaf.key_file)
    return context


def _server_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server.cert_file, pki.server.key_file)
    context.load_verify_locations(pki.ca_file)
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def test_flask_behind_werkzeugs_tls_server(bound: Bound, pki: Pki, watch_token: str) -> None:
    """A real mutual-TLS connection: Werkzeug's server puts the peer's
    certificate in ``SSL_CLIENT_CERT``, the middleware passes it on."""
    from flask import Flask
    from werkzeug.serving import make_server

    from authd.wsgi import AuthMiddleware

    app = Flask(__name__)
    app.wsgi_app = AuthMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, AuthClient(bound.authd.target, watch_token=watch_token)
    )
    app.get("/orders")(lambda: "ok")
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=_server_context(pki))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:

        def get(leaf: Leaf | None) -> tuple[int, str]:
            conn = http.client.HTTPSConnection(
                "127.0.0.1", server.port, context=_client_context(pki, leaf), timeout=10
            )
            conn.request("GET", "/orders", headers={"Authorization": f"Bearer {bound.token}"})
            response = conn.getresponse()
            answer = (response.status, response.read().decode())
            conn.close()
            return answer

        assert get(pki.alice) == (200, "ok")
        for leaf in (pki.mallory, None):
            status, body = get(leaf)
            assert (status, json.loads(body)["reason"]) == (401, "TOKEN_BINDING_MISMATCH")
    finally:
        server.shutdown()


def test_the_peer_certificate_of_gunicorns_socket(bound: Bound, pki: Pki, watch_token: str) -> None:
    """gunicorn hands the connection's socket over as ``gunicorn.socket``;
    over TLS its ``getpeercert`` is the client's certificate. Here a real
    TLS connection's server side stands in that key."""
    from flask import Flask

    from authd.wsgi import AuthMiddleware

    app = Flask(__name__)
    app.wsgi_app = AuthMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, AuthClient(bound.authd.target, watch_token=watch_token)
    )
    app.get("/orders")(lambda: "ok")
    test = app.test_client()
    for leaf, expected in ((pki.alice, 200), (pki.mallory, 401), (None, 401)):
        with _tls_peer(pki, leaf) as sock:
            response = test.get(
                "/orders",
                headers={"Authorization": f"Bearer {bound.token}"},
                environ_overrides={"gunicorn.socket": sock},
            )
        assert response.status_code == expected, leaf


@contextmanager
def _tls_peer(pki: Pki, leaf: Leaf | None) -> Iterator[ssl.SSLSocket]:
    """The server side of a TLS connection a client made with ``leaf``."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        done = threading.Event()
        client: list[ssl.SSLSocket] = []

        def connect() -> None:
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            client.append(_client_context(pki, leaf).wrap_socket(raw, server_hostname="127.0.0.1"))
            done.wait(10)
            client[0].close()

        thread = threading.Thread(target=connect, daemon=True)
        thread.start()
        conn, _ = listener.accept()
        with _server_context(pki).wrap_socket(conn, server_side=True) as sock:
            try:
                yield sock
            finally:
                done.set()
                thread.join(10)
