"""`AuthClient`: the synchronous client of ``auth.v1.AuthService``."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc
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
from ._watch import SyncWatcher
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

log = logging.getLogger("authd")
R = TypeVar("R", bound=Message)


class _Process:
    """The channel, stub and watcher of one process."""

    def __init__(self, settings: Settings) -> None:
        self.pid = os.getpid()
        target, credentials, options = settings.channel_args()
        self.channel = (
            grpc.secure_channel(target, credentials, options=options)
            if credentials is not None
            else grpc.insecure_channel(target, options=options)
        )
        self.stub = pb_grpc.AuthServiceStub(self.channel)
        self.watcher: SyncWatcher | None = None


class AuthClient:
    """A client of authd (blocking; use `authd.aio.AuthClient` under asyncio).

    ``target`` is ``host:port`` (or ``http://host:port``; ``https://`` turns on
    TLS with the system's roots). The channel is made on first use, in the
    process that uses it, and again in a forked child: build the client at
    import time and let gunicorn fork. Safe to share between threads.

    - ``tls``: `TlsConfig` (CA, client certificate and key for mutual TLS).
    - ``timeout``: the deadline of each attempt, in seconds (``None``: none). Defaults to 2.
    - ``retry``: retries on ``UNAVAILABLE`` of idempotent calls. Defaults to 3 attempts.
    - ``cache``: the revocation-aware verification cache, on by default;
      ``None`` turns it off. Read `authd.cache` for its guarantee.
    - ``watch_token``: the service token (or a function returning it) sent on
      the cache's WatchRevocations stream, for a caller authd's policy grants
      the stream by permission (``revocations:watch``) rather than by client
      certificate. A caller refused the stream runs without a cache (logged
      once) and asks again every minute; no request ever fails for that.
    - ``options``: extra gRPC channel options.
    """

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
        self._lock = threading.Lock()
        self._process: _Process | None = None
        self._closed = False
        _fork.track(self)

    # === the channel, per process ===

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        if self._cache is not None:
            self._cache.forked()

    def _stub(self) -> pb_grpc.AuthServiceStub:
        process = self._process
        if process is not None and process.pid == os.getpid():
            return process.stub
        with self._lock:
            process = self._process
            if process is None or process.pid != os.getpid():
                if self._closed:
                    raise AuthError(grpc.StatusCode.CANCELLED, "the client is closed")
                # A parent's channel is dropped, never closed here: its
                # threads are the parent's.
                process = _Process(self._settings)
                if self._cache is not None and self._cache.state is not CacheState.OFF:
                    process.watcher = SyncWatcher(
                        self._cache,
                        process.stub,
                        lambda: watch_metadata(self._watch_token),
                    )
                    process.watcher.start()
                self._process = process
            return process.stub

    def close(self) -> None:
        """Stops the revocation watcher and closes the channel."""
        with self._lock:
            self._closed = True
            process, self._process = self._process, None
        if process is not None and process.pid == os.getpid():
            if process.watcher is not None:
                process.watcher.stop()
            process.channel.close()

    def __enter__(self) -> AuthClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def cache_state(self) -> CacheState:
        """Whether the verification cache answers now."""
        if self._cache is None:
            return CacheState.OFF
        self._stub()  # the watcher starts with the channel
        return self._cache.state

    def wait_for_cache(self, timeout: float = 10.0) -> bool:
        """Waits until the cache answers (its stream caught up); ``False``
        after ``timeout`` seconds or when the cache is off."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.cache_state
            if state is CacheState.ANSWERING:
                return True
            time.sleep(0.02)
        return False

    # === calls ===

    def _unary(
        self,
        call: Callable[[pb_grpc.AuthServiceStub], Callable[..., R]],
        request: Message,
        *,
        retry: bool,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> R:
        attempts = self._settings.retry.max_attempts if retry else 1
        attempt = 1
        while True:
            try:
                return call(self._stub())(
                    request, timeout=self._settings.timeout, metadata=metadata
                )
            except grpc.RpcError as error:
                failed = AuthError.from_rpc_error(error)
            if failed.code is grpc.StatusCode.UNAVAILABLE and attempt < attempts:
                time.sleep(self._settings.retry.backoff(attempt))
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
        """The cache's answer for ``token`` (``Bearer`` accepted) and these
        scopes, if it gives one now; never calls authd. A certificate-bound
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

    def verify_token(
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
        """Verifies ``token`` (a leading ``Bearer `` or ``DPoP `` is
        accepted), requiring every scope in ``scopes``. Answered from the
        cache when it holds this token and these scopes and its revocation
        stream is live. For a sender-constrained token pass the request's
        ``DPoP`` header, method and URI (those calls always go to authd), or
        its TLS client certificate (DER): a cached answer for a
        certificate-bound token is used only with the certificate it is
        bound to, anything else goes to authd. Raises `AuthError`."""
        bare = cacheable(token, audience, dpop_proof)
        key = cache_key(bare, scopes) if bare is not None and self._cache is not None else None
        if key is not None:
            hit = self._cached(key, client_certificate)
            if hit is not None:
                return hit
        request = verify_request(
            token, scopes, audience, dpop_proof, http_method, http_uri, client_certificate
        )
        response = self._unary(lambda s: s.VerifyToken, request, retry=True)
        verified = VerifiedToken.from_pb(response)
        if key is not None and bare is not None and self._cache is not None:
            self._cache.insert(key, bare, verified)
        return verified

    def create_session(
        self,
        *,
        authorization_code: pb.AuthorizationCodeGrant | None = None,
        existing_tokens: pb.ExistingTokens | None = None,
        issuer: str = "",
    ) -> NewSession:
        """Starts a session from a sign-in: an authorization code to exchange,
        or tokens the caller holds. Never retried."""
        request = pb.CreateSessionRequest(issuer=issuer)
        if authorization_code is not None:
            request.authorization_code.CopyFrom(authorization_code)
        elif existing_tokens is not None:
            request.existing_tokens.CopyFrom(existing_tokens)
        response = self._unary(lambda s: s.CreateSession, request, retry=False)
        return NewSession.from_pb(response.session)

    def refresh_session(
        self,
        *,
        session_handle: Secret | str | None = None,
        refresh_token: Secret | str | None = None,
        issuer: str = "",
    ) -> Refreshed:
        """A fresh access token for a session handle, or for a raw refresh
        token (then rotated). Never retried."""
        request = pb.RefreshSessionRequest(issuer=issuer)
        if session_handle is not None:
            request.session_handle = _expose(session_handle)
        elif refresh_token is not None:
            request.refresh_token = _expose(refresh_token)
        return Refreshed.from_pb(self._unary(lambda s: s.RefreshSession, request, retry=False))

    def revoke_session(
        self,
        *,
        session_handle: Secret | str | None = None,
        user_id: str | None = None,
        service_token: Secret | str | None = None,
    ) -> int:
        """Revokes one session, or every session of a user (a trusted
        service, proven by ``service_token``); answers how many."""
        request = pb.RevokeSessionRequest()
        if session_handle is not None:
            request.session_handle = _expose(session_handle)
        elif user_id is not None:
            request.user_id = user_id
        metadata = bearer(_expose(service_token)) if service_token is not None else ()
        response = self._unary(lambda s: s.RevokeSession, request, retry=True, metadata=metadata)
        return response.revoked_sessions

    def get_profile(
        self,
        *,
        access_token: str | None = None,
        user_id: str | None = None,
        service_token: Secret | str | None = None,
    ) -> Profile:
        """The profile of the user ``access_token`` belongs to, or of any
        ``user_id`` for a trusted service proven by ``service_token``."""
        request = pb.GetProfileRequest()
        if access_token is not None:
            request.access_token = access_token
        elif user_id is not None:
            request.user_id = user_id
        metadata = bearer(_expose(service_token)) if service_token is not None else ()
        response = self._unary(lambda s: s.GetProfile, request, retry=True, metadata=metadata)
        return Profile.from_pb(response.profile)

    def start_device_login(
        self, scopes: Sequence[str] = (), *, audience: str = "", issuer: str = ""
    ) -> DeviceLogin:
        """Begins a device login (RFC 8628). Never retried."""
        request = pb.StartDeviceLoginRequest(scopes=list(scopes), audience=audience, issuer=issuer)
        return DeviceLogin.from_pb(self._unary(lambda s: s.StartDeviceLogin, request, retry=False))

    def poll_device_login(
        self, device_code: Secret | str, *, interval: int = 0, issuer: str = ""
    ) -> DevicePoll:
        """Where a device login stands; ``interval`` is the one polled at now."""
        request = pb.PollDeviceLoginRequest(
            device_code=_expose(device_code), interval=interval, issuer=issuer
        )
        return device_poll(self._unary(lambda s: s.PollDeviceLogin, request, retry=True))

    def device_login(
        self,
        show: Callable[[DeviceLogin], None],
        scopes: Sequence[str] = (),
        *,
        audience: str = "",
        issuer: str = "",
        sleep: Callable[[float], None] = time.sleep,
    ) -> NewSession:
        """Runs a whole device login: starts it, hands it to ``show`` (print
        the user code and URI), then polls every ``interval`` seconds — longer
        after a slow down, as RFC 8628 §3.5 asks — until the user answers.
        Returns the session; raises `DeviceLoginError` when the user refused
        or the code expired."""
        login = self.start_device_login(scopes, audience=audience, issuer=issuer)
        show(login)
        interval = login.interval or 5
        while True:
            sleep(interval)
            poll = self.poll_device_login(login.device_code, interval=interval, issuer=issuer)
            if poll.state is DeviceLoginState.APPROVED and poll.session is not None:
                return poll.session
            if poll.state in (DeviceLoginState.DENIED, DeviceLoginState.EXPIRED):
                raise DeviceLoginError(poll.state)
            interval = next_interval(poll, interval)

    @property
    def raw(self) -> pb_grpc.AuthServiceStub:
        """The generated stub, for what the typed methods do not cover."""
        return self._stub()


def _expose(value: Secret | str) -> str:
    return value.expose() if isinstance(value, Secret) else value
