//! The cache of positive verifications, revocation-aware and on by default.
//!
//! **The guarantee:** a cached answer is given only while this client's
//! WatchRevocations stream has been heard from within
//! [`CacheConfig::max_silence`] and no revocation received on it names the
//! token, so a revoked token stops passing from the cache no later than the
//! stream delivers its revocation, and never more than `max_silence` after
//! the stream falls silent.
//!
//! A background task holds the stream (reconnecting with back-off, resuming
//! from its cursor: nothing is missed across a reconnection). Until a
//! stream's first heartbeat (each new stream first replays what may have
//! been missed), and whenever it has been silent longer than `max_silence`,
//! every verification goes to authd. A revocation matches an
//! entry by the token's `sid`, its subject and `iat` (issued at or before a
//! subject's revocation), the SHA-256 of its signing input
//! (`header.payload`), or the SHA-256 of the whole token (older authd).
//! Entries also end with the token's `exp` and [`CacheConfig::max_ttl`];
//! refusals are never cached. A caller authd does not allow to watch
//! (`PERMISSION_DENIED`), or an authd without WatchRevocations, runs with
//! no cache (logged once; the stream is asked for again every minute).

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, SystemTime},
};

use authd_proto::pb;
use aws_lc_rs::digest;
use tokio::time::Instant;

use crate::{
    VerifiedToken,
    revoked::{Identity, Revoked},
};

/// How the verification cache behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// The longest an answer is reused. Defaults to 30 seconds.
    pub max_ttl: Duration,
    /// The most answers kept; the oldest goes first. Defaults to 10,000.
    pub max_entries: usize,
    /// The longest the revocation stream may stay silent (no revocation, no
    /// heartbeat) while the cache answers; at least three of the heartbeat
    /// intervals authd announces. Defaults to 6 seconds (authd's heartbeat
    /// is 2 s by default).
    pub max_silence: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_ttl: Duration::from_secs(30),
            max_entries: 10_000,
            max_silence: Duration::from_secs(6),
        }
    }
}

impl CacheConfig {
    /// Sets [`CacheConfig::max_ttl`].
    pub fn max_ttl(mut self, max_ttl: Duration) -> Self {
        self.max_ttl = max_ttl;
        self
    }

    /// Sets [`CacheConfig::max_entries`].
    pub fn max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// Sets [`CacheConfig::max_silence`].
    pub fn max_silence(mut self, max_silence: Duration) -> Self {
        self.max_silence = max_silence;
        self
    }
}

/// Whether the cache answers now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheState {
    /// No cache: turned off, or authd does not let this caller watch
    /// revocations.
    Off,
    /// Waiting for the revocation stream's first heartbeat: every call goes
    /// to authd.
    Syncing,
    /// The stream is live: repeated tokens are answered from memory.
    Answering,
    /// The stream has been silent longer than `max_silence`: every call
    /// goes to authd until it speaks again.
    Silent,
}

/// SHA-256 of the token and the required scopes: the cache never holds a
/// token, and a collision cannot be provoked.
type Key = [u8; 32];

#[derive(Debug)]
struct Entry {
    token: VerifiedToken,
    id: Identity,
    until: Instant,
    /// Insertion number, so that a stale place in `order` is recognised.
    seq: u64,
    /// The `Inner::revoked_version` it was last checked against: a hit
    /// with no revocation since skips the check.
    checked: u64,
}

/// What the revocation stream has said.
#[derive(Debug)]
struct Watch {
    off: bool,
    /// The first heartbeat came: every revocation in force is known.
    synced: bool,
    last_heard: Option<Instant>,
    /// `max_silence`, or three announced heartbeat intervals if longer.
    silence: Duration,
}

impl Watch {
    fn state(&self, now: Instant) -> CacheState {
        if self.off {
            CacheState::Off
        } else if !self.synced {
            CacheState::Syncing
        } else if self
            .last_heard
            .is_some_and(|at| now.saturating_duration_since(at) <= self.silence)
        {
            CacheState::Answering
        } else {
            CacheState::Silent
        }
    }
}

#[derive(Debug)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// Keys in insertion order, for eviction when full.
    order: VecDeque<(Key, u64)>,
    next_seq: u64,
    revoked: Revoked,
    /// Counts the revocations added (pruning expired ones only removes).
    revoked_version: u64,
    watch: Watch,
}

/// The cache itself; shared by every clone of a client.
#[derive(Debug)]
pub(crate) struct VerifyCache {
    config: CacheConfig,
    inner: Mutex<Inner>,
}

impl VerifyCache {
    pub(crate) fn new(config: CacheConfig) -> VerifyCache {
        VerifyCache {
            config,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: VecDeque::new(),
                next_seq: 0,
                revoked: Revoked::default(),
                revoked_version: 0,
                watch: Watch {
                    off: config.max_entries == 0,
                    synced: false,
                    last_heard: None,
                    silence: config.max_silence,
                },
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn key<S: AsRef<str>>(token: &str, scopes: &[S]) -> Key {
        let mut ctx = digest::Context::new(&digest::SHA256);
        // Each part is length-prefixed, so parts cannot run into each other.
        let mut part = |text: &str| {
            ctx.update(&(text.len() as u64).to_be_bytes());
            ctx.update(text.as_bytes());
        };
        part(token);
        // The scope set, in order and once each; no allocation for the
        // usual none or one.
        match scopes {
            [] => {}
            [one] => part(one.as_ref()),
            more => {
                let mut sorted: Vec<&str> = more.iter().map(AsRef::as_ref).collect();
                sorted.sort_unstable();
                sorted.dedup();
                sorted.into_iter().for_each(part);
            }
        }
        let mut key = [0; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    /// Whether the cache answers now.
    pub(crate) fn state(&self) -> CacheState {
        self.lock().watch.state(Instant::now())
    }

    /// The cached answer for `key`, while the stream is live and no
    /// revocation names it.
    pub(crate) fn get(&self, key: &Key) -> Option<VerifiedToken> {
        let now = Instant::now();
        let mut inner = self.lock();
        if inner.watch.state(now) != CacheState::Answering {
            return None;
        }
        let inner = &mut *inner;
        let entry = inner.entries.get_mut(key)?;
        if entry.until > now
            && (entry.checked == inner.revoked_version || !inner.revoked.refuses(&entry.id))
        {
            entry.checked = inner.revoked_version;
            return Some(entry.token.clone());
        }
        inner.entries.remove(key);
        None
    }

    /// Keeps authd's answer for `token` (without `Bearer `), unless a
    /// revocation already names it.
    pub(crate) fn insert(&self, key: Key, token: &str, verified: &VerifiedToken) {
        let remaining = verified
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let ttl = remaining.min(self.config.max_ttl);
        if ttl.is_zero() || self.config.max_entries == 0 {
            return;
        }
        let id = Identity::of(token, verified);
        let mut inner = self.lock();
        let inner = &mut *inner;
        // An answer authd gave before a revocation reached it may come back
        // after the revocation reached this client.
        if inner.watch.off || inner.revoked.refuses(&id) {
            return;
        }
        while inner.entries.len() >= self.config.max_entries {
            let Some((old, seq)) = inner.order.pop_front() else {
                break;
            };
            if inner.entries.get(&old).is_some_and(|e| e.seq == seq) {
                inner.entries.remove(&old);
            }
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.order.push_back((key, seq));
        // `order` may hold places of entries removed on expiry; keep it from
        // outgrowing the map.
        if inner.order.len() > 2 * self.config.max_entries {
            let entries = &inner.entries;
            inner
                .order
                .retain(|(k, s)| entries.get(k).is_some_and(|e| e.seq == *s));
        }
        inner.entries.insert(
            key,
            Entry {
                token: verified.clone(),
                id,
                until: Instant::now() + ttl,
                seq,
                checked: inner.revoked_version,
            },
        );
    }

    // === what the revocation stream says ===

    /// A revocation arrived: from now on no entry it names is answered.
    pub(crate) fn revoked(&self, revocation: &pb::Revocation) {
        let mut inner = self.lock();
        inner.revoked_version += 1;
        if !inner.revoked.add(revocation) {
            tracing::warn!(
                kind = revocation.kind,
                "authd sent a revocation this client cannot match; emptying the cache"
            );
            // Stay correct whatever it names.
            inner.entries.clear();
            inner.order.clear();
        }
        inner.watch.last_heard = Some(Instant::now());
    }

    /// A new stream opened: until its first heartbeat it replays what this
    /// client may have missed, so nothing is answered before that. A cache
    /// turned off because authd refused the stream is on again.
    pub(crate) fn stream_opened(&self) {
        let mut inner = self.lock();
        inner.watch.synced = false;
        inner.watch.off = false;
    }

    /// A heartbeat arrived: every revocation so far is known.
    pub(crate) fn heartbeat(&self, interval: Duration) {
        let mut inner = self.lock();
        inner.watch.synced = true;
        inner.watch.last_heard = Some(Instant::now());
        inner.watch.silence = self.config.max_silence.max(interval.saturating_mul(3));
        inner.revoked.prune();
    }

    /// authd will not stream revocations to this caller: no cache. `true`
    /// when it was on.
    pub(crate) fn turn_off(&self) -> bool {
        let mut inner = self.lock();
        let was_on = !inner.watch.off;
        inner.watch.off = true;
        inner.entries.clear();
        inner.order.clear();
        was_on
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revoked::{
        sha256,
        tests::{revocation, verified},
    };

    const HEARTBEAT: Duration = Duration::from_secs(2);

    fn token(lifetime: Duration) -> VerifiedToken {
        let mut token = verified("auth0|alice", Some("sid-1"), 1_700_000_000);
        token.expires_at = SystemTime::now() + lifetime;
        token
    }

    fn cache(max_ttl: u64, max_entries: usize) -> VerifyCache {
        let cache = VerifyCache::new(
            CacheConfig::default()
                .max_ttl(Duration::from_secs(max_ttl))
                .max_entries(max_entries),
        );
        cache.heartbeat(HEARTBEAT);
        cache
    }

    #[test]
    fn key_depends_on_token_and_scope_set_not_order() {
        let a = VerifyCache::key("t", &["read", "write"]);
        assert_eq!(a, VerifyCache::key("t", &["write", "read"]));
        assert_ne!(a, VerifyCache::key("t", &["read"]));
        assert_ne!(a, VerifyCache::key("u", &["read", "write"]));
        // "t\0read" must not collide with the token "t\0read" and no scope.
        assert_ne!(
            VerifyCache::key("t", &["read"]),
            VerifyCache::key::<&str>("t\0read", &[])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn entry_lives_no_longer_than_max_ttl() {
        let cache = cache(30, 10);
        let key = VerifyCache::key::<&str>("t", &[]);
        cache.insert(key, "t", &token(Duration::from_secs(3600)));
        tokio::time::advance(Duration::from_secs(29)).await;
        cache.heartbeat(HEARTBEAT);
        assert!(cache.get(&key).is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(cache.get(&key).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn entry_lives_no_longer_than_the_token() {
        let cache = cache(300, 10);
        let key = VerifyCache::key::<&str>("t", &[]);
        cache.insert(key, "t", &token(Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(11)).await;
        cache.heartbeat(HEARTBEAT);
        assert!(cache.get(&key).is_none());
    }

    #[test]
    fn expired_token_is_not_cached() {
        let cache = cache(300, 10);
        let key = VerifyCache::key::<&str>("t", &[]);
        let mut expired = token(Duration::ZERO);
        expired.expires_at = SystemTime::now() - Duration::from_secs(5);
        cache.insert(key, "t", &expired);
        assert!(cache.get(&key).is_none());
    }

    #[test]
    fn oldest_entry_goes_when_full() {
        let cache = cache(300, 2);
        let keys: Vec<Key> = ["a", "b", "c"]
            .iter()
            .map(|t| VerifyCache::key::<&str>(t, &[]))
            .collect();
        for key in &keys {
            cache.insert(*key, "t", &token(Duration::from_secs(60)));
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&keys[0]).is_none());
        assert!(cache.get(&keys[1]).is_some() && cache.get(&keys[2]).is_some());
    }

    #[test]
    fn reinserted_key_is_not_evicted_by_its_stale_place() {
        let cache = cache(300, 3);
        let [a, b, c, d] = ["a", "b", "c", "d"].map(|t| VerifyCache::key::<&str>(t, &[]));
        let live = token(Duration::from_secs(60));
        cache.insert(a, "t", &live);
        cache.insert(b, "t", &live);
        // a again: its first place in the queue is now stale.
        cache.insert(a, "t", &live);
        cache.insert(c, "t", &live);
        cache.insert(d, "t", &live);
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&b).is_none(), "b was the oldest live entry");
        assert!([a, c, d].iter().all(|k| cache.get(k).is_some()));
    }

    #[test]
    fn nothing_is_answered_before_the_first_heartbeat() {
        let cache = VerifyCache::new(CacheConfig::default());
        let key = VerifyCache::key::<&str>("t", &[]);
        cache.insert(key, "t", &token(Duration::from_secs(60)));
        assert_eq!(cache.state(), CacheState::Syncing);
        assert!(cache.get(&key).is_none());
        cache.heartbeat(HEARTBEAT);
        assert_eq!(cache.state(), CacheState::Answering);
        assert!(cache.get(&key).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_stream_stops_answers_until_it_speaks_again() {
        let cache = cache(300, 10);
        let key = VerifyCache::key::<&str>("t", &[]);
        cache.insert(key, "t", &token(Duration::from_secs(3600)));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(
            cache.get(&key).is_some(),
            "silent for max_silence: still live"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(cache.state(), CacheState::Silent);
        assert!(cache.get(&key).is_none());
        cache.heartbeat(HEARTBEAT);
        assert!(cache.get(&key).is_some(), "the entry was kept");
    }

    #[tokio::test(start_paused = true)]
    async fn a_longer_announced_heartbeat_stretches_the_silence_allowed() {
        let cache = cache(300, 10);
        cache.heartbeat(Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(14)).await;
        assert_eq!(cache.state(), CacheState::Answering);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(cache.state(), CacheState::Silent);
    }

    #[test]
    fn a_revocation_received_refuses_the_entries_it_names() {
        let now = 1_700_000_100;
        let hex = |d: [u8; 32]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        for r in [
            revocation(pb::RevocationKind::SessionId, "sid-1", now),
            revocation(pb::RevocationKind::Subject, "auth0|alice", now),
            revocation(pb::RevocationKind::SignedDigest, &hex(sha256(b"h.p")), now),
            revocation(pb::RevocationKind::TokenHash, &hex(sha256(b"h.p.s")), now),
        ] {
            let cache = cache(300, 10);
            let (key, other) = (
                VerifyCache::key::<&str>("h.p.s", &[]),
                VerifyCache::key::<&str>("x", &[]),
            );
            cache.insert(key, "h.p.s", &token(Duration::from_secs(60)));
            let mut bob = verified("auth0|bob", Some("sid-2"), now);
            bob.expires_at = SystemTime::now() + Duration::from_secs(60);
            cache.insert(other, "x.y.z", &bob);
            assert!(cache.get(&key).is_some());
            cache.revoked(&r);
            assert!(cache.get(&key).is_none(), "{r:?}");
            assert!(
                cache.get(&other).is_some(),
                "{r:?} names alice's token only"
            );
            // An answer authd gave before it learned the revocation.
            cache.insert(key, "h.p.s", &token(Duration::from_secs(60)));
            assert!(cache.get(&key).is_none(), "{r:?}: not cached again");
        }
    }

    #[test]
    fn a_new_stream_must_catch_up_before_the_cache_answers_again() {
        let cache = cache(300, 10);
        let key = VerifyCache::key::<&str>("h.p.s", &[]);
        cache.insert(key, "h.p.s", &token(Duration::from_secs(60)));
        cache.stream_opened();
        // Its replay has begun; a later message may name the token.
        cache.revoked(&revocation(pb::RevocationKind::SessionId, "other", 0));
        assert_eq!(cache.state(), CacheState::Syncing);
        assert!(cache.get(&key).is_none());
        cache.heartbeat(HEARTBEAT);
        assert!(cache.get(&key).is_some());
    }

    #[test]
    fn a_revocation_that_cannot_be_matched_empties_the_cache() {
        let cache = cache(300, 10);
        let key = VerifyCache::key::<&str>("t", &[]);
        cache.insert(key, "t", &token(Duration::from_secs(60)));
        cache.revoked(&revocation(pb::RevocationKind::SignedDigest, "not-hex", 0));
        assert!(cache.get(&key).is_none());
    }

    #[test]
    fn turned_off_it_neither_keeps_nor_answers() {
        let cache = cache(300, 10);
        let key = VerifyCache::key::<&str>("t", &[]);
        cache.insert(key, "t", &token(Duration::from_secs(60)));
        cache.turn_off();
        cache.heartbeat(HEARTBEAT);
        assert_eq!(cache.state(), CacheState::Off);
        assert!(cache.get(&key).is_none());
        cache.insert(key, "t", &token(Duration::from_secs(60)));
        assert_eq!(cache.len(), 0);
        // authd lets it watch again: on once the new stream caught up.
        cache.stream_opened();
        assert_eq!(cache.state(), CacheState::Syncing);
        cache.heartbeat(HEARTBEAT);
        assert_eq!(cache.state(), CacheState::Answering);
    }
}
