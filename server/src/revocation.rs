//! Revocations as the hot path sees them: an in-memory set, swapped whole
//! (lock-free reads), filled from the store by a poller on every replica and
//! directly by the replica that revokes. VerifyToken never waits on the store;
//! a revocation made on another replica is seen within one poll interval.
//!
//! A revocation names only what the issuer signed: the `sid`, the subject
//! and `iat`, or the digest of the JWS signing input (`header.payload`). A
//! token's own bytes are not an identity: an ECDSA signature can be
//! re-encoded (s → n − s) into a second valid token with other bytes, which
//! must stay revoked.
//!
//! Every revocation this replica learns (made here or read from the store)
//! also goes out on a bounded broadcast feed, which `watch` turns into the
//! WatchRevocations streams of callers that cache answers.

mod watch;

pub use watch::{Cursor, WatchEvent, Watched, Watchers};

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
use aws_lc_rs::digest;
use imbl::{HashMap, OrdMap};
use tokio::{sync::broadcast, task::JoinHandle};

use crate::{
    error::Error,
    store::{IssuedToken, Revocation, RevocationKind, Store},
};

/// How far back a poll reads again past the newest revocation it has seen,
/// so that one written by a replica whose clock runs late (or whose write
/// became visible late) is not skipped: every poll covers this much.
const RECENT_MARGIN_MS: i64 = 5_000;

/// The clock skew between replicas that revocations survive: a poll every
/// [`FULL_REREAD_EVERY_MS`] reads this far back.
const CLOCK_SKEW_MS: i64 = 60_000;

/// How often a poll reads [`CLOCK_SKEW_MS`] back instead of
/// [`RECENT_MARGIN_MS`]: a revocation written by a replica whose clock is
/// 5–60 s late is seen within this (plus a poll), one from a replica within
/// 5 s within a poll. Reading 60 s back on every poll read each revocation
/// ~60 times; this way it is read ~8 times.
const FULL_REREAD_EVERY_MS: i64 = 30_000;

/// How many revocations the feed holds for watchers by default
/// (`watch.buffer`).
const DEFAULT_FEED_CAPACITY: usize = 4_096;

/// A SHA-256 digest.
type Digest = [u8; 32];

/// What a revocation can match in a token whose signature verified: the
/// signed claims and the signing input, never the signature's encoding.
#[derive(Debug, Clone, Copy)]
pub struct SignedIdentity<'a> {
    /// `iss`.
    pub issuer: &'a str,
    /// `sub`.
    pub subject: &'a str,
    /// `sid`.
    pub session_id: Option<&'a str>,
    /// `iat`, unix seconds.
    pub issued_at: Option<i64>,
    /// The compact token; only its signing input counts as an identity.
    pub token: &'a str,
}

/// The JWS signing input of a compact token (`header.payload`): what the
/// issuer's signature covers. A string with no `.` is its own input.
pub fn signing_input(token: &str) -> &str {
    token.rsplit_once('.').map_or(token, |(input, _)| input)
}

fn sha256(text: &str) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, text.as_bytes()).as_ref());
    out
}

/// The digest (SHA-256 of the signing input, hex) that a
/// [`RevocationKind::SignedDigest`] revocation names.
pub fn signed_digest(token: &str) -> String {
    hex(&sha256(signing_input(token)))
}

/// The record of `token`, handed out for a session and valid until
/// `expires_at`: named by what its issuer signed.
pub fn issued_token(token: &str, expires_at: i64) -> IssuedToken {
    IssuedToken {
        signed_digest: Some(signed_digest(token)),
        hash: None,
        expires_at,
    }
}

fn hex(digest: &Digest) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(text: &str) -> Option<Digest> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The set readers see. Persistent maps (hash array mapped tries, a B-tree
/// for the log): a writer's copy shares all but the path it changes, so one
/// more revocation costs O(log n) however many are held — a storm of
/// logouts, each applied alone, stays linear instead of copying the whole
/// set each time.
#[derive(Debug, Default, Clone)]
struct RevocationSet {
    /// issuer → sid → expires_at
    sessions: HashMap<String, HashMap<String, i64>>,
    /// issuer → subject → revoked at (unix seconds)
    subjects: HashMap<String, HashMap<String, i64>>,
    /// SHA-256 of a signing input → expires_at
    digests: HashMap<Digest, i64>,
    /// Written before revocations named signed content: the SHA-256 of a
    /// whole token → expires_at. Still honoured until they expire (they
    /// live no longer than the tokens they name).
    legacy_tokens: HashMap<Digest, i64>,
    /// The newest `at_ms` seen.
    newest_ms: i64,
    /// Every revocation in force by sort key (so in the order made), for
    /// watchers that start or resume.
    log: OrdMap<String, Arc<Revocation>>,
}

impl RevocationSet {
    fn is_empty(&self) -> bool {
        self.sessions.is_empty()
            && self.subjects.is_empty()
            && self.digests.is_empty()
            && self.legacy_tokens.is_empty()
    }

    /// Adds `r`, whose sort key is `key`; the shared copy when it was new.
    fn add(&mut self, key: String, r: &Revocation) -> Option<Arc<Revocation>> {
        if self.log.contains_key(&key) {
            return None;
        }
        let shared = Arc::new(r.clone());
        self.log.insert(key, Arc::clone(&shared));
        self.newest_ms = self.newest_ms.max(r.at_ms);
        match r.kind {
            RevocationKind::SessionId => {
                let sessions = self.sessions.entry(r.issuer.clone()).or_default();
                let entry = sessions.entry(r.value.clone()).or_insert(r.expires_at);
                *entry = (*entry).max(r.expires_at);
            }
            RevocationKind::Subject => {
                let at = r.at_ms.div_euclid(1000);
                let subjects = self.subjects.entry(r.issuer.clone()).or_default();
                let entry = subjects.entry(r.value.clone()).or_insert(at);
                *entry = (*entry).max(at);
            }
            RevocationKind::SignedDigest | RevocationKind::TokenHash => {
                let Some(digest) = parse_hex(&r.value) else {
                    tracing::warn!(kind = ?r.kind, "ignoring a revocation whose digest is not 64 hex digits");
                    return Some(shared);
                };
                let map = if r.kind == RevocationKind::SignedDigest {
                    &mut self.digests
                } else {
                    &mut self.legacy_tokens
                };
                let entry = map.entry(digest).or_insert(r.expires_at);
                *entry = (*entry).max(r.expires_at);
            }
        }
        Some(shared)
    }
}

/// The revocations every VerifyToken checks.
#[derive(Debug)]
pub struct Revocations {
    current: ArcSwap<RevocationSet>,
    /// Serialises writers (poller and local revocations); readers never wait.
    write: Mutex<()>,
    /// Unix milliseconds of the last poll that read the store; 0: none yet.
    last_poll_ms: std::sync::atomic::AtomicI64,
    /// Unix milliseconds of the last poll that read [`CLOCK_SKEW_MS`] back.
    last_full_poll_ms: std::sync::atomic::AtomicI64,
    /// Each revocation new to this replica, once, in the order learned. A
    /// ring of `feed_capacity`: a receiver further behind learns it lagged.
    feed: broadcast::Sender<Arc<Revocation>>,
    feed_capacity: usize,
}

impl Default for Revocations {
    fn default() -> Self {
        Revocations::unshared(DEFAULT_FEED_CAPACITY)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl Revocations {
    /// An empty set, whose feed holds the default 4,096 revocations.
    pub fn new() -> Arc<Self> {
        Arc::new(Revocations::default())
    }

    /// An empty set whose feed holds `feed_capacity` revocations (at least
    /// one) for watchers (`watch.buffer`).
    pub fn with_feed_capacity(feed_capacity: usize) -> Arc<Self> {
        Arc::new(Revocations::unshared(feed_capacity))
    }

    fn unshared(feed_capacity: usize) -> Self {
        let feed_capacity = feed_capacity.max(1);
        Revocations {
            current: ArcSwap::default(),
            write: Mutex::new(()),
            last_poll_ms: std::sync::atomic::AtomicI64::new(0),
            last_full_poll_ms: std::sync::atomic::AtomicI64::new(0),
            feed: broadcast::channel(feed_capacity).0,
            feed_capacity,
        }
    }

    /// Adds revocations (from this replica or the store), and sends each
    /// new one on the feed.
    pub fn apply(&self, revocations: &[Revocation]) {
        if revocations.is_empty() {
            return;
        }
        let _writer = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current.load();
        // A poll reads recent revocations again: copy the set only for
        // what it does not hold yet.
        let new: Vec<(String, &Revocation)> = revocations
            .iter()
            .map(|r| (r.sort_key(), r))
            .filter(|(key, _)| !current.log.contains_key(key))
            .collect();
        if new.is_empty() {
            return;
        }
        let mut next = RevocationSet::clone(&current);
        let added: Vec<Arc<Revocation>> = new
            .into_iter()
            .filter_map(|(key, r)| next.add(key, r))
            .collect();
        self.current.store(Arc::new(next));
        // Sent after the set is stored and under the writer lock: a watcher
        // that subscribed before reading the set gets each one at least
        // once, from the set or from the feed.
        for r in added {
            // No receiver: nobody watches; nothing to do.
            let _ = self.feed.send(r);
        }
    }

    /// A receiver of every revocation learned from now on.
    fn subscribe(&self) -> broadcast::Receiver<Arc<Revocation>> {
        self.feed.subscribe()
    }

    /// The revocations in force made after `after_ms` (all: `None`), in
    /// the order they were made, unexpired as of `now` (unix seconds).
    fn in_force_after(&self, after_ms: Option<i64>, now: i64) -> Vec<Arc<Revocation>> {
        let set = self.current.load();
        let from = after_ms.map_or_else(String::new, |ms| format!("{:016}", ms.max(-1) + 1));
        set.log
            .range(from..)
            .map(|(_, r)| r)
            .filter(|r| r.expires_at > now && after_ms.is_none_or(|ms| r.at_ms > ms))
            .cloned()
            .collect()
    }

    /// Refuses the token `id` describes when a revocation names its session,
    /// its subject (issued at or before the revocation) or its signing input.
    pub fn check(&self, id: &SignedIdentity<'_>) -> Result<(), Error> {
        self.refuse(id, false)
    }

    /// [`Self::check`] for a session that began at `id.issued_at` (an authd
    /// session, or the id token that starts one). Times are whole seconds:
    /// one begun in a subject revocation's own second counts as begun after
    /// it, so that a user may log in again at once.
    pub fn check_begun(&self, id: &SignedIdentity<'_>) -> Result<(), Error> {
        self.refuse(id, true)
    }

    fn refuse(&self, id: &SignedIdentity<'_>, same_second_is_after: bool) -> Result<(), Error> {
        let set = self.current.load();
        if set.is_empty() {
            return Ok(());
        }
        let revoked = || Error::SessionRevoked;
        if let Some(sid) = id.session_id
            && set
                .sessions
                .get(id.issuer)
                .is_some_and(|m| m.contains_key(sid))
        {
            return Err(revoked());
        }
        if let Some(at) = set.subjects.get(id.issuer).and_then(|m| m.get(id.subject)) {
            // Tokens issued at or before the revocation second are refused;
            // a token without iat cannot prove it is newer.
            let before = |iat: i64| iat < *at || (iat == *at && !same_second_is_after);
            if id.issued_at.is_none_or(before) {
                return Err(revoked());
            }
        }
        if !set.digests.is_empty() && set.digests.contains_key(&sha256(signing_input(id.token))) {
            return Err(revoked());
        }
        if !set.legacy_tokens.is_empty() && set.legacy_tokens.contains_key(&sha256(id.token)) {
            return Err(revoked());
        }
        Ok(())
    }

    /// Whether a revocation of `issuer`'s session `sid` is held.
    pub fn holds_session(&self, issuer: &str, sid: &str) -> bool {
        self.current
            .load()
            .sessions
            .get(issuer)
            .is_some_and(|m| m.contains_key(sid))
    }

    /// The second up to which `issuer`'s tokens of `subject` are revoked.
    pub fn subject_revoked_until(&self, issuer: &str, subject: &str) -> Option<i64> {
        self.current
            .load()
            .subjects
            .get(issuer)
            .and_then(|m| m.get(subject).copied())
    }

    /// Reads revocations made since the last poll (with a margin for clock
    /// skew between replicas) and drops expired ones.
    pub async fn poll(&self, store: &dyn Store) -> Result<usize, crate::store::StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let polled_at = now_ms();
        let now = polled_at.div_euclid(1000);
        // A replica whose clock runs fast must not move the cursor past
        // what this replica's clock says.
        let cursor = self.current.load().newest_ms.min(polled_at);
        let full = polled_at - self.last_full_poll_ms.load(Relaxed) >= FULL_REREAD_EVERY_MS;
        let margin = if full {
            CLOCK_SKEW_MS
        } else {
            RECENT_MARGIN_MS
        };
        let since = cursor.saturating_sub(margin);
        let found = match store.revocations_since(since, now).await {
            Ok(found) => found,
            Err(error) => {
                metrics::counter!("authd_revocation_polls_total", "outcome" => "error")
                    .increment(1);
                return Err(error);
            }
        };
        metrics::counter!("authd_revocation_polls_total", "outcome" => "ok").increment(1);
        self.apply(&found);
        self.prune(now);
        self.last_poll_ms.store(polled_at, Relaxed);
        if full {
            self.last_full_poll_ms.store(polled_at, Relaxed);
        }
        Ok(found.len())
    }

    /// How many revocations are held, and when (unix milliseconds) the last
    /// successful poll started (`None`: none yet).
    pub fn status(&self) -> (usize, Option<i64>) {
        let set = self.current.load();
        let held = set.sessions.values().map(HashMap::len).sum::<usize>()
            + set.subjects.values().map(HashMap::len).sum::<usize>()
            + set.digests.len()
            + set.legacy_tokens.len();
        let last = self.last_poll_ms.load(std::sync::atomic::Ordering::Relaxed);
        (held, (last > 0).then_some(last))
    }

    fn prune(&self, now: i64) {
        let set = self.current.load();
        let expired = set.sessions.values().any(|m| m.values().any(|e| *e <= now))
            || set.digests.values().any(|e| *e <= now)
            || set.legacy_tokens.values().any(|e| *e <= now)
            || set.log.values().any(|r| r.expires_at <= now);
        if !expired {
            return;
        }
        let _writer = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = RevocationSet::clone(&self.current.load());
        for (_, m) in next.sessions.iter_mut() {
            m.retain(|_, e| *e > now);
        }
        next.digests.retain(|_, e| *e > now);
        next.legacy_tokens.retain(|_, e| *e > now);
        let gone: Vec<String> = next
            .log
            .iter()
            .filter(|(_, r)| r.expires_at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            next.log.remove(&key);
        }
        self.current.store(Arc::new(next));
    }

    /// Polls `store` every `every` until aborted.
    pub fn spawn_poller(
        self: &Arc<Self>,
        store: Arc<dyn Store>,
        every: Duration,
    ) -> JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if let Err(error) = this.poll(store.as_ref()).await {
                    tracing::warn!(%error, "cannot read revocations; retrying");
                }
                tokio::time::sleep(every).await;
            }
        })
    }
}

/// A revocation made now.
pub fn revocation(kind: RevocationKind, issuer: &str, value: &str, expires_at: i64) -> Revocation {
    Revocation {
        kind,
        issuer: issuer.to_owned(),
        value: value.to_owned(),
        at_ms: now_ms(),
        expires_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::hash_handle;

    fn id<'a>(sid: Option<&'a str>, sub: &'a str, iat: i64, token: &'a str) -> SignedIdentity<'a> {
        SignedIdentity {
            issuer: "https://i/",
            subject: sub,
            session_id: sid,
            issued_at: Some(iat),
            token,
        }
    }

    #[test]
    fn sid_subject_and_digest_revocations_refuse() {
        let set = Revocations::new();
        let t = now_ms() / 1000;
        assert!(set.check(&id(Some("s1"), "u", t, "h.p.sig")).is_ok());
        set.apply(&[
            revocation(RevocationKind::SessionId, "https://i/", "s1", t + 60),
            revocation(
                RevocationKind::SignedDigest,
                "https://i/",
                &signed_digest("h2.p2.sig"),
                t + 60,
            ),
            Revocation {
                at_ms: t * 1000,
                ..revocation(RevocationKind::Subject, "https://i/", "alice", t + 60)
            },
        ]);
        assert_eq!(
            set.check(&id(Some("s1"), "u", t, "h.p.sig")),
            Err(Error::SessionRevoked)
        );
        assert!(set.check(&id(Some("s2"), "u", t, "h.p.sig")).is_ok());
        assert_eq!(
            set.check(&id(None, "u", t, "h2.p2.sig")),
            Err(Error::SessionRevoked)
        );
        assert_eq!(
            set.check(&id(None, "alice", t - 5, "a")),
            Err(Error::SessionRevoked)
        );
        assert_eq!(
            set.check(&id(None, "alice", t, "a")),
            Err(Error::SessionRevoked)
        );
        assert!(
            set.check(&id(None, "alice", t + 1, "a")).is_ok(),
            "issued after"
        );
    }

    #[test]
    fn a_digest_revocation_refuses_every_encoding_of_the_signature() {
        let set = Revocations::new();
        let t = now_ms() / 1000;
        set.apply(&[revocation(
            RevocationKind::SignedDigest,
            "https://i/",
            &signed_digest("hdr.claims.c2lnLTE"),
            t + 60,
        )]);
        for twin in [
            "hdr.claims.c2lnLTE",
            "hdr.claims.other-signature",
            "hdr.claims.",
        ] {
            assert_eq!(
                set.check(&id(None, "u", t, twin)),
                Err(Error::SessionRevoked),
                "{twin}"
            );
        }
        assert!(set.check(&id(None, "u", t, "hdr.claimz.c2lnLTE")).is_ok());
    }

    #[test]
    fn legacy_whole_token_revocations_still_refuse_until_they_expire() {
        let set = Revocations::new();
        let t = now_ms() / 1000;
        set.apply(&[revocation(
            RevocationKind::TokenHash,
            "https://i/",
            &hash_handle("old.token.sig"),
            t + 10,
        )]);
        assert_eq!(
            set.check(&id(None, "u", t, "old.token.sig")),
            Err(Error::SessionRevoked)
        );
        set.prune(t + 11);
        assert!(set.check(&id(None, "u", t, "old.token.sig")).is_ok());
    }

    #[test]
    fn a_digest_that_is_not_hex_is_ignored() {
        let set = Revocations::new();
        let t = now_ms() / 1000;
        set.apply(&[revocation(
            RevocationKind::SignedDigest,
            "https://i/",
            "not-a-digest",
            t + 60,
        )]);
        assert!(set.check(&id(None, "u", t, "a.b.c")).is_ok());
        assert_eq!(parse_hex(&signed_digest("a.b.c")), Some(sha256("a.b")));
    }

    /// What a poll sees of revocations written by replicas whose clocks
    /// are off, read back from a real (embedded) store.
    #[tokio::test]
    async fn polls_read_recent_writes_every_time_and_late_clocks_at_the_full_reread() {
        use std::sync::atomic::Ordering::Relaxed;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::embedded::EmbeddedStore::open(dir.path()).expect("store");
        let set = Revocations::new();
        let now = now_ms();
        let expires = now / 1000 + 600;
        let written = |sid: &str, at_ms: i64| Revocation {
            at_ms,
            ..revocation(RevocationKind::SessionId, "https://i/", sid, expires)
        };
        let revoked = |set: &Revocations, sid: &str| {
            set.check(&id(Some(sid), "u", now / 1000, "a.b.c")).is_err()
        };
        // Another replica writes `sid` stamped `at_ms`; this one polls.
        let write_then_poll = async |sid: &str, at_ms: i64| {
            store
                .put_revocation(&written(sid, at_ms))
                .await
                .expect("put");
            set.poll(&store).await.expect("poll");
        };
        write_then_poll("on-time", now).await;
        assert!(revoked(&set, "on-time"));

        // A replica 3 s late: within the margin every poll reads again.
        write_then_poll("3s-late", now - 3_000).await;
        assert!(revoked(&set, "3s-late"));

        // A replica whose clock runs 2 minutes fast does not move the
        // cursor past this replica's clock: a write made now still counts.
        write_then_poll("fast", now + 120_000).await;
        assert!(revoked(&set, "fast"));
        write_then_poll("after-fast", now - 1_000).await;
        assert!(revoked(&set, "after-fast"));

        // A replica 30 s late is below the recent margin: the next poll that
        // reads the whole skew window finds it.
        write_then_poll("30s-late", now - 30_000).await;
        assert!(!revoked(&set, "30s-late"), "read at the full re-read only");
        set.last_full_poll_ms
            .store(now_ms() - FULL_REREAD_EVERY_MS, Relaxed);
        set.poll(&store).await.expect("full poll");
        assert!(revoked(&set, "30s-late"));
    }

    #[test]
    fn applying_what_is_held_already_changes_nothing() {
        let set = Revocations::new();
        let t = now_ms() / 1000;
        let r = revocation(RevocationKind::SessionId, "https://i/", "s1", t + 60);
        set.apply(std::slice::from_ref(&r));
        let before = set.current.load_full();
        let mut feed = set.subscribe();
        set.apply(&[r]);
        assert!(Arc::ptr_eq(&before, &set.current.load_full()), "not copied");
        assert!(feed.try_recv().is_err(), "not sent again");
    }

    #[test]
    fn expired_revocations_are_pruned() {
        let set = Revocations::new();
        let t = now_ms() / 1000;
        set.apply(&[revocation(
            RevocationKind::SessionId,
            "https://i/",
            "s1",
            t + 10,
        )]);
        set.prune(t + 11);
        assert!(set.check(&id(Some("s1"), "u", t, "jwt")).is_ok());
    }
}
