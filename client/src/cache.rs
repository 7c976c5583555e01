//! An optional, bounded cache of positive verifications.
//!
//! **The trade-off:** a cached answer is not asked again, so a token revoked
//! at authd (its session revoked, its user signed out everywhere) keeps
//! passing from this cache until its entry expires — at most
//! [`CacheConfig::max_ttl`], never past the token's own `exp`. Refusals are
//! never cached. Keep `max_ttl` short (seconds) where revocation must bite at
//! once, or leave the cache off (the default).

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, SystemTime},
};

use aws_lc_rs::digest;
use tokio::time::Instant;

use crate::VerifiedToken;

/// How the verification cache behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// The longest an answer is reused. Defaults to 30 seconds.
    pub max_ttl: Duration,
    /// The most answers kept; the oldest goes first. Defaults to 10,000.
    pub max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_ttl: Duration::from_secs(30),
            max_entries: 10_000,
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
}

/// SHA-256 of the token and the required scopes: the cache never holds a
/// token, and a collision cannot be provoked.
type Key = [u8; 32];

#[derive(Debug)]
struct Entry {
    token: VerifiedToken,
    until: Instant,
    /// Insertion number, so that a stale place in `order` is recognised.
    seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// Keys in insertion order, for eviction when full.
    order: VecDeque<(Key, u64)>,
    next_seq: u64,
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
            inner: Mutex::new(Inner::default()),
        }
    }

    pub(crate) fn key(token: &str, scopes: &[&str]) -> Key {
        let mut sorted = scopes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut ctx = digest::Context::new(&digest::SHA256);
        // Each part is length-prefixed, so parts cannot run into each other.
        for part in std::iter::once(token).chain(sorted) {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        let mut key = [0; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    pub(crate) fn get(&self, key: &Key) -> Option<VerifiedToken> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let entry = inner.entries.get(key)?;
        if entry.until > Instant::now() {
            return Some(entry.token.clone());
        }
        inner.entries.remove(key);
        None
    }

    pub(crate) fn insert(&self, key: Key, token: &VerifiedToken) {
        let remaining = token
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let ttl = remaining.min(self.config.max_ttl);
        if ttl.is_zero() || self.config.max_entries == 0 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *inner;
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
                token: token.clone(),
                until: Instant::now() + ttl,
                seq,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map(|i| i.entries.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authd_proto::pb;

    fn token(lifetime: Duration) -> VerifiedToken {
        let mut token = VerifiedToken::from(pb::VerifyTokenResponse::default());
        token.subject = "auth0|alice".to_owned();
        token.expires_at = SystemTime::now() + lifetime;
        token
    }

    fn cache(max_ttl: u64, max_entries: usize) -> VerifyCache {
        VerifyCache::new(
            CacheConfig::default()
                .max_ttl(Duration::from_secs(max_ttl))
                .max_entries(max_entries),
        )
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
            VerifyCache::key("t\0read", &[])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn entry_lives_no_longer_than_max_ttl() {
        let cache = cache(30, 10);
        let key = VerifyCache::key("t", &[]);
        cache.insert(key, &token(Duration::from_secs(3600)));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(cache.get(&key).is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(cache.get(&key).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn entry_lives_no_longer_than_the_token() {
        let cache = cache(300, 10);
        let key = VerifyCache::key("t", &[]);
        cache.insert(key, &token(Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(cache.get(&key).is_none());
    }

    #[test]
    fn expired_token_is_not_cached() {
        let cache = cache(300, 10);
        let key = VerifyCache::key("t", &[]);
        let mut expired = token(Duration::ZERO);
        expired.expires_at = SystemTime::now() - Duration::from_secs(5);
        cache.insert(key, &expired);
        assert!(cache.get(&key).is_none());
    }

    #[test]
    fn oldest_entry_goes_when_full() {
        let cache = cache(300, 2);
        let keys: Vec<Key> = ["a", "b", "c"]
            .iter()
            .map(|t| VerifyCache::key(t, &[]))
            .collect();
        for key in &keys {
            cache.insert(*key, &token(Duration::from_secs(60)));
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&keys[0]).is_none());
        assert!(cache.get(&keys[1]).is_some() && cache.get(&keys[2]).is_some());
    }

    #[test]
    fn reinserted_key_is_not_evicted_by_its_stale_place() {
        let cache = cache(300, 3);
        let [a, b, c, d] = ["a", "b", "c", "d"].map(|t| VerifyCache::key(t, &[]));
        let live = token(Duration::from_secs(60));
        cache.insert(a, &live);
        cache.insert(b, &live);
        // a again: its first place in the queue is now stale.
        cache.insert(a, &live);
        cache.insert(c, &live);
        cache.insert(d, &live);
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&b).is_none(), "b was the oldest live entry");
        assert!([a, c, d].iter().all(|k| cache.get(k).is_some()));
    }
}
