//! Accepting a DPoP proof once (RFC 9449 §11.1): a bounded memory of the
//! `jti`s seen, per key thumbprint, each kept until its proof's `iat` window
//! ends.
//!
//! - Keyed on the proof's key and `jti`, never on the proof's bytes: an ECDSA
//!   signature can be re-encoded into a second valid proof with the same
//!   claims, and that twin must count as a replay. Including the key keeps a
//!   client that learns another's `jti` from spending it.
//! - Bounded in entries, and each key thumbprint holds at most its share, so
//!   one client minting proofs cannot crowd the others out.
//! - When full it refuses instead of forgetting early: a `jti` forgotten
//!   inside its window is a replay window.
//!
//! An entry costs about 60 bytes of heap: 16 in the set (a 128-bit digest of
//! key and `jti`), 20 in its expiry bucket, plus the tables' and vectors'
//! slack (`replay-memory` in bench/ measures it: 20,000 proofs a second over
//! a 65 s window hold 1.3 M entries in 79 MB).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Mutex,
};

use aws_lc_rs::digest;

/// Shards, each behind its own lock.
const SHARDS: usize = 16;

/// The cache's answer for one proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// First time seen: remembered until its window ends.
    Fresh,
    /// Seen before within its window.
    Replayed,
    /// This key thumbprint holds its whole share: refused, nothing forgotten.
    KeyShareFull,
    /// The cache holds its bound: refused, nothing forgotten.
    Full,
}

/// The bounded replay memory. Safe to share between threads.
#[derive(Debug)]
pub struct ReplayCache {
    shards: Box<[Mutex<Shard>]>,
    max_per_shard: usize,
    max_per_key_per_shard: u32,
}

#[derive(Debug, Default)]
struct Shard {
    seen: HashSet<[u8; 16]>,
    /// Expiry second → the entries that end then, with their key's tag.
    expiring: BTreeMap<i64, Vec<([u8; 16], u32)>>,
    /// Entries held per key tag.
    per_key: HashMap<u32, u32>,
}

impl Shard {
    /// Forgets every entry whose window ended at or before `now`.
    fn purge(&mut self, now: i64) {
        while let Some(entry) = self.expiring.first_entry() {
            if *entry.key() > now {
                break;
            }
            for (id, tag) in entry.remove() {
                self.seen.remove(&id);
                if let Some(count) = self.per_key.get_mut(&tag) {
                    *count -= 1;
                    if *count == 0 {
                        self.per_key.remove(&tag);
                    }
                }
            }
        }
    }
}

impl ReplayCache {
    /// A cache of at most `max_entries` proofs, of which one key thumbprint
    /// may hold at most `max_per_key`.
    pub fn new(max_entries: usize, max_per_key: usize) -> ReplayCache {
        let max_per_shard = max_entries.div_ceil(SHARDS).max(1);
        let max_per_key_per_shard =
            u32::try_from(max_per_key.div_ceil(SHARDS).max(1)).unwrap_or(u32::MAX);
        ReplayCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            max_per_shard,
            max_per_key_per_shard,
        }
    }

    /// Admits the proof `jti` by the key `thumbprint`, accepted until the
    /// unix second `accepted_until`, as of `now`.
    pub fn admit(&self, thumbprint: &str, jti: &str, accepted_until: i64, now: i64) -> Admission {
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(thumbprint.as_bytes());
        context.update(&[0]);
        context.update(jti.as_bytes());
        let digest = context.finish();
        let bytes = digest.as_ref();
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[..16]);
        let tag = key_tag(thumbprint);
        let shard = usize::from(bytes[16]) % SHARDS;
        let mut shard = match self.shards[shard].lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        shard.purge(now);
        if shard.seen.contains(&id) {
            return Admission::Replayed;
        }
        if accepted_until <= now {
            // Outside its window: nothing to remember (the proof check
            // refuses it anyway).
            return Admission::Fresh;
        }
        if shard.seen.len() >= self.max_per_shard {
            return Admission::Full;
        }
        let held = shard.per_key.get(&tag).copied().unwrap_or(0);
        if held >= self.max_per_key_per_shard {
            return Admission::KeyShareFull;
        }
        shard.seen.insert(id);
        shard.per_key.insert(tag, held + 1);
        shard
            .expiring
            .entry(accepted_until)
            .or_default()
            .push((id, tag));
        Admission::Fresh
    }

    /// The proofs remembered now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| match shard.lock() {
                Ok(guard) => guard.seen.len(),
                Err(poisoned) => poisoned.into_inner().seen.len(),
            })
            .sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A 32-bit tag of a key thumbprint for its share count; two keys sharing a
/// tag only share a share.
fn key_tag(thumbprint: &str) -> u32 {
    let digest = digest::digest(&digest::SHA256, thumbprint.as_bytes());
    let b = digest.as_ref();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_is_accepted_once_within_its_window() {
        let cache = ReplayCache::new(1000, 1000);
        assert_eq!(cache.admit("k", "j1", 160, 100), Admission::Fresh);
        assert_eq!(cache.admit("k", "j1", 160, 120), Admission::Replayed);
        assert_eq!(
            cache.admit("k", "j1", 160, 160),
            Admission::Fresh,
            "window ended"
        );
        // Another key's proof with the same jti is its own proof.
        assert_eq!(cache.admit("other", "j1", 220, 161), Admission::Fresh);
        assert_eq!(cache.admit("other", "j1", 220, 162), Admission::Replayed);
    }

    #[test]
    fn entries_end_with_their_window() {
        let cache = ReplayCache::new(1000, 1000);
        for i in 0..100 {
            cache.admit("k", &format!("j{i}"), 100 + i, 0);
        }
        assert_eq!(cache.len(), 100);
        // Purging happens per shard, on admission.
        for i in 0..200 {
            cache.admit("k2", &format!("x{i}"), 1000, 150);
        }
        assert_eq!(cache.len(), 200 + 49);
    }

    #[test]
    fn when_full_it_refuses_rather_than_forgets() {
        let cache = ReplayCache::new(SHARDS * 4, SHARDS * 4);
        let mut full = 0;
        for i in 0..SHARDS * 8 {
            match cache.admit(&format!("k{i}"), "j", 100, 0) {
                Admission::Fresh => {}
                Admission::Full => full += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(full >= SHARDS * 4, "{full}");
        assert!(cache.len() <= SHARDS * 4);
        // Nothing admitted was forgotten.
        for i in 0..SHARDS * 8 {
            let again = cache.admit(&format!("k{i}"), "j", 100, 1);
            assert!(matches!(again, Admission::Replayed | Admission::Full));
        }
    }

    #[test]
    fn one_key_cannot_crowd_out_the_others() {
        let cache = ReplayCache::new(SHARDS * 100, SHARDS * 2);
        let mut refused = 0;
        for i in 0..SHARDS * 10 {
            if cache.admit("greedy", &format!("j{i}"), 100, 0) == Admission::KeyShareFull {
                refused += 1;
            }
        }
        assert!(refused >= SHARDS * 7, "{refused}");
        for i in 0..SHARDS * 2 {
            assert_eq!(cache.admit(&format!("k{i}"), "j", 100, 0), Admission::Fresh);
        }
    }
}
