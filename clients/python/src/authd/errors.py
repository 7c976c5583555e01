"""`AuthError` and `ErrorReason`: what went wrong, with authd's reason decoded
from the ``google.rpc.ErrorInfo`` in the ``grpc-status-details-bin`` trailer."""

from __future__ import annotations

import enum
from collections.abc import Mapping

import grpc
from google.rpc import error_details_pb2, status_pb2

#: The ``ErrorInfo.domain`` of every error authd sends.
ERROR_DOMAIN = "authd"


class ErrorReason(str, enum.Enum):
    """Why authd refused a request: the ``reason`` of its ``google.rpc.ErrorInfo``,
    the ``auth.v1.ErrorReason`` value without ``ERROR_REASON_``.

    Members are strings, so ``error.reason == "TOKEN_EXPIRED"`` works too. A
    newer authd may send a reason this package does not list yet: it arrives
    as a plain ``str``. A test keeps this list equal to the generated enum.
    """

    TOKEN_MISSING = "TOKEN_MISSING"
    TOKEN_TOO_LARGE = "TOKEN_TOO_LARGE"
    MALFORMED_TOKEN = "MALFORMED_TOKEN"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    ALGORITHM_NOT_ALLOWED = "ALGORITHM_NOT_ALLOWED"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    TOKEN_NOT_YET_VALID = "TOKEN_NOT_YET_VALID"
    WRONG_ISSUER = "WRONG_ISSUER"
    WRONG_AUDIENCE = "WRONG_AUDIENCE"
    INSUFFICIENT_SCOPE = "INSUFFICIENT_SCOPE"
    SESSION_REVOKED = "SESSION_REVOKED"
    KEYS_UNAVAILABLE = "KEYS_UNAVAILABLE"
    INVALID_REQUEST = "INVALID_REQUEST"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    USER_NOT_FOUND = "USER_NOT_FOUND"
    CALLER_NOT_TRUSTED = "CALLER_NOT_TRUSTED"
    GRANT_REJECTED = "GRANT_REJECTED"
    ISSUER_UNAVAILABLE = "ISSUER_UNAVAILABLE"
    RATE_LIMITED = "RATE_LIMITED"
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    CONFLICT = "CONFLICT"
    NOT_IMPLEMENTED = "NOT_IMPLEMENTED"
    INTERNAL = "INTERNAL"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    OVERLOADED = "OVERLOADED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    WATCHER_TOO_SLOW = "WATCHER_TOO_SLOW"
    TOO_MANY_WATCHERS = "TOO_MANY_WATCHERS"
    TOKEN_BINDING_MISMATCH = "TOKEN_BINDING_MISMATCH"
    DPOP_PROOF_INVALID = "DPOP_PROOF_INVALID"
    DPOP_PROOF_REPLAYED = "DPOP_PROOF_REPLAYED"
    DPOP_NONCE_REQUIRED = "DPOP_NONCE_REQUIRED"
    TOKEN_TYPE_NOT_ALLOWED = "TOKEN_TYPE_NOT_ALLOWED"
    DEVICE_CODE_SPENT = "DEVICE_CODE_SPENT"
    SEALING_KEYS_UNAVAILABLE = "SEALING_KEYS_UNAVAILABLE"

    def __str__(self) -> str:
        return self.value


_KNOWN = {member.value: member for member in ErrorReason}


def reason_from_wire(reason: str) -> str:
    """The `ErrorReason` member named ``reason``, or ``reason`` itself."""
    return _KNOWN.get(reason, reason)


class AuthError(Exception):
    """An error from authd or from the connection to it.

    ``code`` is the gRPC status code; ``reason`` authd's reason (an
    `ErrorReason`, or a ``str`` for a reason newer than this package; ``None``
    when the error did not come from authd, e.g. a refused connection);
    ``metadata`` the ``ErrorInfo`` metadata (``missing`` for
    ``INSUFFICIENT_SCOPE``, ``expired_at`` for ``TOKEN_EXPIRED``, ...).
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})

    @property
    def is_unavailable(self) -> bool:
        """authd could not be reached or could not decide in time: callers must
        fail closed (refuse), never let the request through."""
        return self.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

    def __repr__(self) -> str:
        return f"AuthError(code={self.code.name}, reason={self.reason!s}, message={self.message!r})"

    @classmethod
    def from_status(
        cls,
        code: grpc.StatusCode,
        details: str | None,
        trailers: object,
    ) -> AuthError:
        """Builds the error of a failed call from its code, message and
        trailing metadata (a sequence of ``(key, value)`` pairs)."""
        reason: str | None = None
        metadata: dict[str, str] = {}
        info = _error_info(trailers)
        # ErrorInfo from another domain (a proxy, another service) says
        # nothing about authd's decision.
        if info is not None and info.domain == ERROR_DOMAIN:
            reason = reason_from_wire(info.reason)
            metadata = dict(info.metadata)
        return cls(code, details or "", reason, metadata)

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> AuthError:
        """The error of a failed call (a ``grpc.Call`` or ``grpc.aio.AioRpcError``)."""
        code = getattr(error, "code", None)
        details = getattr(error, "details", None)
        trailers = getattr(error, "trailing_metadata", None)
        return cls.from_status(
            code() if callable(code) else grpc.StatusCode.UNKNOWN,
            details() if callable(details) else str(error),
            trailers() if callable(trailers) else None,
        )


def _error_info(trailers: object) -> error_details_pb2.ErrorInfo | None:
    if not trailers:
        return None
    for item in trailers:  # type: ignore[attr-defined]
        key, value = item[0], item[1]
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except Exception:  # a malformed trailer is no reason
            return None
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return info
    return None
