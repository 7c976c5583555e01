"""`authd.aio.AuthClient`: the asyncio twin of `authd.AuthClient`, for
FastAPI, Starlette and any asyncio service. Same methods, awaited."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message

from . import _fork
from ._common import (
    DeviceLoginError,
    RetryPolicy,
    Settings,
    TlsConfig,
    TokenSource,
    bearer,
    cacheable,
    device_poll,
    next_interval,
    verify_request,
    watch_metadata,
)
from ._gen.auth.v1 import auth_pb2 as pb
from ._gen.auth.v1 import auth_pb2_grpc as pb_grpc
from ._watch import AsyncWatcher
from .cache import (
    DEFAULT_CACHE,
    CacheConfig,
    CacheState,
    KeyPart,
    VerifyCache,
    cache_key,
    scope_part,
    token_key,
)
from .client import _expose
from .errors import AuthError
from .types import (
    DeviceLogin,
    DeviceLoginState,
    DevicePoll,
    NewSession,
    Profile,
    Refreshed,
    Secret,
    VerifiedToken,
)

__all__ = ["AuthClient"]

R = TypeVar("R", bound=Message)


class _Loop:
    """The channel, stub and watcher of one process and event loop (a
    ``grpc.aio`` channel belongs to the loop it was made in)."""

    def __init__(self, settings: Settings) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.get_running_loop()
        target, credentials, options = settings.channel_args()
        self.channel = (
            grpc.aio.secure_channel(target, credentials, options=options)
            if credentials is not None
            else grpc.aio.insecure_channel(target, options=options)
        )
        self.stub = pb_grpc.AuthServiceStub(self.channel)
        self.watcher: AsyncWatcher | None = None


class AuthClient:
    """A client of authd for asyncio. Takes the same arguments as
    `authd.AuthClient`; its channel and revocation watcher are made on first
    use, in the running event loop (again after a ``fork`` or in another
    loop). Build it anywhere, use it from one loop at a time."""

    def __init__(
        self,
        target: str,
        *,
        tls: TlsConfig | None = None,
        timeout: float | None = 2.0,
        retry: RetryPolicy | None = None,
        cache: CacheConfig | None = DEFAULT_CACHE,
        watch_token: TokenSource | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._settings = Settings(target, tls, timeout, retry or RetryPolicy(), tuple(options))
        self._cache = VerifyCache(cache) if cache is not None else None
        self._watch_token = watch_token
        self._current: _Loop | None = None
        _fork.track(self)

    def _after_fork(self) -> None:
        # The parent's stream does not reach this process: nothing is
        # answered from the cache until this process's own stream is live.
        if self._cache is not None:
            self._cache.forked()

    def _stub(self) -> pb_grpc.AuthServiceAsyncStub:
        current = self._current
        loop = asyncio.get_running_loop()
        if current is not None and current.pid == os.getpid() and current.loop is loop:
            return current.stub
        if current is not None and current.pid == os.getpid() and current.watcher is not None:
            current.watcher.stop()
        if current is not None and current.pid != os.getpid() and self._cache is not None:
            self._cache.forked()
        current = _Loop(self._settings)
        if self._cache is not None and self._cache.state is not CacheState.OFF:
            current.watcher = AsyncWatcher(
                self._cache, current.stub, lambda: watch_metadata(self._watch_token)
            )
            current.watcher.start()
        self._current = current
        return current.stub

    async def close(self) -> None:
        """Stops the revocation watcher and closes the channel."""
        current, self._current = self._current, None
        if current is not None and current.pid == os.getpid():
            if current.watcher is not None:
                current.watcher.stop()
            await current.channel.close()

    async def __aenter__(self) -> AuthClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def cache_state(self) -> CacheState:
        """Whether the verification cache answers now."""
        return self._cache.state if self._cache is not None else CacheState.OFF

    async def wait_for_cache(self, timeout: float = 10.0) -> bool:
        """Waits until the cache answers (its stream caught up); ``False``
        after ``timeout`` seconds or when the cache is off."""
        self._stub()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.cache_state is CacheState.ANSWERING:
                return True
            await asyncio.sleep(0.02)
        return False

    async def _unary(
        self,
        call: Callable[[pb_grpc.AuthServiceAsyncStub], Callable[..., Awaitable[R]]],
        request: Message,
        *,
        retry: bool,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> R:
        attempts = self._settings.retry.max_attempts if retry else 1
        attempt = 1
        while True:
            try:
                return await call(self._stub())(
                    request, timeout=self._settings.timeout, metadata=metadata
                )
            except grpc.aio.AioRpcError as error:
                failed = AuthError.from_rpc_error(error)
            if failed.code is grpc.StatusCode.UNAVAILABLE and attempt < attempts:
                await asyncio.sleep(self._settings.retry.backoff(attempt))
                attempt += 1
                continue
            raise failed

    def cached(
        self,
        token: str,
        scopes: Sequence[str] = (),
        *,
        client_certificate: bytes | None = None,
    ) -> VerifiedToken | None:
        """The cache's answer for ``token`` and these scopes, if it gives one
        now; never calls authd (call from the event loop). A certificate-bound
        token's answer is given only with the certificate (DER) it is bound
        to as ``client_certificate``."""
        bare = cacheable(token, None, None)
        if bare is None:
            return None
        return self._hit(bare, scope_part(scopes), client_certificate)

    def _hit(
        self, bare: str, scopes: KeyPart, client_certificate: bytes | None
    ) -> VerifiedToken | None:
        """The cached answer for the bare token ``bare`` and the scope set
        whose `scope_part` is ``scopes``, when the request proves its
        binding (`binding_proven`)."""
        return self._cached(token_key(bare, scopes), client_certificate)

    def _cached(self, key: bytes, client_certificate: bytes | None) -> VerifiedToken | None:
        """`_hit` by the entry's key (`authd.cache.token_key`)."""
        cache = self._cache
        if cache is None:
            return None
        hit = cache.answer(key, client_certificate)
        if hit is None:
            # The cache answers only while this process's stream is live
            # (a forked child's cache is reset by `_fork`): when it does
            # not, the stream may have to be started.
            self._stub()
        return hit

    async def verify_token(
        self,
        token: str,
        scopes: Sequence[str] = (),
        *,
        audience: str | None = None,
        dpop_proof: str | None = None,
        http_method: str = "",
        http_uri: str = "",
        client_certificate: bytes | None = None,
    ) -> VerifiedToken:
        """See `authd.AuthClient.verify_token`."""
        bare = cacheable(token, audience, dpop_proof)
        key = cache_key(bare, scopes) if bare is not None and self._cache is not None else None
        if key is not None:
            hit = self._cached(key, client_certificate)
            if hit is not None:
                return hit
        request = verify_request(
            token, scopes, audience, dpop_proof, http_method, http_uri, client_certificate
        )
        response = await self._unary(lambda s: s.VerifyToken, request, retry=True)
        verified = VerifiedToken.from_pb(response)
        if key is not None and bare is not None and self._cache is not None:
            self._cache.insert(key, bare, verified)
        return verified

    async def create_session(
        self,
        *,
        authorization_code: pb.AuthorizationCodeGrant | None = None,
        existing_tokens: pb.ExistingTokens | None = None,
        issuer: str = "",
    ) -> NewSession:
        """See `authd.AuthClient.create_session`."""
        request = pb.CreateSessionRequest(issuer=issuer)
        if authorization_code is not None:
            request.authorization_code.CopyFrom(authorization_code)
        elif existing_tokens is not None:
            request.existing_tokens.CopyFrom(existing_tokens)
        response = await self._unary(lambda s: s.CreateSession, request, retry=False)
        return NewSession.from_pb(response.session)

    async def refresh_session(
        self,
        *,
        session_handle: Secret | str | None = None,
        refresh_token: Secret | str | None = None,
        issuer: str = "",
    ) -> Refreshed:
        """See `authd.AuthClient.refresh_session`."""
        request = pb.RefreshSessionRequest(issuer=issuer)
        if session_handle is not None:
            request.session_handle = _expose(session_handle)
        elif refresh_token is not None:
            request.refresh_token = _expose(refresh_token)
        response = await self._unary(lambda s: s.RefreshSession, request, retry=False)
        return Refreshed.from_pb(response)

    async def revoke_session(
        self,
        *,
        session_handle: Secret | str | None = None,
        user_id: str | None = None,
        service_token: Secret | str | None = None,
    ) -> int:
        """See `authd.AuthClient.revoke_session`."""
        request = pb.RevokeSessionRequest()
        if session_handle is not None:
            request.session_handle = _expose(session_handle)
        elif user_id is not None:
            request.user_id = user_id
        metadata = bearer(_expose(service_token)) if service_token is not None else ()
        response = await self._unary(
            lambda s: s.RevokeSession, request, retry=True, metadata=metadata
        )
        return response.revoked_sessions

    async def get_profile(
        self,
        *,
        access_token: str | None = None,
        user_id: str | None = None,
        service_token: Secret | str | None = None,
    ) -> Profile:
        """See `authd.AuthClient.get_profile`."""
        request = pb.GetProfileRequest()
        if access_token is not None:
            request.access_token = access_token
        elif user_id is not None:
            request.user_id = user_id
        metadata = bearer(_expose(service_token)) if service_token is not None else ()
        response = await self._unary(lambda s: s.GetProfile, request, retry=True, metadata=metadata)
        return Profile.from_pb(response.profile)

    async def start_device_login(
        self, scopes: Sequence[str] = (), *, audience: str = "", issuer: str = ""
    ) -> DeviceLogin:
        """See `authd.AuthClient.start_device_login`."""
        request = pb.StartDeviceLoginRequest(scopes=list(scopes), audience=audience, issuer=issuer)
        response = await self._unary(lambda s: s.StartDeviceLogin, request, retry=False)
        return DeviceLogin.from_pb(response)

    async def poll_device_login(
        self, device_code: Secret | str, *, interval: int = 0, issuer: str = ""
    ) -> DevicePoll:
        """See `authd.AuthClient.poll_device_login`."""
        request = pb.PollDeviceLoginRequest(
            device_code=_expose(device_code), interval=interval, issuer=issuer
        )
        return device_poll(await self._unary(lambda s: s.PollDeviceLogin, request, retry=True))

    async def device_login(
        self,
        show: Callable[[DeviceLogin], object],
        scopes: Sequence[str] = (),
        *,
        audience: str = "",
        issuer: str = "",
    ) -> NewSession:
        """See `authd.AuthClient.device_login`; ``show`` may be a coroutine function."""
        login = await self.start_device_login(scopes, audience=audience, issuer=issuer)
        shown = show(login)
        if asyncio.iscoroutine(shown):
            await shown
        interval = login.interval or 5
        while True:
            await asyncio.sleep(interval)
            poll = await self.poll_device_login(login.device_code, interval=interval, issuer=issuer)
            if poll.state is DeviceLoginState.APPROVED and poll.session is not None:
                return poll.session
            if poll.state in (DeviceLoginState.DENIED, DeviceLoginState.EXPIRED):
                raise DeviceLoginError(poll.state)
            interval = next_interval(poll, interval)

    @property
    def raw(self) -> pb_grpc.AuthServiceAsyncStub:
        """The generated stub (its calls are awaitable), for what the typed
        methods do not cover. Call from the event loop."""
        return self._stub()
