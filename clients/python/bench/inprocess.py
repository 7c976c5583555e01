"""What FastAPI itself costs a protected route, without a server: the app
is called as an ASGI callable in a loop (no uvicorn, no sockets), so the
figures are the framework's and the package's Python alone.

Apps (`bench.app`'s, each with its ``GET /orders``): unprotected; a no-op
dependency (FastAPI's ``Depends`` machinery alone); ``authd.fastapi.Authorize``
with a warm cache; ``authd.asgi``'s middleware with a warm cache. The cache
is made to answer as a live WatchRevocations stream would (no authd is
needed: every call is a hit).

    python -m bench.inprocess      # from clients/python, with the fastapi extra
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import Depends, FastAPI, Request

import authd.aio
from authd import VerifiedToken
from authd.cache import scope_part, token_key

from .app import make_app

TOKEN = "eyJhbGciOiJSUzI1NiJ9." + "e" * 700 + ".signature"
CALLS = 20_000
ROUNDS = 5

client = authd.aio.AuthClient("127.0.0.1:9", watch_token="unused")
# The benchmark's apps, and one whose route takes a no-op dependency.
APPS = {kind: make_app(kind, client, "https://tenant.example/") for kind in ("unprotected",)}
noop_app = FastAPI()


async def noop(request: Request) -> None:
    return None


@noop_app.get("/orders")
async def with_noop(_: None = Depends(noop)) -> dict[str, str]:
    return {"subject": "nobody"}


APPS["noop"] = noop_app
APPS.update({kind: make_app(kind, client, "https://tenant.example/") for kind in ("authd", "mw")})


async def call(app: FastAPI) -> None:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/orders",
        "raw_path": b"/orders",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"api"), (b"authorization", b"Bearer " + TOKEN.encode())],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    if sent[0]["status"] != 200:
        raise SystemExit(f"{sent[0]['status']}")


def warm() -> None:
    """The event loop's channel, as the first request makes it. No authd
    listens: its revocation stream is stopped, and `answering` stands in."""
    client._stub()
    current = client._current
    assert current is not None and current.watcher is not None
    current.watcher.stop()
    answering()


def answering() -> None:
    """The cache answering with the token in it, as after a first call and
    a heartbeat: called before each measurement, which may outlast the
    cache's silence bound (6 s) or an entry's age (30 s)."""
    cache = client._cache
    assert cache is not None
    cache.stream_opened()
    cache.heartbeat(2.0)
    verified = VerifiedToken(
        subject="auth0|alice",
        issuer="https://tenant.example/",
        audiences=("https://api.example",),
        scopes=("read:orders",),
        permissions=(),
        expires_at=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    cache.insert(token_key(TOKEN, scope_part(("read:orders",))), TOKEN, verified)


async def main() -> None:
    warm()
    rounds: dict[str, list[float]] = {kind: [] for kind in APPS}
    for _ in range(ROUNDS):
        for kind, app in APPS.items():
            answering()
            for _ in range(500):
                await call(app)
            started = time.perf_counter()
            for _ in range(CALLS):
                await call(app)
            rounds[kind].append((time.perf_counter() - started) / CALLS * 1e6)
    base = sorted(rounds["unprotected"])[ROUNDS // 2]
    print("| /orders | µs a request (median of rounds) | of unprotected |")
    print("|---|---:|---:|")
    for kind in APPS:
        median = sorted(rounds[kind])[ROUNDS // 2]
        print(f"| {kind} | {median:.1f} | {base / median:.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
