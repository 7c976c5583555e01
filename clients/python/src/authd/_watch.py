"""The watcher that keeps the cache's WatchRevocations stream open: it
reconnects with back-off, resumes from the last cursor received, and hands
every revocation and heartbeat to the cache. While authd refuses this caller
the stream (``PERMISSION_DENIED``, or an authd without it) the cache is off
and the watcher asks again every minute. Mirrors the Rust client's
``watch.rs``; `SyncWatcher` is a daemon thread, `AsyncWatcher` an asyncio task."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import grpc

from ._gen.auth.v1 import auth_pb2 as pb
from .cache import VerifyCache

log = logging.getLogger("authd")

#: The first wait before reconnecting, doubled up to MAX_BACKOFF.
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
#: How often a refused caller asks again.
REFUSED_RETRY = 60.0

Metadata = Callable[[], tuple[tuple[str, str], ...]]


def _heard(cache: VerifyCache, message: pb.WatchRevocationsResponse) -> bool:
    """Hands ``message`` to the cache; ``False`` when not understood (its
    cursor is then not taken)."""
    event = message.WhichOneof("event")
    if event == "revocation":
        cache.revoked(message.revocation)
    elif event == "heartbeat":
        cache.heartbeat(message.heartbeat.interval_ms / 1000)
    else:
        return False
    return True


def _refused(cache: VerifyCache, code: grpc.StatusCode | None, details: str | None) -> bool:
    """Whether the stream ended because authd will not stream to this caller
    (then the cache is turned off, logged once)."""
    if code not in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNIMPLEMENTED):
        return False
    if cache.turn_off():
        log.warning(
            "authd does not stream revocations to this client (%s: %s): "
            "running without the verification cache",
            code.name if code else "?",
            details,
        )
    return True


class SyncWatcher:
    """A daemon thread holding the stream, for the blocking client."""

    def __init__(self, cache: VerifyCache, stub: Any, metadata: Metadata) -> None:
        self._cache = cache
        self._stub = stub
        self._metadata = metadata
        self._stop = threading.Event()
        self._call: Any = None
        #: Streams opened so far, and the cursor the latest was asked from.
        self.streams = 0
        self.resumed_from = ""
        self._thread = threading.Thread(target=self._run, name="authd-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        call = self._call
        if call is not None:
            call.cancel()

    def _run(self) -> None:
        cursor = ""
        backoff = FIRST_BACKOFF
        while not self._stop.is_set():
            wait = backoff
            try:
                metadata = self._metadata()
            except Exception:
                log.exception("the watch token could not be had: no verification cache")
                self._cache.turn_off()
                return
            try:
                self._call = self._stub.WatchRevocations(
                    pb.WatchRevocationsRequest(cursor=cursor), metadata=metadata
                )
                opened = False
                for message in self._call:
                    if not opened:
                        self._cache.stream_opened()
                        self.streams += 1
                        self.resumed_from = cursor
                        opened = True
                    backoff = FIRST_BACKOFF
                    if _heard(self._cache, message) and message.cursor:
                        cursor = message.cursor
                log.debug("revocation stream ended; reconnecting")
            except grpc.RpcError as error:
                if self._stop.is_set():
                    return
                code = error.code() if hasattr(error, "code") else None
                details = error.details() if hasattr(error, "details") else None
                if _refused(self._cache, code, details):
                    wait = REFUSED_RETRY
                else:
                    log.debug("revocation stream ended (%s); reconnecting", code)
            if self._stop.wait(wait):
                return
            backoff = min(backoff * 2, MAX_BACKOFF)


class AsyncWatcher:
    """An asyncio task holding the stream, for `authd.aio.AuthClient`."""

    def __init__(self, cache: VerifyCache, stub: Any, metadata: Metadata) -> None:
        self._cache = cache
        self._stub = stub
        self._metadata = metadata
        self._task: asyncio.Task[None] | None = None
        #: Streams opened so far, and the cursor the latest was asked from.
        self.streams = 0
        self.resumed_from = ""

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="authd-watch")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        cursor = ""
        backoff = FIRST_BACKOFF
        while True:
            wait = backoff
            try:
                metadata = self._metadata()
            except Exception:
                log.exception("the watch token could not be had: no verification cache")
                self._cache.turn_off()
                return
            call = self._stub.WatchRevocations(
                pb.WatchRevocationsRequest(cursor=cursor), metadata=metadata
            )
            try:
                opened = False
                async for message in call:
                    if not opened:
                        self._cache.stream_opened()
                        self.streams += 1
                        self.resumed_from = cursor
                        opened = True
                    backoff = FIRST_BACKOFF
                    if _heard(self._cache, message) and message.cursor:
                        cursor = message.cursor
            except grpc.aio.AioRpcError as error:
                if _refused(self._cache, error.code(), error.details()):
                    wait = REFUSED_RETRY
                else:
                    log.debug("revocation stream ended (%s); reconnecting", error.code())
            finally:
                call.cancel()
            await asyncio.sleep(wait)
            backoff = min(backoff * 2, MAX_BACKOFF)
