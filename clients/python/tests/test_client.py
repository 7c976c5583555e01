"""authd.AuthClient and authd.aio.AuthClient against the real authd and
issuer: every method, typed answers, errors with reasons, deadlines,
retries on UNAVAILABLE only, the device-login loop, and fork safety."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import grpc
import pytest

import authd.aio
from authd import (
    AuthClient,
    AuthError,
    DeviceLogin,
    DeviceLoginError,
    DeviceLoginState,
    ErrorReason,
    NewSession,
    RetryPolicy,
)
from authd._gen.auth.v1 import auth_pb2 as pb

from .harness import Authd, Issuer


@pytest.fixture
def client(authd_server: Authd) -> AuthClient:
    return AuthClient(authd_server.target, cache=None)


def session_of(client: AuthClient, issuer: Issuer, user: str) -> NewSession:
    tokens = issuer.password_login(user)
    return client.create_session(
        existing_tokens=pb.ExistingTokens(
            refresh_token=tokens["refresh_token"],
            id_token=tokens["id_token"],
            access_token=tokens["access_token"],
        )
    )


def test_verify_token_answers_typed_claims(client: AuthClient, issuer: Issuer) -> None:
    token = issuer.token(scope="read:orders write:orders", sub="auth0|py-alice", sid="s-1")
    verified = client.verify_token(f"Bearer {token}", ["read:orders"])
    assert verified.subject == "auth0|py-alice"
    assert verified.issuer == issuer.url
    assert verified.scopes == ("read:orders", "write:orders")
    assert verified.session_id == "s-1"
    assert verified.expires_at > datetime.now(timezone.utc)
    assert verified.claims.get("gty") == "client-credentials"
    assert verified.binding is None


def test_refusals_carry_code_reason_and_metadata(client: AuthClient, issuer: Issuer) -> None:
    with pytest.raises(AuthError) as expired:
        client.verify_token(issuer.token(expires_in="-120"))
    assert expired.value.code is grpc.StatusCode.UNAUTHENTICATED
    assert expired.value.reason is ErrorReason.TOKEN_EXPIRED
    assert "expired_at" in expired.value.metadata
    with pytest.raises(AuthError) as scope:
        client.verify_token(issuer.token(scope="read:orders"), ["delete:orders"])
    assert scope.value.code is grpc.StatusCode.PERMISSION_DENIED
    assert scope.value.reason is ErrorReason.INSUFFICIENT_SCOPE
    assert scope.value.metadata["missing"] == "delete:orders"
    with pytest.raises(AuthError) as empty:
        client.verify_token("")
    assert empty.value.reason is ErrorReason.TOKEN_MISSING


def test_sessions_profiles_and_revocation(client: AuthClient, issuer: Issuer) -> None:
    new = session_of(client, issuer, "alice")
    assert "..." in repr(new.session_handle) and new.session_handle.expose() not in repr(new)
    assert new.session is not None and new.session.user_id == "auth0|alice"
    assert new.profile is not None and new.profile.name == "Alice Example"
    assert client.verify_token(new.access_token).subject == "auth0|alice"
    refreshed = client.refresh_session(session_handle=new.session_handle)
    assert refreshed.access_token and refreshed.refresh_token is None
    profile = client.get_profile(access_token=new.access_token)
    assert profile.user_id == "auth0|alice" and profile.email_verified
    assert client.revoke_session(session_handle=new.session_handle) == 1
    with pytest.raises(AuthError) as revoked:
        client.verify_token(new.access_token)
    assert revoked.value.reason is ErrorReason.SESSION_REVOKED
    with pytest.raises(AuthError) as gone:
        client.refresh_session(session_handle=new.session_handle)
    assert gone.value.code is grpc.StatusCode.UNAUTHENTICATED


def test_revoking_a_users_sessions_needs_a_trusted_service(
    client: AuthClient, issuer: Issuer, watch_token: str
) -> None:
    session_of(client, issuer, "bob")
    with pytest.raises(AuthError) as untrusted:
        client.revoke_session(user_id="auth0|bob")
    assert untrusted.value.reason is ErrorReason.CALLER_NOT_TRUSTED
    assert client.revoke_session(user_id="auth0|bob", service_token=watch_token) >= 1


def test_device_login_runs_the_poll_loop_until_approved(client: AuthClient, issuer: Issuer) -> None:
    issuer.post("__control/device-config", body={"interval": 1})
    shown: list[DeviceLogin] = []

    def approve(login: DeviceLogin) -> None:
        shown.append(login)
        code = login.user_code
        # The user approves after the app's first poll found it pending.
        threading.Timer(
            1.5,
            lambda: issuer.post(
                f"__control/device/{code}", body={"action": "approve", "user": "alice"}
            ),
        ).start()

    session = client.device_login(approve, ["read:orders"])
    assert shown and shown[0].verification_uri.startswith(issuer.url)
    assert session.session is not None and session.session.user_id == "auth0|alice"


def test_device_login_denied_raises(client: AuthClient, issuer: Issuer) -> None:
    issuer.post("__control/device-config", body={"interval": 1})

    def deny(login: DeviceLogin) -> None:
        issuer.post(f"__control/device/{login.user_code}", body={"action": "deny"})

    with pytest.raises(DeviceLoginError) as denied:
        client.device_login(deny)
    assert denied.value.state is DeviceLoginState.DENIED


def test_unreachable_authd_is_unavailable_after_the_retries(unreachable: str) -> None:
    client = AuthClient(unreachable, cache=None, retry=RetryPolicy(max_attempts=3))
    started = time.monotonic()
    with pytest.raises(AuthError) as down:
        client.verify_token("a.b.c")
    assert down.value.code is grpc.StatusCode.UNAVAILABLE and down.value.reason is None
    assert down.value.is_unavailable
    assert time.monotonic() - started >= 0.05, "two backoffs waited"


def test_a_paused_authd_misses_the_deadline(own_authd: Authd, issuer: Issuer) -> None:
    client = AuthClient(own_authd.target, cache=None, timeout=0.3)
    token = issuer.token()
    client.verify_token(token)
    own_authd.pause()
    try:
        started = time.monotonic()
        with pytest.raises(AuthError) as late:
            client.verify_token(token)
        assert late.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 1.5, "not retried: only UNAVAILABLE is"
    finally:
        own_authd.resume()


FORKED = """
import os, sys
from authd import AuthClient
# As under gunicorn --preload: built in the master, used in the workers.
client = AuthClient(sys.argv[1], cache=None)
pid = os.fork()
if pid == 0:
    print("child", client.verify_token(sys.argv[2]).subject, flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
assert status == 0, status
print("parent", client.verify_token(sys.argv[2]).subject, flush=True)
"""


def test_a_client_built_before_fork_works_in_the_child_and_the_parent(
    authd_server: Authd, issuer: Issuer
) -> None:
    token = issuer.token(sub="auth0|forked")
    # A process of its own: this one has gRPC threads running already.
    done = subprocess.run(
        [sys.executable, "-c", FORKED, authd_server.target, token],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["child auth0|forked", "parent auth0|forked"]


WARM_CACHE_FORKED = """
import os
from datetime import datetime, timedelta, timezone
import authd.aio
from authd import AuthClient, VerifiedToken
from authd.cache import cache_key
# Each client's cache answering, as its stream would have it in the parent.
verified = VerifiedToken(
    subject="auth0|parent", issuer="https://tenant.example/", audiences=("api",),
    scopes=(), permissions=(), expires_at=datetime.now(timezone.utc) + timedelta(hours=1),
)
clients = [AuthClient("127.0.0.1:9"), authd.aio.AuthClient("127.0.0.1:9")]
for client in clients:
    cache = client._cache
    cache.stream_opened()
    cache.heartbeat(2.0)
    cache.insert(cache_key("h.p.s", ()), "h.p.s", verified)
    assert client._cached(cache_key("h.p.s", ()), None) is verified
pid = os.fork()
if pid == 0:
    # The parent's stream does not reach the child: no answer from memory,
    # with no call made first.
    states = [c._cache.state.value for c in clients]
    hits = [c._cache.get(cache_key("h.p.s", ())) for c in clients]
    print("child", states, hits, flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
assert status == 0, status
print("parent", [c._cache.state.value for c in clients], flush=True)
"""


def test_a_forked_child_answers_nothing_from_the_parents_cache() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WARM_CACHE_FORKED],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == [
        "child ['syncing', 'syncing'] [None, None]",
        "parent ['answering', 'answering']",
    ]


async def test_aio_client_answers_the_same(authd_server: Authd, issuer: Issuer) -> None:
    async with authd_aio(authd_server) as client:
        token = issuer.token(scope="read:orders", sub="auth0|aio")
        verified = await client.verify_token(token, ["read:orders"])
        assert verified.subject == "auth0|aio"
        with pytest.raises(AuthError) as refused:
            await client.verify_token(token, ["write:orders"])
        assert refused.value.reason is ErrorReason.INSUFFICIENT_SCOPE
        tokens = issuer.password_login("alice")
        new = await client.create_session(
            existing_tokens=pb.ExistingTokens(
                refresh_token=tokens["refresh_token"], id_token=tokens["id_token"]
            )
        )
        profile = await client.get_profile(access_token=new.access_token)
        assert profile.user_id == "auth0|alice"
        assert (await client.refresh_session(session_handle=new.session_handle)).access_token
        assert await client.revoke_session(session_handle=new.session_handle) == 1
        login = await client.start_device_login(["read:orders"])
        poll = await client.poll_device_login(login.device_code, interval=login.interval)
        assert poll.state in (DeviceLoginState.PENDING, DeviceLoginState.SLOW_DOWN)


def authd_aio(server: Authd) -> authd.aio.AuthClient:
    return authd.aio.AuthClient(server.target, cache=None)
