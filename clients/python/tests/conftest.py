"""Fixtures: one test issuer and one authd for the session (tests that stop,
pause or restart authd start their own), and the tokens the tests need."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .harness import Authd, Issuer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_settings")

#: Heartbeats every 200 ms, so that caches catch up fast.
WATCH = "[watch]\nheartbeat_ms = 200\n[sessions]\nrevocation_poll_ms = 200\n"


@pytest.fixture(scope="session")
def issuer() -> Iterator[Issuer]:
    issuer = Issuer()
    yield issuer
    issuer.stop()


@pytest.fixture(scope="session")
def authd_server(issuer: Issuer) -> Iterator[Authd]:
    server = Authd(issuer.config(WATCH))
    yield server
    server.close()


@pytest.fixture
def own_authd(issuer: Issuer) -> Iterator[Authd]:
    """An authd of this test's own, to pause, stop or restart."""
    server = Authd(issuer.config(WATCH))
    yield server
    server.close()


@pytest.fixture(scope="session")
def watch_token(issuer: Issuer) -> str:
    """A service token allowed WatchRevocations (and RevokeSession by user)."""
    return issuer.token(permissions="revocations:watch sessions:revoke")


@pytest.fixture(scope="session")
def unreachable() -> str:
    """A target where nothing listens."""
    from .harness import free_port

    return f"127.0.0.1:{free_port()}"
