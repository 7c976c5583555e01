//! Where profiles and sessions live: one [`Store`] trait, two
//! implementations — [`embedded`] (redb, the default) and [`dynamodb`] —
//! and one conformance suite ([`conformance`]) that both must pass.
//!
//! Records hold no secret in clear: session handles are stored as their
//! SHA-256 ([`crate::secrets::hash_handle`]) and refresh tokens sealed
//! ([`crate::secrets::Sealer`]) before they reach a store.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod dynamodb;
pub mod embedded;

use std::{fmt, sync::Arc};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    config::{StoreConfig, StoreKind},
    secrets::SealedSecret,
};

/// What authd knows of a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// `sub`.
    pub user_id: String,
    /// Email address.
    pub email: Option<String>,
    /// Whether the issuer verified the email address.
    pub email_verified: bool,
    /// Full name.
    pub name: Option<String>,
    /// Nickname.
    pub nickname: Option<String>,
    /// Picture URL.
    pub picture: Option<String>,
    /// Every other attribute the issuer returned.
    pub attributes: Map<String, Value>,
    /// When authd first stored the profile (unix seconds).
    pub created_at: i64,
    /// When the profile last changed (unix seconds).
    pub updated_at: i64,
    /// When it was last filled from the issuer (unix seconds).
    pub fetched_at: i64,
}

/// A session as stored. The handle itself is never stored: `id` is its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The SHA-256 of the session handle, hex.
    pub id: String,
    /// `sub`.
    pub user_id: String,
    /// The issuer the session belongs to.
    pub issuer: String,
    /// The refresh token, sealed for this item.
    pub refresh_token: Option<SealedSecret>,
    /// Bumped by every update; updates are conditional on it.
    pub version: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub refreshed_at: i64,
    /// Unix seconds; the record is ignored (and eventually deleted) after.
    pub expires_at: i64,
    /// Set by revocation.
    pub revoked: bool,
}

impl SessionRecord {
    /// The key its secrets are sealed for.
    pub fn item_key(&self) -> String {
        format!("SESSION#{}", self.id)
    }
}

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// A conditional write lost: the item exists (create) or its version
    /// moved on (update).
    #[error("conflicting concurrent change")]
    Conflict,
    /// The item to update does not exist (or has expired).
    #[error("no such item")]
    NotFound,
    /// The store cannot be reached, is too slow, or throttles, after retries.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored item cannot be read back.
    #[error("stored item is corrupt: {0}")]
    Corrupt(String),
    /// Anything else; the detail is logged, never returned to callers.
    #[error("store error: {0}")]
    Internal(String),
}

/// The storage of profiles and sessions.
#[async_trait::async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// The profile of `user_id`.
    async fn get_profile(&self, user_id: &str) -> Result<Option<Profile>, StoreError>;
    /// Creates or replaces a profile.
    async fn put_profile(&self, profile: &Profile) -> Result<(), StoreError>;
    /// Deletes a profile; whether it existed.
    async fn delete_profile(&self, user_id: &str) -> Result<bool, StoreError>;

    /// Creates a session; [`StoreError::Conflict`] when the id exists.
    async fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    /// The session `id`, unless missing or expired as of `now`.
    async fn get_session(&self, id: &str, now: i64) -> Result<Option<SessionRecord>, StoreError>;
    /// Replaces the session if its stored version is `expected_version`
    /// (callers store `expected_version + 1`): [`StoreError::Conflict`] when
    /// it moved on, [`StoreError::NotFound`] when it is gone or expired.
    async fn update_session(
        &self,
        session: &SessionRecord,
        expected_version: u64,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Deletes a session; whether it existed.
    async fn delete_session(&self, id: &str) -> Result<bool, StoreError>;
    /// The unexpired sessions of `user_id`.
    async fn list_sessions(
        &self,
        user_id: &str,
        now: i64,
    ) -> Result<Vec<SessionRecord>, StoreError>;

    /// Succeeds when the store answers (for health).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Opens the configured store.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match config.kind {
        StoreKind::Embedded => Arc::new(embedded::EmbeddedStore::open(&config.path)?),
        StoreKind::Dynamodb => Arc::new(dynamodb::DynamoStore::connect(config).await),
    })
}
