//! The verified-result cache (DESIGN.md, pipeline step 6).
//!
//! Keyed by the SHA-256 of the whole token, so a forged token can never hit
//! the entry of a genuine one. An entry lives at most until the token's `exp`
//! and at most `max_ttl`; the cache is bounded in entries and in bytes. A
//! hit skips parsing and the signature check only: expiry, audience, required
//! scopes and revocation are still checked on every request.

use std::sync::Arc;

use aws_lc_rs::digest;
use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter, sync::Cache};

use super::VerifiedToken;

/// A cache key: the SHA-256 of the token.
pub(crate) type Key = [u8; 32];

/// A cached verification.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) token: Arc<VerifiedToken>,
    /// Unix seconds after which the entry is a miss.
    pub(crate) until: i64,
    bytes: u64,
}

/// Weighs entries by their size, but never below `floor`, so that the byte
/// bound also bounds the number of entries.
#[derive(Debug, Clone)]
struct ByBytes {
    floor: u64,
}

impl Weighter<Key, Arc<Entry>> for ByBytes {
    fn weight(&self, _: &Key, entry: &Arc<Entry>) -> u64 {
        entry.bytes.max(self.floor)
    }
}

/// Counts entries pushed out by the bounds (`authd_verify_cache_evictions_total`).
#[derive(Debug, Clone)]
struct Evictions(metrics::Counter);

impl Lifecycle<Key, Arc<Entry>> for Evictions {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), _: Key, _: Arc<Entry>) {
        self.0.increment(1);
    }
}

/// The most entries reserved when the cache is made.
const RESERVE_AT_MOST: usize = 1 << 20;

/// Bounded cache of verified tokens.
pub(crate) struct VerifiedCache {
    cache: Cache<Key, Arc<Entry>, ByBytes, DefaultHashBuilder, Evictions>,
    max_ttl: i64,
}

impl std::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedCache")
            .field("entries", &self.cache.len())
            .field("bytes", &self.cache.weight())
            .finish()
    }
}

/// The SHA-256 of `token`.
pub(crate) fn key(token: &str) -> Key {
    let mut key = [0u8; 32];
    key.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    key
}

/// What an entry costs, roughly: the claims as JSON text plus fixed overhead.
fn estimate(token: &VerifiedToken, token_len: usize) -> u64 {
    let strings: usize = [&token.subject, &token.issuer]
        .into_iter()
        .chain(&token.audiences)
        .chain(&token.scopes)
        .chain(&token.permissions)
        .map(|s| s.len() + 24)
        .sum();
    // Extra claims take about three times their JSON length in a map.
    let claims = token
        .claims
        .iter()
        .map(|(k, v)| k.len() + 3 * v.to_string().len() + 64)
        .sum::<usize>();
    (256 + token_len / 2 + strings + claims) as u64
}

impl VerifiedCache {
    /// A cache of at most `max_entries` entries and about `max_bytes` bytes,
    /// keeping entries at most `max_ttl` seconds.
    pub(crate) fn new(max_entries: usize, max_bytes: u64, max_ttl: i64) -> Self {
        let cache = Cache::with(
            max_entries,
            max_bytes,
            ByBytes {
                floor: max_bytes / max_entries.max(1) as u64,
            },
            DefaultHashBuilder::default(),
            Evictions(metrics::counter!("authd_verify_cache_evictions_total")),
        );
        // Room for the whole cache up front: a table that grows while it
        // fills rehashes a shard in one go, stalling every call queued on
        // that worker. Untouched reserved memory is not resident, so idle
        // RSS barely moves; past RESERVE_AT_MOST the tables grow as needed.
        cache.reserve(max_entries.min(RESERVE_AT_MOST));
        VerifiedCache { cache, max_ttl }
    }

    /// The live entry for `key` as of `now`.
    pub(crate) fn get(&self, key: &Key, now: i64) -> Option<Arc<Entry>> {
        let entry = self.cache.get(key)?;
        if now > entry.until {
            self.cache.remove(key);
            return None;
        }
        Some(entry)
    }

    /// Remembers a token verified at `now`.
    pub(crate) fn insert(&self, key: Key, token: &Arc<VerifiedToken>, token_len: usize, now: i64) {
        let until = token.expires_at.min(now.saturating_add(self.max_ttl));
        if until <= now {
            return;
        }
        let bytes = estimate(token, token_len);
        self.cache.insert(
            key,
            Arc::new(Entry {
                token: Arc::clone(token),
                until,
                bytes,
            }),
        );
    }

    /// How many entries it holds.
    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }
}
