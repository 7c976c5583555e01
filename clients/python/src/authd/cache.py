"""The cache of positive verifications, revocation-aware and on by default.

**The guarantee:** a cached answer is given only while the client's
WatchRevocations stream has been heard from within `CacheConfig.max_silence`
and no revocation received on it names the token, so a revoked token stops
passing from the cache no later than the stream delivers its revocation, and
never more than ``max_silence`` after the stream falls silent.

A background watcher holds the stream (reconnecting with back-off, resuming
from its cursor: nothing is missed across a reconnection). Until a stream's
first heartbeat (each new stream first replays what may have been missed),
and whenever it has been silent longer than ``max_silence``, every
verification goes to authd. A revocation matches an entry by the token's
``sid``, its subject and ``iat`` (issued at or before a subject's
revocation), the SHA-256 of its signing input (``header.payload``), or the
SHA-256 of the whole token (older authd). Entries also end with the token's
``exp`` and `CacheConfig.max_ttl`; refusals are never cached, nor are
DPoP-bound tokens (each request's proof is authd's to check). Keys are the
SHA-256 of the whole token and the scope set: the cache never holds a token,
and a forged token (another signature) cannot hit a genuine entry.

A certificate-bound token (RFC 8705, ``cnf["x5t#S256"]``) is cached with its
binding, as the Rust client does, and an entry of one answers only a request
presenting that very certificate (`binding_proven`: its SHA-256 against the
bound thumbprint); any other presentation, or none, goes to authd, which
refuses it (``TOKEN_BINDING_MISMATCH``).

One lock guards the cache; it is never held across I/O or an ``await``, so
the cache is safe from threads and from asyncio tasks alike.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ._gen.auth.v1 import auth_pb2 as pb
from ._revoked import Identity, Revoked
from .types import VerifiedToken

log = logging.getLogger("authd")

# The beginning of a key (`scope_part`): a SHA-256 fed with a scope set.
if TYPE_CHECKING:
    from typing import TypeAlias

    KeyPart: TypeAlias = hashlib._Hash
else:
    KeyPart = type(hashlib.sha256())


@dataclass(frozen=True)
class CacheConfig:
    """How the verification cache behaves."""

    #: The longest an answer is reused, in seconds. Defaults to 30.
    max_ttl: float = 30.0
    #: The most answers kept; the oldest goes first. Defaults to 10,000; 0 turns the cache off.
    max_entries: int = 10_000
    #: The longest the revocation stream may stay silent (no revocation, no
    #: heartbeat) while the cache answers, in seconds; at least three of the
    #: heartbeat intervals authd announces. Defaults to 6 (authd's heartbeat is 2 s).
    max_silence: float = 6.0


#: The default: on, with every setting at its default.
DEFAULT_CACHE = CacheConfig()


class CacheState(enum.Enum):
    """Whether the cache answers now."""

    #: No cache: turned off, or authd does not let this caller watch revocations.
    OFF = "off"
    #: Waiting for the revocation stream's first heartbeat: every call goes to authd.
    SYNCING = "syncing"
    #: The stream is live: repeated tokens are answered from memory.
    ANSWERING = "answering"
    #: The stream has been silent longer than ``max_silence``: every call goes to authd.
    SILENT = "silent"


def cache_key(token: str, scopes: Sequence[str]) -> bytes:
    """SHA-256 of the scope set (sorted, once each), then ``Bearer `` and
    the token; each scope is length-prefixed and the set too, so that parts
    cannot run into each other."""
    return token_key(token, scope_part(scopes))


def token_key(token: str, part: KeyPart) -> bytes:
    """`cache_key` of ``token`` with the scope set's `scope_part`."""
    key = part.copy()
    key.update(b"Bearer ")
    key.update(token.encode())
    return key.digest()


def bearer_key(authorization: bytes, part: KeyPart) -> bytes:
    """The key of an ``Authorization`` header's raw value, hashed as it is,
    with nothing decoded, copied or checked: for the usual spelling,
    ``Bearer <token>`` with no other blank, it is `token_key` of the token.
    Entries are kept under that spelling only (`token_key` of the token
    `authd.middleware.bearer_token` reads), so any other spelling finds no
    entry and goes on to be read the general way. (A token of bytes that are
    not ASCII keys otherwise than `token_key` of it decoded: no JWT is such,
    and authd refuses it, so no entry holds one.)"""
    key = part.copy()
    key.update(authorization)
    return key.digest()


_PARTS: dict[tuple[str, ...], KeyPart] = {}


def scope_part(scopes: Sequence[str]) -> KeyPart:
    """What a scope set begins its keys with: a SHA-256 fed with the set's
    length and each scope (sorted, once each; as given when fewer than two)
    length-prefixed; a key goes on with ``Bearer `` and the token
    (`token_key`). Remembered for the few tuples of scopes the middleware
    ask with; never fed more (each key feeds a copy)."""
    memo: tuple[str, ...] | None = scopes if isinstance(scopes, tuple) else None
    if memo is not None:
        known = _PARTS.get(memo)
        if known is not None:
            return known
    framed = bytearray()
    for scope in scopes if len(scopes) < 2 else sorted(set(scopes)):
        data = scope.encode()
        framed += len(data).to_bytes(8, "big")
        framed += data
    part = hashlib.sha256(len(framed).to_bytes(8, "big") + framed)
    if memo is not None:
        if len(_PARTS) >= 1024:
            _PARTS.clear()
        _PARTS[memo] = part
    return part


def binding_proven(verified: VerifiedToken, client_certificate: bytes | None) -> bool:
    """Whether a cached verdict may answer a request presenting
    ``client_certificate`` (DER): always for an unbound token, and for a
    certificate-bound one only when the certificate is the one it is bound
    to. (DPoP-bound tokens are never cached.)"""
    binding = verified.binding
    if binding is None:
        return True
    if binding.jkt or not binding.x5t_s256 or not client_certificate:
        return False
    presented = base64.urlsafe_b64encode(hashlib.sha256(client_certificate).digest())
    return hmac.compare_digest(presented.rstrip(b"="), binding.x5t_s256.encode())


class _Entry:
    __slots__ = ("checked", "id", "token", "until")

    def __init__(self, token: VerifiedToken, id: Identity, until: float, checked: int) -> None:
        self.token = token
        self.id = id
        self.until = until
        #: The revocation version it was last checked against.
        self.checked = checked


class VerifyCache:
    """The cache itself; shared by the threads or tasks using one client."""

    def __init__(self, config: CacheConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._revoked = Revoked()
        self._revoked_version = 0
        self._off = config.max_entries <= 0
        self._synced = False
        self._last_heard: float | None = None
        self._silence = config.max_silence

    def _state(self, now: float) -> CacheState:
        if self._off:
            return CacheState.OFF
        if not self._synced:
            return CacheState.SYNCING
        if self._last_heard is not None and now - self._last_heard <= self._silence:
            return CacheState.ANSWERING
        return CacheState.SILENT

    @property
    def state(self) -> CacheState:
        """Whether the cache answers now."""
        with self._lock:
            return self._state(self._clock())

    def get(self, key: bytes) -> VerifiedToken | None:
        """The cached answer for ``key``, while the stream is live and no
        revocation names it, whatever its binding."""
        return self.answer(key, None, any_binding=True)

    def answer(
        self, key: bytes, client_certificate: bytes | None, *, any_binding: bool = False
    ) -> VerifiedToken | None:
        """`get`, given only to a request that proves the answer's binding
        (`binding_proven`: a certificate-bound token with that certificate,
        DER). Every repeated token's path: one call, with nothing made."""
        now = self._clock()
        with self._lock:
            # _state(now) is ANSWERING, inline.
            heard = self._last_heard
            if self._off or not self._synced or heard is None or now - heard > self._silence:
                return None
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.until > now and (
                entry.checked == self._revoked_version or not self._revoked.refuses(entry.id)
            ):
                entry.checked = self._revoked_version
                hit = entry.token
            else:
                del self._entries[key]
                return None
        if hit.binding is None or any_binding or binding_proven(hit, client_certificate):
            return hit
        return None

    def insert(self, key: bytes, token: str, verified: VerifiedToken) -> None:
        """Keeps authd's answer for ``token`` (without its scheme), unless a
        revocation already names it or the token is DPoP-bound. A
        certificate-bound token's answer is kept with its binding: see
        `binding_proven`."""
        binding = verified.binding
        if self.config.max_entries <= 0 or (
            binding is not None and (binding.jkt or not binding.x5t_s256)
        ):
            return
        remaining = (verified.expires_at - datetime.now(timezone.utc)).total_seconds()
        ttl = min(remaining, self.config.max_ttl)
        if ttl <= 0:
            return
        id = Identity.of(token, verified)
        with self._lock:
            # An answer authd gave before a revocation reached it may come
            # back after the revocation reached this client.
            if self._off or self._revoked.refuses(id):
                return
            self._entries.pop(key, None)
            while len(self._entries) >= self.config.max_entries:
                self._entries.popitem(last=False)
            self._entries[key] = _Entry(verified, id, self._clock() + ttl, self._revoked_version)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # === what the revocation stream says ===

    def revoked(self, revocation: pb.Revocation) -> None:
        """A revocation arrived: from now on no entry it names is answered."""
        with self._lock:
            self._revoked_version += 1
            if not self._revoked.add(revocation):
                log.warning(
                    "authd sent a revocation this client cannot match (kind %s); "
                    "emptying the cache",
                    revocation.kind,
                )
                self._entries.clear()
            self._last_heard = self._clock()

    def stream_opened(self) -> None:
        """A new stream opened: until its first heartbeat it replays what this
        client may have missed, so nothing is answered before that. A cache
        turned off because authd refused the stream is on again."""
        with self._lock:
            self._synced = False
            self._off = self.config.max_entries <= 0

    def heartbeat(self, interval: float) -> None:
        """A heartbeat arrived (``interval`` seconds announced): every
        revocation so far is known."""
        with self._lock:
            self._synced = True
            self._last_heard = self._clock()
            self._silence = max(self.config.max_silence, 3 * interval)
            self._revoked.prune()

    def turn_off(self) -> bool:
        """authd will not stream revocations to this caller: no cache.
        ``True`` when it was on."""
        with self._lock:
            was_on = not self._off
            self._off = True
            self._entries.clear()
            return was_on

    def forked(self) -> None:
        """This process was forked from the one that filled the cache: its
        stream belongs to the parent, so answer nothing until this process's
        own stream has caught up. Called in the child right after ``fork``,
        where a lock another thread of the parent held would stay held."""
        self._lock = threading.Lock()
        with self._lock:
            self._synced = False
            self._last_heard = None
