"""The cache and the revocations on their own, with a controlled clock: the
Rust client's cache tests (client/src/cache.rs, revoked.rs), in Python."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from authd import CacheConfig, CacheState, VerifiedToken
from authd._common import split_authorization
from authd._gen.auth.v1 import auth_pb2 as pb
from authd.cache import VerifyCache, bearer_key, cache_key, scope_part, token_key
from authd.middleware import bearer_token, credential
from authd.types import TokenBinding

NOW = int(time.time())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def verified(
    sub: str = "auth0|alice",
    sid: str | None = "sid-1",
    iat: int = NOW - 100,
    lifetime: float = 3600,
) -> VerifiedToken:
    return VerifiedToken(
        subject=sub,
        issuer="https://i/",
        audiences=("a",),
        scopes=(),
        permissions=(),
        expires_at=datetime.now(timezone.utc) + timedelta(seconds=lifetime),
        session_id=sid,
        issued_at=datetime.fromtimestamp(iat, timezone.utc),
    )


def revocation(kind: int, value: str, at: int = NOW) -> pb.Revocation:
    r = pb.Revocation(kind=kind, issuer="https://i/", value=value)  # type: ignore[arg-type]
    r.revoked_at.seconds = at
    r.expires_at.seconds = NOW + 600
    return r


def state(cache: VerifyCache) -> CacheState:
    """The cache's state now (a call, so that checks in a row are not narrowed)."""
    return cache.state


def live(max_ttl: float = 300, max_entries: int = 10) -> tuple[VerifyCache, Clock]:
    clock = Clock()
    cache = VerifyCache(CacheConfig(max_ttl=max_ttl, max_entries=max_entries), clock)
    cache.stream_opened()
    cache.heartbeat(2.0)
    return cache, clock


def test_key_depends_on_token_and_scope_set_not_order() -> None:
    a = cache_key("t", ["read", "write"])
    assert a == cache_key("t", ["write", "read", "read"])
    assert a != cache_key("t", ["read"])
    assert a != cache_key("u", ["read", "write"])
    assert cache_key("t", ["read"]) != cache_key("t\0read", [])


def test_the_scope_part_is_remembered_and_keys_the_same() -> None:
    for scopes in [(), ("a",), ("b", "a", "a"), ["b", "a"], ("ü",)]:
        assert token_key("t", scope_part(scopes)) == cache_key("t", scopes)
        assert scope_part(tuple(scopes)).digest() == scope_part(list(scopes)).digest()
    framed = b"".join(len(s).to_bytes(8, "big") + s for s in (b"a", b"b"))
    key = hashlib.sha256(len(framed).to_bytes(8, "big") + framed + b"Bearer t")
    assert cache_key("t", ("b", "a", "a")) == key.digest()
    # Keys are made from a copy: the remembered part is never fed.
    assert cache_key("t", ("b", "a")) == key.digest()


def test_the_header_key_is_the_token_key_for_the_usual_spelling_only() -> None:
    part = scope_part(("read:orders",))
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
    assert bearer_key(b"Bearer " + token.encode(), part) == token_key(token, part)
    assert bearer_key(b"Bearer x", scope_part(())) == token_key("x", scope_part(()))
    # Any other spelling keys nothing the cache keeps: entries are kept
    # under the usual spelling of the token the general path reads.
    cache, _ = live()
    cache.insert(token_key("x", part), "x", verified())
    assert cache.answer(bearer_key(b"Bearer x", part), None) is not None
    for odd in [b"bearer x", b"Bearer  x", b"Bearer x ", b"Bearer\tx", b"Bearer ", b"Bearer", b"x"]:
        assert cache.answer(bearer_key(odd, part), None) is None, odd
    # Bytes that are not ASCII never key like the decoded header would.
    none = scope_part(())
    assert bearer_key(b"Bearer \xe9", none) != token_key(b"\xe9".decode("latin-1"), none)


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer abc",
        "bearer abc",
        "BEARER abc ",
        "  Bearer   abc  ",
        "Bearer  ",
        "Bearer",
        "Bearer\tabc",
        "Bearerabc",
        "DPoP abc",
        "Basic dTpw",
        "abc",
        "Bearer a b",
        "Bearer \u00a0abc\u00a0",
    ],
)
def test_the_fast_bearer_read_agrees_with_the_full_one(authorization: str) -> None:
    """What the middleware's hit path reads is what `credential` accepts as
    a Bearer credential and the cache keys it by."""
    value = credential(authorization)
    scheme, bare = split_authorization(authorization)
    expected = bare if value is not None and scheme == "bearer" else None
    assert bearer_token(authorization) == expected


def test_a_forged_signature_misses_the_genuine_entry() -> None:
    cache, _ = live()
    cache.insert(cache_key("h.p.sig", []), "h.p.sig", verified())
    assert cache.get(cache_key("h.p.sig", [])) is not None
    assert cache.get(cache_key("h.p.forged", [])) is None


def test_entry_lives_no_longer_than_max_ttl_nor_the_token() -> None:
    cache, clock = live(max_ttl=30)
    key = cache_key("t", [])
    cache.insert(key, "t", verified())
    clock.now += 29
    cache.heartbeat(2.0)
    assert cache.get(key) is not None
    clock.now += 2
    assert cache.get(key) is None
    short = cache_key("s", [])
    cache.insert(short, "s", verified(lifetime=5))
    clock.now += 6
    cache.heartbeat(2.0)
    assert cache.get(short) is None
    cache.insert(short, "s", verified(lifetime=-5))
    assert cache.get(short) is None


def test_oldest_entry_goes_when_full() -> None:
    cache, _ = live(max_entries=2)
    keys = [cache_key(t, []) for t in "abc"]
    for key in keys:
        cache.insert(key, "t", verified())
    assert len(cache) == 2
    assert cache.get(keys[0]) is None
    assert cache.get(keys[1]) is not None and cache.get(keys[2]) is not None


def test_nothing_is_answered_before_the_first_heartbeat_nor_past_the_silence() -> None:
    clock = Clock()
    cache = VerifyCache(CacheConfig(max_silence=6), clock)
    key = cache_key("t", [])
    cache.insert(key, "t", verified())
    assert state(cache) is CacheState.SYNCING and cache.get(key) is None
    cache.heartbeat(2.0)
    assert state(cache) is CacheState.ANSWERING and cache.get(key) is not None
    clock.now += 6
    assert cache.get(key) is not None
    clock.now += 0.01
    assert state(cache) is CacheState.SILENT and cache.get(key) is None
    cache.heartbeat(2.0)
    assert cache.get(key) is not None, "the entry was kept"
    cache.heartbeat(5.0)  # three announced heartbeats stretch the bound
    clock.now += 14
    assert state(cache) is CacheState.ANSWERING


@pytest.mark.parametrize(
    "kind,value",
    [
        (pb.REVOCATION_KIND_SESSION_ID, "sid-1"),
        (pb.REVOCATION_KIND_SUBJECT, "auth0|alice"),
        (pb.REVOCATION_KIND_SIGNED_DIGEST, hashlib.sha256(b"h.p").hexdigest()),
        (pb.REVOCATION_KIND_TOKEN_HASH, hashlib.sha256(b"h.p.s").hexdigest()),
    ],
)
def test_a_revocation_refuses_the_entries_it_names_only(kind: int, value: str) -> None:
    cache, _ = live()
    key, other = cache_key("h.p.s", []), cache_key("x.y.z", [])
    cache.insert(key, "h.p.s", verified())
    cache.insert(other, "x.y.z", verified("auth0|bob", "sid-2"))
    cache.revoked(revocation(kind, value))
    assert cache.get(key) is None
    assert cache.get(other) is not None
    cache.insert(key, "h.p.s", verified())  # an answer authd gave before it learned
    assert cache.get(key) is None, "not cached again"


def test_a_subject_revocation_spares_tokens_issued_after_it() -> None:
    cache, _ = live()
    cache.revoked(revocation(pb.REVOCATION_KIND_SUBJECT, "auth0|alice", at=NOW))
    for iat, refused in [(NOW - 5, True), (NOW, True), (NOW + 1, False)]:
        key = cache_key(f"t{iat}", [])
        cache.insert(key, f"t{iat}", verified(sid=None, iat=iat))
        assert (cache.get(key) is None) == refused, iat


def test_a_revocation_that_cannot_be_matched_empties_the_cache() -> None:
    cache, _ = live()
    key = cache_key("t", [])
    cache.insert(key, "t", verified())
    cache.revoked(revocation(pb.REVOCATION_KIND_SIGNED_DIGEST, "not-hex"))
    assert cache.get(key) is None


def test_bound_tokens_are_never_cached_and_off_keeps_nothing() -> None:
    cache, _ = live()
    key = cache_key("t", [])
    bound = verified()
    object.__setattr__(bound, "binding", TokenBinding(jkt="x"))
    cache.insert(key, "t", bound)
    assert cache.get(key) is None
    cache.turn_off()
    cache.heartbeat(2.0)
    cache.insert(key, "t", verified())
    assert state(cache) is CacheState.OFF and len(cache) == 0
    cache.stream_opened()
    cache.heartbeat(2.0)
    assert state(cache) is CacheState.ANSWERING


def test_threads_hammering_one_cache_see_consistent_answers() -> None:
    cache, _ = live(max_entries=50)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(2000):
                key = cache_key(f"t{(n * 7 + i) % 80}", [])
                cache.insert(key, "t", verified())
                hit = cache.get(key)
                assert hit is None or hit.subject == "auth0|alice"
                if i % 500 == 0:
                    cache.revoked(revocation(pb.REVOCATION_KIND_SESSION_ID, f"other-{i}"))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(cache) <= 50
