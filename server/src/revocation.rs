//! Revocations as the hot path sees them: an in-memory set, swapped whole
//! (lock-free reads), filled from the store by a poller on every replica and
//! directly by the replica that revokes. VerifyToken never waits on the store;
//! a revocation made on another replica is seen within one poll interval.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;

use crate::{
    error::Error,
    secrets::hash_handle,
    store::{Revocation, RevocationKind, Store},
    verify::VerifiedToken,
};

/// How far back each poll reads again, so that a revocation written with a
/// slightly late clock on another replica is not skipped.
const CLOCK_SKEW_MS: i64 = 60_000;

#[derive(Debug, Default, Clone)]
struct RevocationSet {
    /// issuer → sid → expires_at
    sessions: HashMap<String, HashMap<String, i64>>,
    /// issuer → subject → revoked at (unix seconds)
    subjects: HashMap<String, HashMap<String, i64>>,
    /// token hash → expires_at
    tokens: HashMap<String, i64>,
    /// The newest `at_ms` seen.
    newest_ms: i64,
    seen: HashSet<String>,
}

impl RevocationSet {
    fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.subjects.is_empty() && self.tokens.is_empty()
    }

    fn add(&mut self, r: &Revocation) {
        if !self.seen.insert(r.sort_key()) {
            return;
        }
        self.newest_ms = self.newest_ms.max(r.at_ms);
        match r.kind {
            RevocationKind::SessionId => {
                self.sessions
                    .entry(r.issuer.clone())
                    .or_default()
                    .insert(r.value.clone(), r.expires_at);
            }
            RevocationKind::Subject => {
                let at = r.at_ms.div_euclid(1000);
                let entry = self
                    .subjects
                    .entry(r.issuer.clone())
                    .or_default()
                    .entry(r.value.clone())
                    .or_insert(at);
                *entry = (*entry).max(at);
            }
            RevocationKind::TokenHash => {
                self.tokens.insert(r.value.clone(), r.expires_at);
            }
        }
    }
}

/// The revocations every VerifyToken checks.
#[derive(Debug, Default)]
pub struct Revocations {
    current: ArcSwap<RevocationSet>,
    /// Serialises writers (poller and local revocations); readers never wait.
    write: Mutex<()>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl Revocations {
    /// An empty set.
    pub fn new() -> Arc<Self> {
        Arc::new(Revocations::default())
    }

    /// Adds revocations (from this replica or the store).
    pub fn apply(&self, revocations: &[Revocation]) {
        if revocations.is_empty() {
            return;
        }
        let _writer = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = RevocationSet::clone(&self.current.load());
        for r in revocations {
            next.add(r);
        }
        self.current.store(Arc::new(next));
    }

    /// Refuses `token` (the raw JWT, verified as `verified`) when revoked.
    pub fn check(&self, verified: &VerifiedToken, token: &str) -> Result<(), Error> {
        let set = self.current.load();
        if set.is_empty() {
            return Ok(());
        }
        let revoked = || Error::SessionRevoked;
        if let Some(sid) = &verified.session_id
            && set
                .sessions
                .get(&verified.issuer)
                .is_some_and(|m| m.contains_key(sid))
        {
            return Err(revoked());
        }
        if let Some(at) = set
            .subjects
            .get(&verified.issuer)
            .and_then(|m| m.get(&verified.subject))
        {
            // Tokens issued at or before the revocation second are refused;
            // a token without iat cannot prove it is newer.
            if verified.issued_at.is_none_or(|iat| iat <= *at) {
                return Err(revoked());
            }
        }
        if !set.tokens.is_empty() && set.tokens.contains_key(&hash_handle(token)) {
            return Err(revoked());
        }
        Ok(())
    }

    /// Reads revocations made since the last poll (with a margin for clock
    /// skew between replicas) and drops expired ones.
    pub async fn poll(&self, store: &dyn Store) -> Result<usize, crate::store::StoreError> {
        let since = self.current.load().newest_ms.saturating_sub(CLOCK_SKEW_MS);
        let now = now_ms().div_euclid(1000);
        let found = store.revocations_since(since, now).await?;
        self.apply(&found);
        self.prune(now);
        Ok(found.len())
    }

    fn prune(&self, now: i64) {
        let set = self.current.load();
        let expired = set.sessions.values().any(|m| m.values().any(|e| *e <= now))
            || set.tokens.values().any(|e| *e <= now);
        if !expired {
            return;
        }
        let _writer = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = RevocationSet::clone(&self.current.load());
        for m in next.sessions.values_mut() {
            m.retain(|_, e| *e > now);
        }
        next.tokens.retain(|_, e| *e > now);
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

    fn token(sid: Option<&str>, sub: &str, iat: i64) -> VerifiedToken {
        VerifiedToken {
            subject: sub.to_owned(),
            issuer: "https://i/".to_owned(),
            audiences: vec![],
            scopes: vec![],
            permissions: vec![],
            session_id: sid.map(str::to_owned),
            token_id: None,
            issued_at: Some(iat),
            expires_at: iat + 3600,
            authorized_party: None,
            claims: Default::default(),
        }
    }

    #[test]
    fn sid_subject_and_token_revocations_refuse() {
        let set = Revocations::new();
        let t = now_ms() / 1000;
        assert!(set.check(&token(Some("s1"), "u", t), "jwt").is_ok());
        set.apply(&[
            revocation(RevocationKind::SessionId, "https://i/", "s1", t + 60),
            revocation(
                RevocationKind::TokenHash,
                "https://i/",
                &hash_handle("jwt-2"),
                t + 60,
            ),
            Revocation {
                at_ms: t * 1000,
                ..revocation(RevocationKind::Subject, "https://i/", "alice", t + 60)
            },
        ]);
        assert_eq!(
            set.check(&token(Some("s1"), "u", t), "jwt"),
            Err(Error::SessionRevoked)
        );
        assert!(set.check(&token(Some("s2"), "u", t), "jwt").is_ok());
        assert_eq!(
            set.check(&token(None, "u", t), "jwt-2"),
            Err(Error::SessionRevoked)
        );
        assert_eq!(
            set.check(&token(None, "alice", t - 5), "a"),
            Err(Error::SessionRevoked)
        );
        assert_eq!(
            set.check(&token(None, "alice", t), "a"),
            Err(Error::SessionRevoked)
        );
        assert!(
            set.check(&token(None, "alice", t + 1), "a").is_ok(),
            "issued after"
        );
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
        assert!(set.check(&token(Some("s1"), "u", t), "jwt").is_ok());
    }
}
