"""What the sync and asyncio clients share: settings, TLS, retries, request
building and the channel's options."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from ._gen.auth.v1 import auth_pb2 as pb
from .errors import AuthError
from .types import DeviceLoginState, DevicePoll, NewSession

#: A service token, or a function returning the current one (asked at every
#: connection of the revocation stream, so a renewed token keeps working).
TokenSource = str | Callable[[], str]


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of calls that failed with ``UNAVAILABLE``, with exponential
    backoff and jitter. No other code is retried (an ``UNAUTHENTICATED``
    token stays bad), and only idempotent calls are: VerifyToken,
    GetProfile, RevokeSession, PollDeviceLogin — never CreateSession,
    RefreshSession or StartDeviceLogin, where a retry after a lost answer
    could rotate a refresh token twice."""

    #: Attempts in all, the first included; 1 disables retries. Defaults to 3.
    max_attempts: int = 3
    #: The wait before the first retry, in seconds, doubled each time. Defaults to 0.05.
    initial_backoff: float = 0.05
    #: The longest wait between attempts, in seconds. Defaults to 1.
    max_backoff: float = 1.0

    @classmethod
    def none(cls) -> RetryPolicy:
        """No retries."""
        return cls(max_attempts=1)

    def backoff(self, retry: int) -> float:
        """The wait before retry number ``retry`` (1-based): exponential,
        capped, then jittered into its upper half."""
        capped = min(self.initial_backoff * 2.0 ** (retry - 1), self.max_backoff)
        return capped / 2 + capped * random.random() / 2


@dataclass(frozen=True)
class TlsConfig:
    """TLS to authd: the CA roots (``None``: the system's), and for mutual TLS
    a client certificate chain and its private key (PEM bytes).
    ``server_name`` overrides the name checked in authd's certificate."""

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    server_name: str | None = None

    @classmethod
    def from_files(
        cls,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        server_name: str | None = None,
    ) -> TlsConfig:
        """TLS from PEM files: the CA, and for mutual TLS the client
        certificate and its key."""

        def read(path: str | Path | None) -> bytes | None:
            return Path(path).read_bytes() if path is not None else None

        return cls(read(ca), read(cert), read(key), server_name)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )


@dataclass(frozen=True)
class Settings:
    target: str
    tls: TlsConfig | None
    timeout: float | None
    retry: RetryPolicy
    options: tuple[tuple[str, Any], ...] = field(default=())

    def channel_args(self) -> tuple[str, grpc.ChannelCredentials | None, list[tuple[str, Any]]]:
        target, tls = self.target, self.tls
        for scheme in ("http://", "https://"):
            if target.startswith(scheme):
                target = target[len(scheme) :].rstrip("/")
                if scheme == "https://" and tls is None:
                    tls = TlsConfig()
        options: list[tuple[str, Any]] = [
            # Reconnect soon after authd comes back (gRPC waits up to 120 s).
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
            # Retries are this client's own (UNAVAILABLE only, idempotent calls only).
            ("grpc.enable_retries", 0),
        ]
        if tls is not None and tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        options.extend(self.options)
        return target, tls.credentials() if tls is not None else None, options


def split_authorization(authorization: str) -> tuple[str, str]:
    """The scheme (``bearer``, ``dpop`` or ``""``) and the token without it."""
    value = authorization.strip()
    head, _, rest = value.partition(" ")
    lowered = head.lower()
    if rest and lowered in ("bearer", "dpop"):
        return lowered, rest.strip()
    return "", value


def verify_request(
    token: str,
    scopes: Sequence[str],
    audience: str | None,
    dpop_proof: str | None,
    http_method: str,
    http_uri: str,
    client_certificate: bytes | None,
) -> pb.VerifyTokenRequest:
    request = pb.VerifyTokenRequest(
        token=token,
        required_scopes=list(scopes),
        dpop_proof=dpop_proof or "",
        http_method=http_method,
        http_uri=http_uri,
        client_certificate=client_certificate or b"",
    )
    if audience is not None:
        request.audience = audience
    return request


def cacheable(token: str, audience: str | None, dpop_proof: str | None) -> str | None:
    """The bare token when a cached verdict may answer this presentation:
    a plain bearer token, no audience override, no DPoP proof (DPoP
    presentations always go to authd). A client certificate does not stop a
    lookup: a hit is used only when `authd.cache.binding_proven` says so."""
    scheme, bare = split_authorization(token)
    if scheme == "dpop" or audience is not None or dpop_proof:
        return None
    return bare


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    if "\n" in token or "\r" in token:
        raise AuthError(grpc.StatusCode.INVALID_ARGUMENT, "service token is not a header value")
    return (("authorization", f"Bearer {token}"),)


_STATES = {
    pb.DEVICE_LOGIN_STATE_PENDING: DeviceLoginState.PENDING,
    pb.DEVICE_LOGIN_STATE_SLOW_DOWN: DeviceLoginState.SLOW_DOWN,
    pb.DEVICE_LOGIN_STATE_DENIED: DeviceLoginState.DENIED,
    pb.DEVICE_LOGIN_STATE_EXPIRED: DeviceLoginState.EXPIRED,
    pb.DEVICE_LOGIN_STATE_APPROVED: DeviceLoginState.APPROVED,
}


def device_poll(r: pb.PollDeviceLoginResponse) -> DevicePoll:
    state = _STATES.get(r.state)
    if state is None or (state is DeviceLoginState.APPROVED and not r.HasField("session")):
        raise AuthError(grpc.StatusCode.INTERNAL, f"authd sent device login state {r.state}")
    session = NewSession.from_pb(r.session) if state is DeviceLoginState.APPROVED else None
    return DevicePoll(state=state, interval=r.interval, session=session)


class DeviceLoginError(Exception):
    """A device login ended without a session: the user refused
    (``state`` DENIED) or the code expired (EXPIRED)."""

    def __init__(self, state: DeviceLoginState) -> None:
        super().__init__(f"device login {state.value.lower()}")
        self.state = state


def next_interval(poll: DevicePoll, interval: int) -> int:
    """RFC 8628 §3.5: a slow down adds 5 s, and the longer interval sticks."""
    if poll.state is DeviceLoginState.SLOW_DOWN:
        return max(poll.interval, interval + 5)
    return poll.interval or interval


def watch_metadata(source: TokenSource | None) -> tuple[tuple[str, str], ...]:
    if not source:
        return ()
    return bearer(source() if callable(source) else source)
