"""The revocations heard on authd's WatchRevocations stream, and what a
cached answer carries to be checked against them: the token's issuer,
subject, ``sid``, ``iat``, the SHA-256 of its signing input
(``header.payload``, what the issuer signed) and of the whole token.
Mirrors the Rust client's ``revoked.rs``: a revocation matches exactly what
it matches there."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from ._gen.auth.v1 import auth_pb2 as pb
from .types import VerifiedToken

_NEVER = 2**63 - 1


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class Identity:
    """What a revocation can name in a verified token."""

    issuer: str
    subject: str
    session_id: str | None
    #: ``iat``, unix seconds.
    issued_at: int | None
    #: SHA-256 of the signing input ``header.payload``.
    signed: bytes
    #: SHA-256 of the whole compact token.
    whole: bytes

    @classmethod
    def of(cls, token: str, verified: VerifiedToken) -> Identity:
        """The identity of ``token`` (without any scheme), as authd verified it."""
        signing_input = token.rsplit(".", 1)[0] if "." in token else token
        return cls(
            issuer=verified.issuer,
            subject=verified.subject,
            session_id=verified.session_id,
            issued_at=int(verified.issued_at.timestamp()) if verified.issued_at else None,
            signed=sha256(signing_input.encode()),
            whole=sha256(token.encode()),
        )


def _parse_hex(text: str) -> bytes | None:
    if len(text) != 64:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


class Revoked:
    """Revocations in force, each kept until it expires. Not locked: the
    cache holds its lock around every use."""

    def __init__(self) -> None:
        #: issuer -> sid -> expires_at
        self.sessions: dict[str, dict[str, int]] = {}
        #: issuer -> subject -> (revoked_at, expires_at)
        self.subjects: dict[str, dict[str, tuple[int, int]]] = {}
        #: SHA-256 of a signing input -> expires_at
        self.signed: dict[bytes, int] = {}
        #: SHA-256 of a whole token -> expires_at (older authd versions)
        self.whole: dict[bytes, int] = {}

    def add(self, r: pb.Revocation) -> bool:
        """Adds one revocation; ``False`` when it names nothing this client can
        match (an unknown kind, a digest that is not hex)."""
        expires_at = r.expires_at.seconds if r.HasField("expires_at") else _NEVER
        if r.kind == pb.REVOCATION_KIND_SESSION_ID:
            by_sid = self.sessions.setdefault(r.issuer, {})
            by_sid[r.value] = max(by_sid.get(r.value, expires_at), expires_at)
        elif r.kind == pb.REVOCATION_KIND_SUBJECT:
            at = r.revoked_at.seconds if r.HasField("revoked_at") else _NEVER
            by_sub = self.subjects.setdefault(r.issuer, {})
            old_at, old_exp = by_sub.get(r.value, (at, expires_at))
            by_sub[r.value] = (max(old_at, at), max(old_exp, expires_at))
        elif r.kind in (pb.REVOCATION_KIND_SIGNED_DIGEST, pb.REVOCATION_KIND_TOKEN_HASH):
            digest = _parse_hex(r.value)
            if digest is None:
                return False
            table = self.signed if r.kind == pb.REVOCATION_KIND_SIGNED_DIGEST else self.whole
            table[digest] = max(table.get(digest, expires_at), expires_at)
        else:
            return False
        return True

    def refuses(self, id: Identity) -> bool:
        """Whether a revocation refuses the token ``id`` names."""
        if id.session_id is not None and id.session_id in self.sessions.get(id.issuer, {}):
            return True
        subject = self.subjects.get(id.issuer, {}).get(id.subject)
        # A token without iat cannot prove it is newer.
        if subject is not None and (id.issued_at is None or id.issued_at <= subject[0]):
            return True
        return id.signed in self.signed or id.whole in self.whole

    def prune(self, now: float | None = None) -> None:
        """Forgets revocations that expired (no token they name is valid)."""
        current = int(time.time() if now is None else now)
        for by_sid in self.sessions.values():
            for key in [k for k, e in by_sid.items() if e <= current]:
                del by_sid[key]
        for by_sub in self.subjects.values():
            for key in [k for k, (_, e) in by_sub.items() if e <= current]:
                del by_sub[key]
        self.sessions = {i: m for i, m in self.sessions.items() if m}
        self.subjects = {i: m for i, m in self.subjects.items() if m}
        self.signed = {d: e for d, e in self.signed.items() if e > current}
        self.whole = {d: e for d, e in self.whole.items() if e > current}

    def __len__(self) -> int:
        return (
            sum(len(m) for m in self.sessions.values())
            + sum(len(m) for m in self.subjects.values())
            + len(self.signed)
            + len(self.whole)
        )
