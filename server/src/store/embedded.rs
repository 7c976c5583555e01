//! The embedded store: one redb file (`authd.redb`) in the data directory.
//!
//! redb is pure Rust, ACID and crash-safe: a commit is durable once it
//! returns (copy-on-write B-trees, checksummed, fsync on commit), so a killed
//! process loses no committed write. Calls run on the blocking pool.

use std::{path::Path, sync::Arc};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Serialize, de::DeserializeOwned};

use super::{DeviceApproval, Profile, Revocation, SessionRecord, Store, StoreError};

const PROFILES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("profiles");
const SESSIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sessions");
/// sort key (`<at_ms>#<kind>#<digest>`) → revocation.
const REVOCATIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("revocations");
/// (user id, session id) → (): the index of a user's sessions.
/// device code hash → [`DeviceApproval`].
const DEVICE_APPROVALS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("device_approvals");
const USER_SESSIONS: TableDefinition<'_, (&str, &str), ()> = TableDefinition::new("user_sessions");

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

impl EmbeddedStore {
    /// Opens (or creates) `dir/authd.redb`, creating `dir` when missing.
    pub fn open(dir: &Path) -> Result<EmbeddedStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| internal(format!("cannot create {}: {e}", dir.display())))?;
        let db = Database::create(dir.join(FILE_NAME)).map_err(internal)?;
        // Create the tables up front so that readers never find them missing.
        let txn = db.begin_write().map_err(internal)?;
        txn.open_table(PROFILES).map_err(internal)?;
        txn.open_table(SESSIONS).map_err(internal)?;
        txn.open_table(USER_SESSIONS).map_err(internal)?;
        txn.open_table(REVOCATIONS).map_err(internal)?;
        txn.commit().map_err(internal)?;
        Ok(EmbeddedStore { db: Arc::new(db) })
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
    async fn get_profile(&self, user_id: &str) -> Result<Option<Profile>, StoreError> {
        let user_id = user_id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(internal)?;
            let table = txn.open_table(PROFILES).map_err(internal)?;
            let found = table.get(user_id.as_str()).map_err(internal)?;
            found.map(|bytes| decode(bytes.value())).transpose()
        })
        .await
    }

    async fn put_profile(&self, profile: &Profile) -> Result<(), StoreError> {
        let bytes = encode(profile)?;
        let user_id = profile.user_id.clone();
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

    async fn ping(&self) -> Result<(), StoreError> {
        self.blocking(|db| db.begin_read().map(drop).map_err(internal))
            .await
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

    crate::store_conformance_tests!(fresh);

    #[tokio::test]
    async fn committed_writes_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let profile = crate::store::conformance::profile("auth0|durable");
        {
            let store = EmbeddedStore::open(dir.path()).expect("open");
            store.put_profile(&profile).await.expect("put");
        }
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        assert_eq!(store.get_profile("auth0|durable").await, Ok(Some(profile)));
    }
}
