//! The verified-result cache (DESIGN.md, pipeline step 6).
//!
//! Keyed by the SHA-256 of the whole token, so a forged token can never hit
//! the entry of a genuine one. An entry lives at most until the token's `exp`
//! and at most `max_ttl`; the cache is bounded in entries and in bytes. A
//! hit skips parsing and the signature check only: expiry, audience, required
//! scopes and revocation are still checked on every request.
//!
//! A token is cached on its second sight by default
//! (`verify.cache_admit_after = 2`): a token seen once costs the cache one
//! Bloom filter lookup ([`SeenOnce`]) instead of an entry, an allocation and
//! an eviction, so a stream of new tokens (each verified once, the common
//! case for short-lived callers) runs as fast as with the cache off, while a
//! token used again pays one more full verification before it hits.

use std::sync::{
    Arc,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

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

/// Bits of the [`SeenOnce`] filter: 4 Mi bits, 512 KiB.
const SEEN_BITS: usize = 1 << 22;

/// The keys of tokens seen recently, as a Bloom filter with two bits a key
/// (taken from the key itself: a SHA-256 is uniform). Cleared whenever a
/// sixteenth of its bits' worth of new keys went in, which keeps the share
/// of unseen tokens answered "seen" near 1.4 %, and its memory fixed.
struct SeenOnce {
    words: Box<[AtomicU64]>,
    added: AtomicUsize,
}

impl SeenOnce {
    fn new() -> Self {
        SeenOnce {
            words: (0..SEEN_BITS / 64).map(|_| AtomicU64::new(0)).collect(),
            added: AtomicUsize::new(0),
        }
    }

    /// Records `key`; whether it was there already.
    fn saw(&self, key: &Key) -> bool {
        let bit = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&key[at..at + 8]);
            (u64::from_le_bytes(word) % SEEN_BITS as u64) as usize
        };
        // Both bits are set whatever the first answers (no short circuit).
        let seen = self.set(bit(0)) & self.set(bit(8));
        if !seen && self.added.fetch_add(1, Ordering::Relaxed) + 1 == SEEN_BITS / 16 {
            for word in &*self.words {
                word.store(0, Ordering::Relaxed);
            }
            self.added.store(0, Ordering::Relaxed);
        }
        seen
    }

    /// Sets bit `at`; whether it was set.
    fn set(&self, at: usize) -> bool {
        let mask = 1u64 << (at % 64);
        self.words[at / 64].fetch_or(mask, Ordering::Relaxed) & mask != 0
    }
}

/// Bounded cache of verified tokens.
pub(crate) struct VerifiedCache {
    cache: Cache<Key, Arc<Entry>, ByBytes, DefaultHashBuilder, Evictions>,
    max_ttl: i64,
    /// Present when a token is cached on its second sight only.
    seen: Option<SeenOnce>,
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
    /// keeping entries at most `max_ttl` seconds; a token goes in on its
    /// first verification when `admit_after` is 1, else on its second.
    pub(crate) fn new(max_entries: usize, max_bytes: u64, max_ttl: i64, admit_after: u32) -> Self {
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
        VerifiedCache {
            cache,
            max_ttl,
            seen: (admit_after > 1).then(SeenOnce::new),
        }
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

    /// Remembers a token verified at `now` (on its second sight when the
    /// cache admits on the second).
    pub(crate) fn insert(&self, key: Key, token: &Arc<VerifiedToken>, token_len: usize, now: i64) {
        let until = token.expires_at.min(now.saturating_add(self.max_ttl));
        if until <= now {
            return;
        }
        if let Some(seen) = &self.seen
            && !seen.saw(&key)
        {
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
