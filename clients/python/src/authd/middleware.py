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

**Client certificates** (RFC 8705 certificate-bound tokens): every middleware
passes the TLS client certificate of the request to authd as DER, read where
the server puts it (`authd.asgi`: the ASGI TLS extension; `authd.wsgi`:
``SSL_CLIENT_CERT`` or gunicorn's socket), or — only when configured with
``client_cert_header`` — from the header a TLS-terminating proxy sets (Envoy's
``X-Forwarded-Client-Cert``, or a URL-encoded PEM as nginx's
``$ssl_client_escaped_cert``). A header that carries something other than a
certificate is refused (400 ``invalid_request``), never dropped.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import grpc

from . import aio
from .cache import KeyPart, scope_part
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
        self._default: Rule | None = Rule.of(default)
        self._paths: dict[str, Rule | None] = {}

    def default_scopes(self, scopes: Iterable[str]) -> ScopeRules:
        """The scopes of every path without a rule of its own."""
        self._default = Rule.of(scopes)
        return self

    def require(self, path: str, scopes: Iterable[str]) -> ScopeRules:
        """``path`` needs a token holding all of ``scopes``."""
        self._paths[path] = Rule.of(scopes)
        return self

    def public(self, path: str) -> ScopeRules:
        """``path`` needs no token: requests pass without calling authd."""
        self._paths[path] = None
        return self

    def rule(self, path: str) -> Rule | None:
        """The rule ``path`` falls under: ``None`` when public."""
        paths = self._paths
        if path in paths:
            return paths[path]
        cut = path.rfind("/")
        if cut >= 0 and path[: cut + 1] in paths:
            return paths[path[: cut + 1]]
        return self._default

    def access(self, path: str) -> Access:
        """What ``path`` needs: ``None`` when public, else the scopes."""
        rule = self.rule(path)
        return None if rule is None else rule.scopes


class Rule(NamedTuple):
    """What a protected path needs: the scopes, and the beginning of the
    cache keys of tokens asked for them (`authd.cache.scope_part`), made
    once with the rule rather than on every request."""

    scopes: tuple[str, ...]
    part: KeyPart

    @staticmethod
    def of(scopes: Iterable[str]) -> Rule:
        held = tuple(scopes)
        return Rule(held, scope_part(held))


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
    header, its method, its URI as its client addressed it, and the client
    certificate (DER) of its TLS connection."""

    authorization: str
    dpop_proof: str | None
    method: str
    uri: str
    client_certificate: bytes | None = None

    def with_certificate(self, der: bytes | None) -> Presented:
        """The same, with the client certificate ``der`` (if any)."""
        if der is None:
            return self
        return Presented(self.authorization, self.dpop_proof, self.method, self.uri, der)

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


# === client certificates (RFC 8705) ===

#: The header Envoy forwards the client certificate in (its XFCC format).
XFCC = "x-forwarded-client-cert"

_PEM = re.compile(r"-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----")


def unusable_certificate(where: str) -> Refusal:
    """A request whose client certificate was given but cannot be read: 400,
    never passed on without it."""
    description = f"{_quoted(where)} does not hold a client certificate"
    challenge = f'Bearer error="invalid_request", error_description="{description}"'
    return Refusal(400, [("WWW-Authenticate", challenge)], None, "invalid_request")


def pem_to_der(pem: str, where: str) -> bytes:
    """The DER of the first certificate of ``pem`` (a chain's first is its
    leaf). Raises `Refusal` (400) when there is none."""
    match = _PEM.search(pem)
    if match is None:
        raise unusable_certificate(where)
    try:
        der = base64.b64decode("".join(match.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        raise unusable_certificate(where) from None
    if len(der) < 2 or der[0] != 0x30:  # an X.509 certificate is a DER SEQUENCE
        raise unusable_certificate(where)
    return der


def _xfcc_elements(value: str) -> list[dict[str, str]]:
    """Envoy's ``X-Forwarded-Client-Cert``: elements separated by ``,``, each
    ``key=value`` pairs separated by ``;``, values optionally in double
    quotes (which may hold ``,`` and ``;``, and ``\"``)."""
    elements: list[dict[str, str]] = [{}]
    i, n = 0, len(value)
    while i < n:
        eq = value.find("=", i)
        if eq < 0:
            break
        key = value[i:eq].strip().lower().lstrip(",;").strip()
        i = eq + 1
        if i < n and value[i] == '"':
            i += 1
            out = []
            while i < n and value[i] != '"':
                if value[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(value[i])
                i += 1
            item = "".join(out)
            i += 1  # the closing quote
        else:
            end = i
            while end < n and value[end] not in ";,":
                end += 1
            item = value[i:end].strip()
            i = end
        elements[-1][key] = item
        while i < n and value[i] in " \t":
            i += 1
        if i < n and value[i] == ",":
            elements.append({})
        if i < n:
            i += 1
    return elements


def certificate_from_header(name: str, value: str) -> bytes | None:
    """The client certificate (DER) a TLS-terminating proxy forwarded in the
    header ``name``: Envoy's ``X-Forwarded-Client-Cert`` (the ``Cert`` of its
    first element, the one the proxy that terminated the client's TLS
    added), or else a URL-encoded PEM (nginx's ``$ssl_client_escaped_cert``,
    AWS ALB's ``X-Amzn-Mtls-Clientcert``). ``None`` when the header is empty
    or names no certificate (the client sent none); raises `Refusal` (400)
    when it holds something else, or several PEM headers were joined."""
    value = value.strip()
    if not value:
        return None
    if name.lower() == XFCC:
        cert = _xfcc_elements(value)[0].get("cert")
        if not cert:
            return None
        return pem_to_der(urllib.parse.unquote(cert), name)
    if "," in value:
        # A URL-encoded PEM holds no comma: the header came several times
        # (a WSGI server joins them with commas). Which one is the client's?
        raise unusable_certificate(f"several {name} headers")
    return pem_to_der(urllib.parse.unquote(value), name)


def verify(client: AuthClient, p: Presented, scopes: Sequence[str]) -> VerifiedToken:
    """Verifies with the blocking client; raises `Refusal`."""
    try:
        return client.verify_token(
            p.authorization,
            scopes,
            dpop_proof=p.dpop_proof,
            http_method=p.method if p.dpop else "",
            http_uri=p.uri,
            client_certificate=p.client_certificate,
        )
    except AuthError as error:
        raise refusal(error, scopes, p.dpop) from None


async def verify_async(client: AnyClient, p: Presented, scopes: Sequence[str]) -> VerifiedToken:
    """Verifies from asyncio: with `authd.aio.AuthClient` on the loop, or with
    the blocking client (a cache hit inline, a call in a worker thread);
    raises `Refusal`."""
    if not p.dpop:
        hit = client.cached(p.authorization, scopes, client_certificate=p.client_certificate)
        if hit is not None:
            return hit
    return await _ask_async(client, p, scopes)


def bearer_token(authorization: str) -> str | None:
    """The token of a ``Bearer`` credential (the scheme in any case), else
    ``None``: the same token `credential` and the clients' cache find, read
    with less work for the usual spelling."""
    if authorization[:7] == "Bearer ":
        token = authorization[7:].strip()
        return token or None
    scheme, _, rest = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip() or None
    return None


async def authorize_async(
    client: AnyClient,
    authorization: str | None,
    proof: str | None,
    method: str,
    path: str,
    dpop_origin: str | None,
    scopes: tuple[str, ...],
    certificate: Callable[[], bytes | None],
) -> VerifiedToken:
    """What the ASGI middleware and the FastAPI dependency do for a request:
    a ``Bearer`` token without a ``DPoP`` header is answered from the cache
    when it can be (with no more work than that), anything else is
    `presented` and verified. ``certificate`` reads the client certificate
    (DER), only once there is a credential. Raises `Refusal`."""
    if proof is None and authorization is not None:
        bare = bearer_token(authorization)
        if bare is not None:
            der = certificate()
            hit = client._hit(bare, scope_part(scopes), der)
            if hit is not None:
                return hit
            return await _ask_async(client, Presented(authorization, None, method, "", der), scopes)
    p = presented(authorization, proof, method, path, dpop_origin)
    if p is None:
        raise missing()
    p = p.with_certificate(certificate())
    return await verify_async(client, p, scopes)


async def _ask_async(client: AnyClient, p: Presented, scopes: Sequence[str]) -> VerifiedToken:
    """`verify_async` past the cache: authd decides (the clients' own cache
    is asked once more on the way)."""
    try:
        if isinstance(client, aio.AuthClient):
            return await client.verify_token(
                p.authorization,
                scopes,
                dpop_proof=p.dpop_proof,
                http_method=p.method if p.dpop else "",
                http_uri=p.uri,
                client_certificate=p.client_certificate,
            )
        return await asyncio.to_thread(verify, client, p, scopes)
    except AuthError as error:
        raise refusal(error, scopes, p.dpop) from None
