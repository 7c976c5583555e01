"""Domain types of the `auth.v1` answers: what `AuthClient` returns instead of
protobuf messages."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from ._gen.auth.v1 import auth_pb2 as pb


class Secret:
    """A secret string (session handle, refresh token, device code) whose
    ``repr`` and ``str`` never print it. ``expose()`` returns it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def expose(self) -> str:
        """The secret itself."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('...')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def _time(ts: timestamp_pb2.Timestamp) -> datetime:
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=timezone.utc)


def _optional_time(message: Any, name: str) -> datetime | None:
    return _time(getattr(message, name)) if message.HasField(name) else None


def _struct(value: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(value)


@dataclass(frozen=True)
class TokenBinding:
    """The key or certificate a sender-constrained token is bound to (``cnf``)."""

    #: ``cnf.jkt``: the RFC 7638 thumbprint of the DPoP key; ``""`` when unset.
    jkt: str = ""
    #: ``cnf["x5t#S256"]``: the certificate's SHA-256 thumbprint; ``""`` when unset.
    x5t_s256: str = ""


@dataclass(frozen=True)
class VerifiedToken:
    """A token authd verified."""

    subject: str
    issuer: str
    audiences: tuple[str, ...]
    scopes: tuple[str, ...]
    permissions: tuple[str, ...]
    expires_at: datetime
    session_id: str | None = None
    token_id: str | None = None
    issued_at: datetime | None = None
    authorized_party: str | None = None
    #: Every other claim of the payload.
    claims: dict[str, Any] = field(default_factory=dict)
    #: Set for a DPoP- or certificate-bound token, whose binding the call proved.
    binding: TokenBinding | None = None

    def has_scope(self, scope: str) -> bool:
        """Whether the token holds ``scope`` in its scopes or permissions."""
        return scope in self.scopes or scope in self.permissions

    @classmethod
    def from_pb(cls, r: pb.VerifyTokenResponse) -> VerifiedToken:
        binding = (
            TokenBinding(jkt=r.binding.jkt, x5t_s256=r.binding.x5t_s256)
            if r.HasField("binding")
            else None
        )
        return cls(
            subject=r.subject,
            issuer=r.issuer,
            audiences=tuple(r.audiences),
            scopes=tuple(r.scopes),
            permissions=tuple(r.permissions),
            expires_at=_time(r.expires_at),
            session_id=r.session_id or None,
            token_id=r.token_id or None,
            issued_at=_optional_time(r, "issued_at"),
            authorized_party=r.authorized_party or None,
            claims=_struct(r.claims),
            binding=binding,
        )


@dataclass(frozen=True)
class Session:
    """A session's public description (no secrets)."""

    session_id: str
    user_id: str
    issuer: str
    created_at: datetime | None
    refreshed_at: datetime | None
    expires_at: datetime | None

    @classmethod
    def from_pb(cls, s: pb.Session) -> Session:
        return cls(
            session_id=s.session_id,
            user_id=s.user_id,
            issuer=s.issuer,
            created_at=_optional_time(s, "created_at"),
            refreshed_at=_optional_time(s, "refreshed_at"),
            expires_at=_optional_time(s, "expires_at"),
        )


@dataclass(frozen=True)
class Profile:
    """What authd knows of a user."""

    user_id: str
    email: str
    email_verified: bool
    name: str
    nickname: str
    picture: str
    created_at: datetime | None
    updated_at: datetime | None
    attributes: dict[str, Any]

    @classmethod
    def from_pb(cls, p: pb.Profile) -> Profile:
        return cls(
            user_id=p.user_id,
            email=p.email,
            email_verified=p.email_verified,
            name=p.name,
            nickname=p.nickname,
            picture=p.picture,
            created_at=_optional_time(p, "created_at"),
            updated_at=_optional_time(p, "updated_at"),
            attributes=_struct(p.attributes),
        )


@dataclass(frozen=True)
class NewSession:
    """A session just created, with its handle (returned only here)."""

    session_handle: Secret
    session: Session | None
    access_token: str
    access_token_expires_at: datetime | None
    id_token: str | None
    profile: Profile | None

    @classmethod
    def from_pb(cls, s: pb.NewSession) -> NewSession:
        return cls(
            session_handle=Secret(s.session_handle),
            session=Session.from_pb(s.session) if s.HasField("session") else None,
            access_token=s.access_token,
            access_token_expires_at=_optional_time(s, "access_token_expires_at"),
            id_token=s.id_token or None,
            profile=Profile.from_pb(s.profile) if s.HasField("profile") else None,
        )


@dataclass(frozen=True)
class Refreshed:
    """A fresh access token."""

    access_token: str
    expires_at: datetime | None
    id_token: str | None
    #: The rotated refresh token, when a raw refresh token was refreshed.
    refresh_token: Secret | None
    scopes: tuple[str, ...]

    @classmethod
    def from_pb(cls, r: pb.RefreshSessionResponse) -> Refreshed:
        return cls(
            access_token=r.access_token,
            expires_at=_optional_time(r, "expires_at"),
            id_token=r.id_token or None,
            refresh_token=Secret(r.refresh_token) if r.refresh_token else None,
            scopes=tuple(r.scopes),
        )


@dataclass(frozen=True)
class DeviceLogin:
    """A device login begun (RFC 8628): show ``user_code`` and
    ``verification_uri`` to the user."""

    device_code: Secret
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    #: Seconds between polls.
    interval: int
    #: Seconds until the device code expires.
    expires_in: int

    @classmethod
    def from_pb(cls, r: pb.StartDeviceLoginResponse) -> DeviceLogin:
        return cls(
            device_code=Secret(r.device_code),
            user_code=r.user_code,
            verification_uri=r.verification_uri,
            verification_uri_complete=r.verification_uri_complete,
            interval=r.interval,
            expires_in=r.expires_in,
        )


class DeviceLoginState(enum.Enum):
    """Where a device login stands."""

    PENDING = "PENDING"
    SLOW_DOWN = "SLOW_DOWN"
    DENIED = "DENIED"
    EXPIRED = "EXPIRED"
    APPROVED = "APPROVED"


@dataclass(frozen=True)
class DevicePoll:
    """One poll's answer: the state, the interval to poll at from now on, and
    the session once approved."""

    state: DeviceLoginState
    interval: int
    session: NewSession | None = None
