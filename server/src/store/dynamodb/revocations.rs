//! The revocation log on DynamoDB, spread over partitions by time bucket and
//! shard so that neither a mass revocation (writes) nor a large fleet of
//! replicas polling it (reads) meets the limit of one partition (about
//! 1,000 writes and 3,000 reads a second).
//!
//! | item | `pk` | `sk` | `ttl` |
//! |---|---|---|---|
//! | revocation | `REVOCATIONS#<bucket>#<shard>` | `<at_ms>#<kind>#<digest>` | its `expires_at` |
//! | index entry | `REVOCATIONS#INDEX` | `<bucket end>#<bucket>#<shard>` | ≥ the latest `expires_at` of that partition |
//! | revocation of authd before this layout | `REVOCATIONS` | `<at_ms>#<kind>#<digest>` | its `expires_at` |
//!
//! `<bucket>` is the start (unix ms, 16 digits) of the `at_ms`'s time bucket
//! (`store.revocation_bucket_seconds` wide), `<shard>` (4 digits) a hash of
//! the revocation's issuer and value modulo `store.revocation_shards`: the
//! same revocation written twice lands on the same item. A writer records
//! the partition in the index before the revocation itself, once per
//! partition and process (and again when a later expiry must be covered),
//! so every stored revocation is reachable from the index.
//!
//! A read of everything after a cursor reads the index entries of buckets
//! that end after the cursor (a short range of one partition: the entries
//! sort by bucket end, so the range does not depend on the reader's own
//! bucket width), then every live partition they
//! names — `store.revocation_read_concurrency` at a time, every page, with
//! consistent reads — and merges them in sort-key order. The cost of a read
//! is therefore the number of non-empty partitions since the cursor, not the
//! number of buckets: the first read after start-up (cursor 0) reads each
//! partition still holding a revocation in force once, whatever their age.
//! Readers need neither the shard count nor the bucket width: both can be
//! changed at any time, and buckets written before keep the layout they
//! were written with.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex},
};

use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::{StreamExt, TryStreamExt, stream};

use super::{
    DynamoStore, Item, TTL_ATTRIBUTE, classify, is_condition_failure,
    items::{LEGACY_REVOCATIONS_PK, get_n, get_s, n, revocation_from, revocation_item, s},
};
use crate::{
    config::{LegacyRevocations, MAX_REVOCATION_SHARDS, StoreConfig},
    store::{Revocation, StoreError},
};

/// The partition key of the index of revocation partitions.
pub const INDEX_PK: &str = "REVOCATIONS#INDEX";
/// Index entries cover expiries rounded up to this (seconds), so that a
/// writer updates an entry about once an hour, not for each revocation.
const INDEX_EXPIRY_STEP: i64 = 3_600;
/// Partitions remembered as indexed, per process, before the expired ones
/// are forgotten.
const INDEXED_MEMORY: usize = 4_096;

/// How the revocation log is laid out and read (`[store]` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevocationLayout {
    /// Shards per time bucket (`store.revocation_shards`).
    pub shards: u32,
    /// Width of a time bucket in milliseconds
    /// (`store.revocation_bucket_seconds` × 1000).
    pub bucket_ms: i64,
    /// Partitions read at once (`store.revocation_read_concurrency`).
    pub read_concurrency: usize,
    /// What is done with the partition of authd before this layout
    /// (`store.legacy_revocations`).
    pub legacy: LegacyRevocations,
}

impl RevocationLayout {
    /// The layout the `[store]` section describes.
    pub fn from_config(config: &StoreConfig) -> RevocationLayout {
        RevocationLayout {
            shards: config.revocation_shards.clamp(1, MAX_REVOCATION_SHARDS),
            bucket_ms: i64::try_from(config.revocation_bucket_seconds.max(1))
                .unwrap_or(86_400)
                .saturating_mul(1_000),
            read_concurrency: config.revocation_read_concurrency.max(1),
            legacy: config.legacy_revocations,
        }
    }

    /// The start of the bucket holding `at_ms`.
    pub fn bucket_of(&self, at_ms: i64) -> i64 {
        let at = at_ms.max(0);
        at - at.rem_euclid(self.bucket_ms)
    }

    /// The partition `revocation` is written to.
    pub fn partition_of(&self, revocation: &Revocation) -> Partition {
        let digest =
            crate::secrets::hash_handle(&format!("{}|{}", revocation.issuer, revocation.value));
        // The first 64 bits of a SHA-256: uniform over any shard count.
        let hash = u64::from_str_radix(&digest[..16], 16).unwrap_or(0);
        let bucket_ms = self.bucket_of(revocation.at_ms);
        Partition {
            bucket_ms,
            end_ms: bucket_ms.saturating_add(self.bucket_ms),
            shard: u32::try_from(hash % u64::from(self.shards.max(1))).unwrap_or(0),
        }
    }
}

impl Default for RevocationLayout {
    fn default() -> Self {
        RevocationLayout::from_config(&StoreConfig::default())
    }
}

/// One partition of the log: a time bucket and a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    /// The start of the bucket (unix milliseconds).
    pub bucket_ms: i64,
    /// Its end (unix milliseconds, excluded).
    pub end_ms: i64,
    /// The shard.
    pub shard: u32,
}

impl Partition {
    /// Its partition key.
    pub fn pk(&self) -> String {
        format!("REVOCATIONS#{:016}#{:04}", self.bucket_ms, self.shard)
    }

    /// The sort key of its index entry.
    fn index_sk(&self) -> String {
        format!(
            "{:016}#{:016}#{:04}",
            self.end_ms, self.bucket_ms, self.shard
        )
    }

    fn from_index_sk(sk: &str) -> Result<Partition, StoreError> {
        let corrupt = || StoreError::Corrupt(format!("revocation index entry {sk:?}"));
        let mut parts = sk.split('#');
        let mut next = || -> Result<i64, StoreError> {
            parts
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(corrupt)
        };
        let (end_ms, bucket_ms, shard) = (next()?, next()?, next()?);
        Ok(Partition {
            bucket_ms,
            end_ms,
            shard: u32::try_from(shard).map_err(|_| corrupt())?,
        })
    }
}

/// The partitions this process has recorded in the index, with the expiry
/// the entry covers: a writer skips the index write when it is known.
#[derive(Debug, Clone, Default)]
pub(super) struct Indexed(Arc<Mutex<HashMap<Partition, i64>>>);

impl Indexed {
    fn covers(&self, partition: Partition, expires_at: i64) -> bool {
        let known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        known.get(&partition).is_some_and(|e| *e >= expires_at)
    }

    fn record(&self, partition: Partition, expires_at: i64, now: i64) {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= INDEXED_MEMORY {
            known.retain(|_, e| *e > now);
            if known.len() >= INDEXED_MEMORY {
                // Forgetting costs one more index write, never a lost entry.
                known.clear();
            }
        }
        let entry = known.entry(partition).or_insert(expires_at);
        *entry = (*entry).max(expires_at);
    }
}

/// The expiry an index entry covering `expires_at` records.
fn index_expiry(expires_at: i64) -> i64 {
    expires_at
        .saturating_add(INDEX_EXPIRY_STEP - 1)
        .div_euclid(INDEX_EXPIRY_STEP)
        .saturating_mul(INDEX_EXPIRY_STEP)
}

/// The sort key below every key (of a revocation, or of an index entry by
/// its bucket's end) of a millisecond later than `after_ms`.
fn after_key(after_ms: i64) -> String {
    // `$` sorts after `#`: every key of `after_ms` itself is below it.
    format!("{:016}$", after_ms.max(0))
}

impl DynamoStore {
    /// Records `revocation`: its partition in the index first (unless this
    /// process knows it is there), then the revocation; in the partition of
    /// earlier versions too while `store.legacy_revocations = "read-write"`.
    pub(super) async fn put_revocation_sharded(
        &self,
        revocation: &Revocation,
    ) -> Result<(), StoreError> {
        let partition = self.layout.partition_of(revocation);
        let covers = index_expiry(revocation.expires_at);
        if !self.indexed.covers(partition, covers) {
            self.index_partition(partition, covers).await?;
            self.indexed
                .record(partition, covers, crate::store::unix_now());
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(revocation_item(revocation, partition.pk())))
            .send()
            .await
            .map_err(classify)?;
        if self.layout.legacy == LegacyRevocations::ReadWrite {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(revocation_item(
                    revocation,
                    LEGACY_REVOCATIONS_PK.to_owned(),
                )))
                .send()
                .await
                .map_err(classify)?;
        }
        Ok(())
    }

    /// Creates the index entry of `partition`, or raises its expiry to
    /// `expires_at`; never lowers it (another writer's may be later).
    async fn index_partition(
        &self,
        partition: Partition,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(INDEX_PK))
            .key("sk", s(partition.index_sk()))
            .update_expression("SET expires_at = :e, #ttl = :e")
            .condition_expression("attribute_not_exists(expires_at) OR expires_at < :e")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":e", n(expires_at))
            .send()
            .await;
        match update {
            Ok(_) => Ok(()),
            // The entry already covers as long or longer.
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(classify(e)),
        }
    }

    /// The partitions that may hold a revocation made after `after_ms` and
    /// in force at `now`, from the index: those of buckets ending after it.
    async fn partitions_since(
        &self,
        after_ms: i64,
        now: i64,
    ) -> Result<BTreeSet<String>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk > :after")
            .expression_attribute_values(":pk", s(INDEX_PK))
            .expression_attribute_values(":after", s(after_key(after_ms)))
            .consistent_read(true);
        let mut partitions = BTreeSet::new();
        for entry in self.query_all(query).await? {
            // DynamoDB deletes expired entries lazily: skip them here.
            if get_n::<i64>(&entry, "expires_at")? > now {
                partitions.insert(Partition::from_index_sk(&get_s(&entry, "sk")?)?.pk());
            }
        }
        if self.layout.legacy != LegacyRevocations::Off {
            partitions.insert(LEGACY_REVOCATIONS_PK.to_owned());
        }
        Ok(partitions)
    }

    /// Every item of partition `pk` made after `after_ms`, every page.
    async fn revocation_items(&self, pk: String, after_ms: i64) -> Result<Vec<Item>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk > :after")
            .expression_attribute_values(":pk", AttributeValue::S(pk))
            .expression_attribute_values(":after", s(after_key(after_ms)))
            .consistent_read(true);
        self.query_all(query).await
    }

    /// Unexpired revocations made after `after_ms`, across every partition,
    /// in sort-key order, each once. One partition that cannot be read fails
    /// the whole read: a partial answer could move the caller's cursor past
    /// what it did not see.
    pub(super) async fn revocations_since_sharded(
        &self,
        after_ms: i64,
        now: i64,
    ) -> Result<Vec<Revocation>, StoreError> {
        let partitions = self.partitions_since(after_ms, now).await?;
        let pages: Vec<Vec<Item>> = stream::iter(partitions)
            .map(|pk| self.revocation_items(pk, after_ms))
            .buffer_unordered(self.layout.read_concurrency)
            .try_collect()
            .await?;
        let mut merged = BTreeMap::new();
        for item in pages.iter().flatten() {
            let revocation = revocation_from(item)?;
            if revocation.expires_at > now {
                merged.insert(revocation.sort_key(), revocation);
            }
        }
        Ok(merged.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RevocationKind;

    fn layout(shards: u32, bucket_seconds: u64) -> RevocationLayout {
        RevocationLayout::from_config(&StoreConfig {
            revocation_shards: shards,
            revocation_bucket_seconds: bucket_seconds,
            ..StoreConfig::default()
        })
    }

    fn revocation(value: &str, at_ms: i64) -> Revocation {
        Revocation {
            kind: RevocationKind::SessionId,
            issuer: "https://tenant.example.auth0.com/".to_owned(),
            value: value.to_owned(),
            at_ms,
            expires_at: at_ms / 1000 + 600,
        }
    }

    #[test]
    fn buckets_start_on_multiples_of_the_width() {
        let l = layout(16, 3_600);
        assert_eq!(l.bucket_of(0), 0);
        assert_eq!(l.bucket_of(3_599_999), 0);
        assert_eq!(l.bucket_of(3_600_000), 3_600_000);
        assert_eq!(l.bucket_of(-5), 0, "a clock before 1970 lands in the first");
    }

    #[test]
    fn a_revocation_always_lands_on_the_same_partition() {
        let l = layout(16, 3_600);
        let r = revocation("sid-1", 1_700_000_000_123);
        assert_eq!(l.partition_of(&r), l.partition_of(&r.clone()));
        assert_eq!(l.partition_of(&r).bucket_ms, 1_699_999_200_000);
    }

    #[test]
    fn shards_are_spread_evenly() {
        let l = layout(16, 3_600);
        let mut counts = [0u32; 16];
        for i in 0..16_000 {
            let p = l.partition_of(&revocation(&format!("sid-{i}"), 1_700_000_000_000));
            counts[p.shard as usize] += 1;
        }
        // 1,000 expected each; a fair hash stays well within ±15 %.
        assert!(
            counts.iter().all(|c| (850..=1_150).contains(c)),
            "{counts:?}"
        );
    }

    #[test]
    fn one_shard_is_one_partition_per_bucket() {
        let l = layout(1, 60);
        let shards: std::collections::HashSet<u32> = (0..100)
            .map(|i| l.partition_of(&revocation(&format!("s{i}"), 0)).shard)
            .collect();
        assert_eq!(shards, [0].into());
    }

    #[test]
    fn index_keys_round_trip_and_sort_by_bucket_end() {
        let l = layout(4, 3_600);
        let a = l.partition_of(&revocation("a", 1_700_000_000_000));
        let day = layout(4, 86_400).partition_of(&revocation("b", 1_700_000_000_000));
        assert_eq!(Partition::from_index_sk(&a.index_sk()), Ok(a));
        assert_eq!(a.end_ms - a.bucket_ms, 3_600_000);
        // A reader finds both from a cursor inside them, whatever its own
        // width: the entries sort by the end of their bucket.
        let cursor = after_key(1_700_000_000_000);
        assert!(a.index_sk() > cursor && day.index_sk() > cursor);
        assert!(a.index_sk() < day.index_sk());
        let ended = layout(4, 60).partition_of(&revocation("c", 1_699_999_000_000));
        assert!(
            ended.index_sk() < cursor,
            "a bucket that ended before is skipped"
        );
        assert_eq!(
            Partition {
                bucket_ms: 1_699_999_200_000,
                end_ms: 1_700_002_800_000,
                shard: 15
            }
            .pk(),
            "REVOCATIONS#0001699999200000#0015"
        );
        assert!(Partition::from_index_sk("garbage").is_err());
        assert!(Partition::from_index_sk("1#2").is_err());
    }

    #[test]
    fn index_expiry_rounds_up_to_the_hour() {
        assert_eq!(index_expiry(3_600), 3_600);
        assert_eq!(index_expiry(3_601), 7_200);
        assert_eq!(index_expiry(1), 3_600);
    }

    #[test]
    fn the_after_key_separates_milliseconds() {
        let r = revocation("x", 1_000);
        assert!(r.sort_key() < after_key(1_000));
        assert!(revocation("x", 1_001).sort_key() > after_key(1_000));
    }

    #[test]
    fn the_indexed_memory_knows_covered_expiries_only() {
        let known = Indexed::default();
        let p = Partition {
            bucket_ms: 0,
            end_ms: 3_600_000,
            shard: 1,
        };
        assert!(!known.covers(p, 3_600));
        known.record(p, 7_200, 0);
        assert!(known.covers(p, 3_600) && known.covers(p, 7_200));
        assert!(!known.covers(p, 10_800));
    }
}
