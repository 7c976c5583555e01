"""The revocation-aware cache against the real authd: repeated tokens are
answered from memory; a revoked session is refused through a warm cache
within the bound; a SIGSTOPped authd is covered by the cache until its
silence bound, then refused (503); after an authd restart the stream
resumes from its cursor and the cache answers again."""

from __future__ import annotations

import time

import grpc
import pytest

import authd.aio
from authd import AuthClient, AuthError, CacheConfig, CacheState, ErrorReason
from authd._gen.auth.v1 import auth_pb2 as pb

from .harness import Authd, Issuer, wait_until

#: How soon a revocation made on this replica must refuse a cached token:
#: authd pushes it to the stream at once; this leaves room for a slow CI.
BOUND = 2.0


def login(client: AuthClient, issuer: Issuer, user: str) -> authd.NewSession:
    tokens = issuer.password_login(user)
    return client.create_session(
        existing_tokens=pb.ExistingTokens(
            refresh_token=tokens["refresh_token"], id_token=tokens["id_token"]
        )
    )


def cached_client(server: Authd, watch_token: str, **settings: object) -> AuthClient:
    client = AuthClient(server.target, watch_token=watch_token, **settings)  # type: ignore[arg-type]
    assert client.wait_for_cache(10), client.cache_state
    return client


def refused_within(bound: float, verify: object) -> float:
    """Seconds until ``verify()`` raises SESSION_REVOKED; fails past ``bound``."""
    started = time.monotonic()
    while True:
        try:
            verify()  # type: ignore[operator]
        except AuthError as error:
            assert error.reason is ErrorReason.SESSION_REVOKED, error
            return time.monotonic() - started
        assert time.monotonic() - started < bound, "still answered past the bound"
        time.sleep(0.01)


def test_repeated_tokens_come_from_memory_and_a_revoked_session_is_refused(
    authd_server: Authd, issuer: Issuer, watch_token: str
) -> None:
    client = cached_client(authd_server, watch_token)
    session = login(client, issuer, "alice")
    before = authd_server.verifications()
    for _ in range(5):
        assert client.verify_token(session.access_token).subject == "auth0|alice"
    assert authd_server.verifications() - before == 1, "four of five answered from the cache"

    AuthClient(authd_server.target, cache=None).revoke_session(
        session_handle=session.session_handle
    )
    refused_within(BOUND, lambda: client.verify_token(session.access_token))
    assert client.cache_state is CacheState.ANSWERING
    client.close()


def test_a_revoked_session_is_refused_through_fastapi_with_a_warm_cache(
    authd_server: Authd, issuer: Issuer, watch_token: str
) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from authd import VerifiedToken
    from authd.fastapi import Authorize

    app = FastAPI()
    app.state.authd = authd_client = authd.aio.AuthClient(
        authd_server.target, watch_token=watch_token
    )

    @app.get("/me")
    async def me(token: VerifiedToken = Authorize()) -> dict[str, str]:
        return {"subject": token.subject}

    @app.get("/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": await authd_client.wait_for_cache(10)}

    session = login(AuthClient(authd_server.target, cache=None), issuer, "alice")
    headers = {"Authorization": f"Bearer {session.access_token}"}
    with TestClient(app) as http:
        assert http.get("/ready").json() == {"ready": True}
        before = authd_server.verifications()
        for _ in range(5):
            assert http.get("/me", headers=headers).status_code == 200
        assert authd_server.verifications() - before == 1

        AuthClient(authd_server.target, cache=None).revoke_session(
            session_handle=session.session_handle
        )
        started = time.monotonic()
        while (answer := http.get("/me", headers=headers)).status_code == 200:
            assert time.monotonic() - started < BOUND, "still answered past the bound"
            time.sleep(0.01)
        assert answer.status_code == 401
        assert 'error="invalid_token"' in answer.headers["www-authenticate"]


def test_a_paused_authd_is_covered_until_the_bound_then_refused(
    own_authd: Authd, issuer: Issuer, watch_token: str
) -> None:
    from flask import Flask

    from authd.wsgi import AuthMiddleware

    silence = 1.5
    client = cached_client(
        own_authd, watch_token, timeout=0.3, cache=CacheConfig(max_silence=silence)
    )
    app = Flask(__name__)
    app.wsgi_app = AuthMiddleware(app.wsgi_app, client)  # type: ignore[method-assign]
    app.get("/orders")(lambda: "ok")
    http = app.test_client()
    token = issuer.token(scope="read:orders")
    headers = {"Authorization": f"Bearer {token}"}
    assert http.get("/orders", headers=headers).status_code == 200

    own_authd.pause()
    try:
        paused = time.monotonic()
        # Fallback: the warm cache answers while its stream is within the bound.
        assert http.get("/orders", headers=headers).status_code == 200
        assert client.verify_token(token).subject
        wait_until("the cache falls silent", lambda: client.cache_state is CacheState.SILENT)
        assert time.monotonic() - paused <= silence + 1.0
        with pytest.raises(AuthError) as late:
            client.verify_token(token)
        assert late.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
        refused = http.get("/orders", headers=headers)
        assert refused.status_code == 503 and "WWW-Authenticate" not in refused.headers
    finally:
        own_authd.resume()
    wait_until("the cache answers again", lambda: client.cache_state is CacheState.ANSWERING)
    assert http.get("/orders", headers=headers).status_code == 200
    client.close()


def test_after_an_authd_restart_the_stream_resumes_from_its_cursor(
    own_authd: Authd, issuer: Issuer, watch_token: str
) -> None:
    client = cached_client(own_authd, watch_token, timeout=0.5)
    first, second = login(client, issuer, "alice"), login(client, issuer, "bob")
    client.revoke_session(session_handle=first.session_handle)
    refused_within(BOUND, lambda: client.verify_token(first.access_token))
    assert client.verify_token(second.access_token).subject == "auth0|bob"
    watcher = client._process.watcher if client._process else None
    assert watcher is not None and watcher.streams == 1

    own_authd.restart()
    wait_until("a new stream", lambda: watcher.streams >= 2, 15)
    assert watcher.resumed_from, "the new stream was asked from the last cursor"
    wait_until("the cache answers again", lambda: client.cache_state is CacheState.ANSWERING)
    # What was revoked before the restart stays refused; the live session is
    # answered from the cache again, until its revocation arrives.
    with pytest.raises(AuthError) as still:
        client.verify_token(first.access_token)
    assert still.value.reason is ErrorReason.SESSION_REVOKED
    before = own_authd.verifications()
    for _ in range(3):
        client.verify_token(second.access_token)
    assert own_authd.verifications() - before <= 1
    AuthClient(own_authd.target, cache=None).revoke_session(session_handle=second.session_handle)
    refused_within(BOUND, lambda: client.verify_token(second.access_token))
    client.close()
