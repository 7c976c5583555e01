"""What FastAPI itself costs a protected route, without a server: the app
is called as an ASGI callable in a loop (no uvicorn, no sockets), so the
figures are the framework's and the package's Python alone.

Routes: unprotected; a no-op dependency (FastAPI's ``Depends`` machinery
alone); ``authd.fastapi.Authorize`` with a warm cache; ``authd.asgi``'s
middleware with a warm cache. The cache is made to answer as a live
WatchRevocations stream would (no authd is needed: every call is a hit).

    python -m bench.inprocess      # from clients/python, with the fastapi extra
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import Depends, FastAPI, Request

import authd.aio
from authd import ScopeRules, VerifiedToken
from authd.asgi import AuthMiddleware, verified_token
from authd.cache import scope_part, token_key
from authd.fastapi import Authorize

TOKEN = "eyJhbGciOiJSUzI1NiJ9." + "e" * 700 + ".signature"
CALLS = 20_000
ROUNDS = 5

client = authd.aio.AuthClient("127.0.0.1:9", watch_token="unused")
app = FastAPI()
app.state.authd = client
app.add_middleware(
    AuthMiddleware,
    client=client,
    rules=ScopeRules()
    .default_scopes([])
    .public("/unprotected")
    .public("/noop")
    .public("/authd")
    .require("/mw", ["read:orders"]),
)


async def noop(request: Request) -> None:
    return None


@app.get("/unprotected")
async def unprotected() -> dict[str, str]:
    return {"subject": "nobody"}


@app.get("/noop")
async def with_noop(_: None = Depends(noop)) -> dict[str, str]:
    return {"subject": "nobody"}


@app.get("/authd")
async def with_authd(token: VerifiedToken = Authorize(scopes=["read:orders"])) -> dict[str, str]:
    return {"subject": token.subject}


@app.get("/mw")
async def with_middleware(request: Request) -> dict[str, str]:
    return {"subject": verified_token(request).subject}


async def call(path: str) -> None:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
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
        raise SystemExit(f"{path}: {sent[0]['status']}")


def warm() -> None:
    """The cache answering, with the token in it, as after a first call."""
    client._stub()  # the event loop's channel, as the first request makes it
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
    paths = ["/unprotected", "/noop", "/authd", "/mw"]
    rounds: dict[str, list[float]] = {p: [] for p in paths}
    for _ in range(ROUNDS):
        for path in paths:
            for _ in range(500):
                await call(path)
            started = time.perf_counter()
            for _ in range(CALLS):
                await call(path)
            rounds[path].append((time.perf_counter() - started) / CALLS * 1e6)
        client._cache.heartbeat(2.0)  # type: ignore[union-attr]
    base = sorted(rounds["/unprotected"])[ROUNDS // 2]
    print("| route | µs a request (median of rounds) | of unprotected |")
    print("|---|---:|---:|")
    for path in paths:
        median = sorted(rounds[path])[ROUNDS // 2]
        print(f"| {path} | {median:.1f} | {base / median:.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
