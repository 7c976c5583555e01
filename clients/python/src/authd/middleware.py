"""What every framework's middleware shares: the scopes each path requires
(`ScopeRules`), reading the credential, and the RFC 6750 answer to a refusal
(`Refusal`). The framework modules (`authd.fastapi`, `authd.asgi`,
`authd.wsgi`, `authd.django`, `authd.drf`) only adapt these.

Every middleware fails **closed**: when authd cannot be reached or cannot
decide, the request is refused with 503, never let through.

| case | status | ``WWW-Authenticate`` |
|---|---|---|
| no bearer token | 401 | ``Bearer`` |
| authd refused the token | 401 | ``Bearer error="invalid_token", error_description="…"`` |
| a required scope is missing | 403 | ``Bearer error="insufficient_scope", scope="…", …`` |
| authd unreachable or undecided | 503 | — |

A request that used DPoP gets RFC 9449's ``DPoP`` challenges instead
(``invalid_dpop_proof``, ``use_dpop_nonce`` with the nonce in ``DPoP-Nonce``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import grpc

from . import aio
from .client import AuthClient
from .errors import AuthError, ErrorReason
from .types import VerifiedToken

#: The blocking or the asyncio client.
AnyClient = AuthClient | aio.AuthClient

log = logging.getLogger("authd")

#: What a path needs: ``None`` (public) or the scopes a token must hold.
Access = tuple[str, ...] | None


class ScopeRules:
    """The scopes each request path requires.

    A rule's path is exact (``/orders``) or, when it ends with ``/``, a prefix
    of one segment (``/orders/`` covers ``/orders/42``). The exact rule wins,
    then the prefix, then the default (a verified token with no particular
    scope, unless set with `default_scopes`)::

        rules = (ScopeRules()
                 .default_scopes(["read:orders"])
                 .require("/orders/cancel", ["write:orders"])
                 .public("/healthz"))
    """

    def __init__(self, default: Sequence[str] = ()) -> None:
        self._default: Access = tuple(default)
        self._paths: dict[str, Access] = {}

    def default_scopes(self, scopes: Iterable[str]) -> ScopeRules:
        """The scopes of every path without a rule of its own."""
        self._default = tuple(scopes)
        return self

    def require(self, path: str, scopes: Iterable[str]) -> ScopeRules:
        """``path`` needs a token holding all of ``scopes``."""
        self._paths[path] = tuple(scopes)
        return self

    def public(self, path: str) -> ScopeRules:
        """``path`` needs no token: requests pass without calling authd."""
        self._paths[path] = None
        return self

    def access(self, path: str) -> Access:
        """What ``path`` needs: ``None`` when public, else the scopes."""
        if path in self._paths:
            return self._paths[path]
        cut = path.rfind("/")
        if cut >= 0 and path[: cut + 1] in self._paths:
            return self._paths[path[: cut + 1]]
        return self._default


@dataclass
class Refusal(Exception):
    """A refused request, as RFC 6750 (and RFC 9449 for DPoP) answers it.
    ``error`` is authd's, when authd refused."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    error: AuthError | None = None
    code: str | None = None

    def body(self) -> bytes:
        """A small JSON body: ``{"error": ..., "reason": ...}``."""
        payload: dict[str, str] = {}
        if self.code:
            payload["error"] = self.code
        elif self.status == 503:
            payload["error"] = "temporarily_unavailable"
        if self.error is not None and self.error.reason:
            payload["reason"] = str(self.error.reason)
        return json.dumps(payload).encode()

    @property
    def challenge(self) -> str | None:
        return next((v for k, v in self.headers if k.lower() == "www-authenticate"), None)


def _quoted(text: str) -> str:
    """Only what RFC 6750 allows in a quoted attribute (printable ASCII
    without ``"`` and ``\\``)."""
    out = []
    for c in text:
        if c == '"':
            out.append("'")
        elif c == "\\":
            out.append("/")
        elif " " <= c <= "~":
            out.append(c)
        else:
            out.append("?")
    return "".join(out)


def missing() -> Refusal:
    """No bearer token."""
    return Refusal(401, [("WWW-Authenticate", "Bearer")])


def refusal(error: AuthError, scopes: Sequence[str], dpop: bool) -> Refusal:
    """The answer to an `AuthError` from verifying a request's token."""
    if error.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT):
        headers: list[tuple[str, str]] = []
        if error.reason in (ErrorReason.DPOP_PROOF_INVALID, ErrorReason.DPOP_PROOF_REPLAYED):
            code = "invalid_dpop_proof"
        elif error.reason == ErrorReason.DPOP_NONCE_REQUIRED:
            code = "use_dpop_nonce"
            nonce = error.metadata.get("nonce")
            if nonce:
                headers.append(("DPoP-Nonce", nonce))
        elif error.reason == ErrorReason.INVALID_REQUEST:
            code = "invalid_request"
        else:
            code = "invalid_token"
        scheme = "DPoP" if dpop or code not in ("invalid_token", "invalid_request") else "Bearer"
        challenge = f'{scheme} error="{code}", error_description="{_quoted(error.message)}"'
        status = 400 if code == "invalid_request" else 401
        return Refusal(status, [("WWW-Authenticate", challenge), *headers], error, code)
    if error.code == grpc.StatusCode.PERMISSION_DENIED:
        scheme = "DPoP" if dpop else "Bearer"
        challenge = (
            f'{scheme} error="insufficient_scope", error_description="{_quoted(error.message)}", '
            f'scope="{_quoted(" ".join(scopes))}"'
        )
        return Refusal(403, [("WWW-Authenticate", challenge)], error, "insufficient_scope")
    # Anything else — authd down, overloaded, broken — cannot vouch for the
    # token: refuse.
    log.warning("authd could not verify a token: refusing the request: %s", error)
    return Refusal(503, [("Retry-After", "1")], error)


@dataclass(frozen=True)
class Presented:
    """What a request presents: its ``Authorization`` value, its ``DPoP``
    header, its method and its URI as its client addressed it."""

    authorization: str
    dpop_proof: str | None
    method: str
    uri: str

    @property
    def dpop(self) -> bool:
        return self.dpop_proof is not None or self.authorization.strip()[:4].lower() == "dpop"


def credential(authorization: str | None) -> str | None:
    """The ``Authorization`` value when its scheme is ``Bearer`` or ``DPoP``
    (any case) with a token."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() in ("bearer", "dpop") and token.strip():
        return authorization
    return None


def presented(
    authorization: str | None,
    dpop_proof: str | None,
    method: str,
    path: str,
    dpop_origin: str | None,
) -> Presented | None:
    """What the request presents, or ``None`` when it has no credential. The
    DPoP ``htu`` is ``dpop_origin`` + the path: a request's own ``Host`` is
    never trusted for it."""
    value = credential(authorization)
    if value is None:
        return None
    p = Presented(value, dpop_proof, method, "")
    if p.dpop and dpop_origin:
        p = Presented(value, dpop_proof, method, dpop_origin.rstrip("/") + path)
    return p


def verify(client: AuthClient, p: Presented, scopes: Sequence[str]) -> VerifiedToken:
    """Verifies with the blocking client; raises `Refusal`."""
    try:
        return client.verify_token(
            p.authorization,
            scopes,
            dpop_proof=p.dpop_proof,
            http_method=p.method if p.dpop else "",
            http_uri=p.uri,
        )
    except AuthError as error:
        raise refusal(error, scopes, p.dpop) from None


async def verify_async(client: AnyClient, p: Presented, scopes: Sequence[str]) -> VerifiedToken:
    """Verifies from asyncio: with `authd.aio.AuthClient` on the loop, or with
    the blocking client (a cache hit inline, a call in a worker thread);
    raises `Refusal`."""
    if not p.dpop:
        hit = client.cached(p.authorization, scopes)
        if hit is not None:
            return hit
    try:
        if isinstance(client, aio.AuthClient):
            return await client.verify_token(
                p.authorization,
                scopes,
                dpop_proof=p.dpop_proof,
                http_method=p.method if p.dpop else "",
                http_uri=p.uri,
            )
        return await asyncio.to_thread(verify, client, p, scopes)
    except AuthError as error:
        raise refusal(error, scopes, p.dpop) from None
