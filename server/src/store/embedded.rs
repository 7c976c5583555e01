//! The embedded store: one redb file (`authd.redb`) in the data directory.
//!
//! redb is pure Rust, ACID and crash-safe: a commit is durable once it
//! returns (copy-on-write B-trees, checksummed, fsync on commit), so a killed
//! process loses no committed write. Calls run on the blocking pool.
//!
//! Its memory is bounded: redb's page cache is capped
//! (`store.embedded_cache_bytes`), and what has expired (sessions,
//! revocations, device-login answers) is deleted every
//! `store.purge_interval_seconds`, the work DynamoDB's TTL does for the other
//! store. Without both, the file and the process grew for as long as authd
//! ran.

use std::{
    path::Path,
    sync::{Arc, Weak},
    time::Duration,
};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Serialize, de::DeserializeOwned};

use super::{
    DeviceApproval, Profile, Revocation, SealedItem, SealedPage, SealingCensus, SessionRecord,
    Store, StoreError, StoredProfile,
};
use crate::secrets::SealedSecret;

const PROFILES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("profiles");
const SESSIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sessions");
/// sort key (`<at_ms>#<kind>#<digest>`) → revocation.
const REVOCATIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("revocations");
/// (user id, session id) → (): the index of a user's sessions.
/// device code hash → [`DeviceApproval`].
const DEVICE_APPROVALS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("device_approvals");
const USER_SESSIONS: TableDefinition<'_, (&str, &str), ()> = TableDefinition::new("user_sessions");
/// name → JSON: records about the store itself (the sealing census).
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
/// The [`META`] key of the sealing census.
const CENSUS: &str = "sealing_census";

/// The file name inside the data directory.
pub const FILE_NAME: &str = "authd.redb";

/// The redb-backed [`Store`].
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

fn internal(error: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(error.to_string())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(internal)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The page cache [`EmbeddedStore::open`] gives redb (32 MiB).
pub const DEFAULT_CACHE_BYTES: usize = 32 << 20;

/// At most this many expired records are deleted in one write transaction,
/// so that a purge never holds the writer for long.
const PURGE_BATCH: usize = 1_000;

impl EmbeddedStore {
    /// Opens (or creates) `dir/authd.redb` with the default page cache,
    /// creating `dir` when missing.
    pub fn open(dir: &Path) -> Result<EmbeddedStore, StoreError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) `dir/authd.redb`, letting redb cache at most
    /// `cache_bytes` of its pages.
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> Result<EmbeddedStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| internal(format!("cannot create {}: {e}", dir.display())))?;
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(dir.join(FILE_NAME))
            .map_err(internal)?;
        // Create the tables up front so that readers never find them missing.
        let txn = db.begin_write().map_err(internal)?;
        txn.open_table(PROFILES).map_err(internal)?;
        txn.open_table(SESSIONS).map_err(internal)?;
        txn.open_table(USER_SESSIONS).map_err(internal)?;
        txn.open_table(REVOCATIONS).map_err(internal)?;
        txn.open_table(DEVICE_APPROVALS).map_err(internal)?;
        txn.open_table(META).map_err(internal)?;
        txn.commit().map_err(internal)?;
        Ok(EmbeddedStore { db: Arc::new(db) })
    }

    /// Deletes every session, revocation and device-login answer that
    /// expired as of `now` (unix seconds); how many. Live records, and
    /// profiles, are left alone.
    pub async fn purge_expired(&self, now: i64) -> Result<usize, StoreError> {
        self.blocking(move |db| purge(db, now)).await
    }

    /// Purges expired records every `every`, from a background task that
    /// ends when the store is dropped.
    pub fn spawn_purger(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let db: Weak<Database> = Arc::downgrade(&self.db);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(db) = db.upgrade() else { return };
                let store = EmbeddedStore { db };
                match store.purge_expired(crate::store::unix_now()).await {
                    Ok(0) => {}
                    Ok(purged) => tracing::debug!(purged, "expired records deleted"),
                    Err(error) => tracing::warn!(%error, "cannot delete expired records"),
                }
            }
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(internal)?
    }
}

/// Reads a live session inside a transaction's table.
fn live_session(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
    now: i64,
) -> Result<Option<SessionRecord>, StoreError> {
    let Some(bytes) = table.get(id).map_err(internal)? else {
        return Ok(None);
    };
    let record: SessionRecord = decode(bytes.value())?;
    Ok((record.expires_at > now).then_some(record))
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn get_profile(&self, user_id: &str) -> Result<Option<StoredProfile>, StoreError> {
        let user_id = user_id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(internal)?;
            let table = txn.open_table(PROFILES).map_err(internal)?;
            let found = table.get(user_id.as_str()).map_err(internal)?;
            found.map(|bytes| decode_profile(bytes.value())).transpose()
        })
        .await
    }

    async fn put_profile(&self, user_id: &str, sealed: &SealedSecret) -> Result<(), StoreError> {
        let bytes = encode(&SealedProfileEntry {
            sealed: sealed.clone(),
        })?;
        let user_id = user_id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(internal)?;
            txn.open_table(PROFILES)
                .map_err(internal)?
                .insert(user_id.as_str(), bytes.as_slice())
                .map_err(internal)?;
            txn.commit().map_err(internal)
        })
        .await
    }

    async fn delete_profile(&self, user_id: &str) -> Result<bool, StoreError> {
        let user_id = user_id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(internal)?;
            let existed = txn
                .open_table(PROFILES)
                .map_err(internal)?
                .remove(user_id.as_str())
                .map_err(internal)?
                .is_some();
            txn.commit().map_err(internal)?;
            Ok(existed)
        })
        .await
    }

    async fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        let bytes = encode(session)?;
        let (id, user) = (session.id.clone(), session.user_id.clone());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(internal)?;
            {
                let mut sessions = txn.open_table(SESSIONS).map_err(internal)?;
                if sessions.get(id.as_str()).map_err(internal)?.is_some() {
                    return Err(StoreError::Conflict);
                }
                sessions
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(internal)?;
                let mut index = txn.open_table(USER_SESSIONS).map_err(internal)?;
                index
                    .insert((user.as_str(), id.as_str()), ())
                    .map_err(internal)?;
            }
            txn.commit().map_err(internal)
        })
        .await
    }

    async fn get_session(&self, id: &str, now: i64) -> Result<Option<SessionRecord>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(internal)?;
            let table = txn.open_table(SESSIONS).map_err(internal)?;
            live_session(&table, &id, now)
        })
        .await
    }

    async fn update_session(
        &self,
        session: &SessionRecord,
        expected_version: u64,
        now: i64,
    ) -> Result<(), StoreError> {
        let bytes = encode(session)?;
        let id = session.id.clone();
        self.blocking(move |db| {
            // redb has one writer at a time: the read and the write below are
            // atomic together.
            let txn = db.begin_write().map_err(internal)?;
            {
                let mut sessions = txn.open_table(SESSIONS).map_err(internal)?;
                let current = live_session(&sessions, &id, now)?.ok_or(StoreError::NotFound)?;
                if current.version != expected_version {
                    return Err(StoreError::Conflict);
                }
                sessions
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(internal)?;
            }
            txn.commit().map_err(internal)
        })
        .await
    }

    async fn delete_session(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(internal)?;
            let existed = {
                let mut sessions = txn.open_table(SESSIONS).map_err(internal)?;
                let removed = sessions.remove(id.as_str()).map_err(internal)?;
                match removed {
                    Some(bytes) => {
                        let record: SessionRecord = decode(bytes.value())?;
                        drop(bytes);
                        let mut index = txn.open_table(USER_SESSIONS).map_err(internal)?;
                        index
                            .remove((record.user_id.as_str(), id.as_str()))
                            .map_err(internal)?;
                        true
                    }
                    None => false,
                }
            };
            txn.commit().map_err(internal)?;
            Ok(existed)
        })
        .await
    }

    async fn list_sessions(
        &self,
        user_id: &str,
        now: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let user_id = user_id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(internal)?;
            let index = txn.open_table(USER_SESSIONS).map_err(internal)?;
            let sessions = txn.open_table(SESSIONS).map_err(internal)?;
            let mut found = Vec::new();
            for entry in index.range((user_id.as_str(), "")..).map_err(internal)? {
                let (key, _) = entry.map_err(internal)?;
                let (user, id) = key.value();
                if user != user_id {
                    break;
                }
                if let Some(record) = live_session(&sessions, id, now)? {
                    found.push(record);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn put_revocation(&self, revocation: &Revocation) -> Result<(), StoreError> {
        let bytes = encode(revocation)?;
        let key = revocation.sort_key();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(internal)?;
            txn.open_table(REVOCATIONS)
                .map_err(internal)?
                .insert(key.as_str(), bytes.as_slice())
                .map_err(internal)?;
            txn.commit().map_err(internal)
        })
        .await
    }

    async fn revocations_since(
        &self,
        after_ms: i64,
        now: i64,
    ) -> Result<Vec<Revocation>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(internal)?;
            let table = txn.open_table(REVOCATIONS).map_err(internal)?;
            // Every key of a later millisecond sorts after this one.
            let start = format!("{:016}$", after_ms.max(0));
            let mut found = Vec::new();
            for entry in table.range(start.as_str()..).map_err(internal)? {
                let (_, value) = entry.map_err(internal)?;
                let revocation: Revocation = decode(value.value())?;
                if revocation.expires_at > now {
                    found.push(revocation);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn put_device_approval(&self, approval: &DeviceApproval) -> Result<(), StoreError> {
        let bytes = encode(approval)?;
        let id = approval.id.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(internal)?;
            txn.open_table(DEVICE_APPROVALS)
                .map_err(internal)?
                .insert(id.as_str(), bytes.as_slice())
                .map_err(internal)?;
            txn.commit().map_err(internal)
        })
        .await
    }

    async fn get_device_approval(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<DeviceApproval>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(internal)?;
            let table = match txn.open_table(DEVICE_APPROVALS) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(other) => return Err(internal(other)),
            };
            let Some(value) = table.get(id.as_str()).map_err(internal)? else {
                return Ok(None);
            };
            let approval: DeviceApproval = decode(value.value())?;
            Ok((approval.expires_at > now).then_some(approval))
        })
        .await
    }

    async fn scan_sealed(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<SealedPage, StoreError> {
        let (mut table, mut after) = match cursor {
            None => (0, None),
            Some(cursor) => {
                let (table, key) = cursor
                    .split_once(':')
                    .and_then(|(t, k)| Some((t.parse::<usize>().ok()?, k.to_owned())))
                    .filter(|(t, _)| *t < SEALED_TABLES.len())
                    .ok_or_else(|| StoreError::Corrupt(format!("not a scan cursor: {cursor}")))?;
                (table, Some(key))
            }
        };
        let limit = limit.max(1);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(internal)?;
            let mut page = SealedPage::default();
            while table < SEALED_TABLES.len() {
                let open = txn.open_table(SEALED_TABLES[table]).map_err(internal)?;
                let range = match &after {
                    Some(key) => open.range::<&str>((
                        std::ops::Bound::Excluded(key.as_str()),
                        std::ops::Bound::Unbounded,
                    )),
                    None => open.range::<&str>(..),
                }
                .map_err(internal)?;
                for entry in range {
                    let (key, value) = entry.map_err(internal)?;
                    let key = key.value().to_owned();
                    page.items.push(sealed_item(table, &key, value.value())?);
                    if page.items.len() >= limit {
                        page.next = Some(format!("{table}:{key}"));
                        return Ok(page);
                    }
                }
                table += 1;
                after = None;
            }
            Ok(page)
        })
        .await
    }

    async fn replace_sealed(&self, old: &SealedItem, new: &SealedItem) -> Result<(), StoreError> {
        let (index, key, bytes) = match new {
            SealedItem::Session(record) => (1, record.id.clone(), encode(record)?),
            SealedItem::Profile { user_id, stored } => {
                let StoredProfile::Sealed(sealed) = stored else {
                    return Err(internal("a profile is never written in clear"));
                };
                let entry = SealedProfileEntry {
                    sealed: sealed.clone(),
                };
                (0, user_id.clone(), encode(&entry)?)
            }
            SealedItem::DeviceApproval(approval) => (2, approval.id.clone(), encode(approval)?),
        };
        let table = SEALED_TABLES[index];
        let old = old.clone();
        self.blocking(move |db| {
            // One writer at a time: the comparison and the write are atomic.
            let txn = db.begin_write().map_err(internal)?;
            {
                let mut open = txn.open_table(table).map_err(internal)?;
                let current = match open.get(key.as_str()).map_err(internal)? {
                    Some(value) => sealed_item(index, &key, value.value())?,
                    None => return Err(StoreError::NotFound),
                };
                if current != old {
                    return Err(StoreError::Conflict);
                }
                open.insert(key.as_str(), bytes.as_slice())
                    .map_err(internal)?;
            }
            txn.commit().map_err(internal)
        })
        .await
    }

    async fn put_census(&self, census: &SealingCensus) -> Result<(), StoreError> {
        let bytes = encode(census)?;
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(internal)?;
            txn.open_table(META)
                .map_err(internal)?
                .insert(CENSUS, bytes.as_slice())
                .map_err(internal)?;
            txn.commit().map_err(internal)
        })
        .await
    }

    async fn get_census(&self) -> Result<Option<SealingCensus>, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(internal)?;
            let table = txn.open_table(META).map_err(internal)?;
            let found = table.get(CENSUS).map_err(internal)?;
            found.map(|bytes| decode(bytes.value())).transpose()
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.blocking(|db| db.begin_read().map(drop).map_err(internal))
            .await
    }
}

/// The tables holding sealed values, in the order a scan walks them.
const SEALED_TABLES: [TableDefinition<'_, &str, &[u8]>; 3] = [PROFILES, SESSIONS, DEVICE_APPROVALS];

/// A profile entry as written: only the sealed profile.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedProfileEntry {
    sealed: SealedSecret,
}

/// A stored profile: sealed, or a [`Profile`] in clear written before
/// profiles were sealed.
fn decode_profile(bytes: &[u8]) -> Result<StoredProfile, StoreError> {
    match serde_json::from_slice::<SealedProfileEntry>(bytes) {
        Ok(entry) => Ok(StoredProfile::Sealed(entry.sealed)),
        Err(_) => decode::<Profile>(bytes).map(StoredProfile::Clear),
    }
}

/// The entry `key` of sealed table number `table`.
fn sealed_item(table: usize, key: &str, bytes: &[u8]) -> Result<SealedItem, StoreError> {
    Ok(match table {
        0 => SealedItem::Profile {
            user_id: key.to_owned(),
            stored: decode_profile(bytes)?,
        },
        1 => SealedItem::Session(decode(bytes)?),
        _ => SealedItem::DeviceApproval(decode(bytes)?),
    })
}

/// The keys of up to [`PURGE_BATCH`] records of `table` that expired as of
/// `now`, with their decoded values.
fn expired<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    now: i64,
    expires_at: impl Fn(&T) -> i64,
) -> Result<Vec<(String, T)>, StoreError> {
    let mut found = Vec::new();
    for entry in table.iter().map_err(internal)? {
        let (key, value) = entry.map_err(internal)?;
        let record: T = decode(value.value())?;
        if expires_at(&record) <= now {
            found.push((key.value().to_owned(), record));
            if found.len() == PURGE_BATCH {
                break;
            }
        }
    }
    Ok(found)
}

/// One purge: batches of deletions, each its own transaction, until a
/// batch comes back short.
fn purge(db: &Database, now: i64) -> Result<usize, StoreError> {
    let mut purged = 0;
    loop {
        let txn = db.begin_write().map_err(internal)?;
        let batch = {
            let mut sessions = txn.open_table(SESSIONS).map_err(internal)?;
            let mut index = txn.open_table(USER_SESSIONS).map_err(internal)?;
            let mut revocations = txn.open_table(REVOCATIONS).map_err(internal)?;
            let mut approvals = txn.open_table(DEVICE_APPROVALS).map_err(internal)?;
            let dead_sessions = expired(&sessions, now, |s: &SessionRecord| s.expires_at)?;
            for (id, record) in &dead_sessions {
                sessions.remove(id.as_str()).map_err(internal)?;
                index
                    .remove((record.user_id.as_str(), id.as_str()))
                    .map_err(internal)?;
            }
            let dead_revocations = expired(&revocations, now, |r: &Revocation| r.expires_at)?;
            for (key, _) in &dead_revocations {
                revocations.remove(key.as_str()).map_err(internal)?;
            }
            let dead_approvals = expired(&approvals, now, |a: &DeviceApproval| a.expires_at)?;
            for (key, _) in &dead_approvals {
                approvals.remove(key.as_str()).map_err(internal)?;
            }
            [
                dead_sessions.len(),
                dead_revocations.len(),
                dead_approvals.len(),
            ]
        };
        txn.commit().map_err(internal)?;
        purged += batch.iter().sum::<usize>();
        if batch.iter().all(|&n| n < PURGE_BATCH) {
            return Ok(purged);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    async fn fresh() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        (dir, Arc::new(store))
    }

    /// redb opens a file once per process: the second "replica" is the
    /// same database.
    async fn same(_dir: &tempfile::TempDir, store: &Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::clone(store)
    }

    crate::store_conformance_tests!(fresh, same);

    /// Writes records straight into the tables, in one transaction.
    fn insert_raw(
        store: &EmbeddedStore,
        sessions: &[SessionRecord],
        revocations: &[Revocation],
        approvals: &[DeviceApproval],
    ) {
        let txn = store.db.begin_write().expect("write");
        {
            let mut table = txn.open_table(SESSIONS).expect("sessions");
            let mut index = txn.open_table(USER_SESSIONS).expect("index");
            for s in sessions {
                let bytes = encode(s).expect("encode");
                table
                    .insert(s.id.as_str(), bytes.as_slice())
                    .expect("insert");
                index
                    .insert((s.user_id.as_str(), s.id.as_str()), ())
                    .expect("index");
            }
            let mut table = txn.open_table(REVOCATIONS).expect("revocations");
            for r in revocations {
                let bytes = encode(r).expect("encode");
                table
                    .insert(r.sort_key().as_str(), bytes.as_slice())
                    .expect("insert");
            }
            let mut table = txn.open_table(DEVICE_APPROVALS).expect("approvals");
            for a in approvals {
                let bytes = encode(a).expect("encode");
                table
                    .insert(a.id.as_str(), bytes.as_slice())
                    .expect("insert");
            }
        }
        txn.commit().expect("commit");
    }

    fn index_len(store: &EmbeddedStore) -> u64 {
        use redb::ReadableTableMetadata;
        let txn = store.db.begin_read().expect("read");
        txn.open_table(USER_SESSIONS)
            .expect("index")
            .len()
            .expect("len")
    }

    #[tokio::test]
    async fn purge_deletes_what_expired_and_keeps_the_rest() {
        use crate::{
            secrets::{SealedSecret, hash_handle},
            store::{RevocationKind, conformance},
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open_with_cache(dir.path(), 1 << 20).expect("open");
        let now = conformance::now();
        // More than one batch of expired sessions, so the purge loops.
        let dead: Vec<SessionRecord> = (0..PURGE_BATCH + 7)
            .map(|i| SessionRecord {
                expires_at: now - 1 - (i as i64 % 5),
                ..conformance::session(&format!("auth0|gone{}", i % 3))
            })
            .collect();
        let live = conformance::session("auth0|gone0");
        let revocation = |value: &str, expires_at| Revocation {
            kind: RevocationKind::SessionId,
            issuer: "https://tenant.example.auth0.com/".to_owned(),
            value: value.to_owned(),
            at_ms: (now - 100) * 1000,
            expires_at,
        };
        let approval = |code: &str, expires_at| DeviceApproval {
            id: hash_handle(code),
            session_id: live.id.clone(),
            session_version: Some(1),
            handle: SealedSecret(String::new()),
            expires_at,
        };
        insert_raw(
            &store,
            &[dead.as_slice(), std::slice::from_ref(&live)].concat(),
            &[revocation("old", now), revocation("kept", now + 600)],
            &[approval("old", now - 1), approval("kept", now + 600)],
        );
        assert_eq!(index_len(&store), dead.len() as u64 + 1);

        let purged = store.purge_expired(now).await.expect("purge");

        assert_eq!(purged, dead.len() + 2);
        assert_eq!(
            index_len(&store),
            1,
            "the user index keeps only live sessions"
        );
        assert_eq!(
            store.get_session(&live.id, now).await,
            Ok(Some(live.clone()))
        );
        // Read as of long ago, so that nothing is filtered as expired:
        // only what is still stored comes back.
        let left: Vec<String> = store
            .revocations_since(0, 0)
            .await
            .expect("revocations")
            .into_iter()
            .map(|r| r.value)
            .collect();
        assert_eq!(left, ["kept"]);
        assert_eq!(
            store.get_device_approval(&hash_handle("old"), 0).await,
            Ok(None)
        );
        assert!(
            store
                .get_device_approval(&hash_handle("kept"), 0)
                .await
                .expect("approval")
                .is_some()
        );
        assert_eq!(store.list_sessions("auth0|gone0", 0).await, Ok(vec![live]));
        assert_eq!(
            store.purge_expired(now).await,
            Ok(0),
            "nothing left to purge"
        );
    }

    #[tokio::test]
    async fn the_purger_runs_until_the_store_is_dropped() {
        use crate::store::conformance;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let expired = SessionRecord {
            expires_at: conformance::now() - 1,
            ..conformance::session("auth0|gone")
        };
        insert_raw(&store, std::slice::from_ref(&expired), &[], &[]);
        let purger = store.spawn_purger(Duration::from_millis(20));
        while index_len(&store) != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(store);
        // Its only handle on the database was weak: the task ends.
        tokio::time::timeout(Duration::from_secs(30), purger)
            .await
            .expect("the purger ends once the store is dropped")
            .expect("no panic");
    }

    #[tokio::test]
    async fn committed_writes_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sealed = SealedSecret("v1.k1.bm9uY2U.c2VhbGVk".to_owned());
        {
            let store = EmbeddedStore::open(dir.path()).expect("open");
            store
                .put_profile("auth0|durable", &sealed)
                .await
                .expect("put");
        }
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        assert_eq!(
            store.get_profile("auth0|durable").await,
            Ok(Some(StoredProfile::Sealed(sealed)))
        );
    }

    #[tokio::test]
    async fn a_profile_written_in_clear_by_an_earlier_version_is_read_then_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let legacy = crate::store::conformance::profile("auth0|legacy");
        let bytes = encode(&legacy).expect("encode");
        let db = Arc::clone(&store.db);
        let txn = db.begin_write().expect("write");
        txn.open_table(PROFILES)
            .expect("table")
            .insert("auth0|legacy", bytes.as_slice())
            .expect("insert");
        txn.commit().expect("commit");
        assert_eq!(
            store.get_profile("auth0|legacy").await,
            Ok(Some(StoredProfile::Clear(legacy.clone())))
        );
        let page = store.scan_sealed(None, 10).await.expect("scan");
        let old = SealedItem::Profile {
            user_id: "auth0|legacy".to_owned(),
            stored: StoredProfile::Clear(legacy),
        };
        assert_eq!(page.items, vec![old.clone()]);
        let sealed = SealedSecret("v1.k1.bm9uY2U.c2VhbGVk".to_owned());
        let new = SealedItem::Profile {
            user_id: "auth0|legacy".to_owned(),
            stored: StoredProfile::Sealed(sealed.clone()),
        };
        store.replace_sealed(&old, &new).await.expect("replace");
        assert_eq!(
            store.get_profile("auth0|legacy").await,
            Ok(Some(StoredProfile::Sealed(sealed)))
        );
        assert_eq!(
            store.replace_sealed(&old, &new).await,
            Err(StoreError::Conflict)
        );
    }
}
