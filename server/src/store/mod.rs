//! Where profiles and sessions live: one [`Store`] trait, two
//! implementations — [`embedded`] (redb, the default) and [`dynamodb`] —
//! and one conformance suite ([`conformance`]) that both must pass.
//!
//! Records hold no secret and no personal data in clear: session handles
//! and device codes are stored as their SHA-256
//! ([`crate::secrets::hash_handle`]); tokens, the device answer's handle and
//! whole profiles are sealed ([`crate::secrets::Sealer`]) before they reach a
//! store. What stays in clear is what items are found by: user ids, issuer
//! URLs, issuers' session ids (`sid`), hashes, times and versions.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod dynamodb;
pub mod embedded;
pub mod metered;

use std::{
    collections::BTreeMap,
    fmt,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

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

/// A profile as a store holds it. Stores never see a profile in clear
/// except one written before profiles were sealed.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredProfile {
    /// The whole [`Profile`] as JSON, sealed for [`profile_item_key`]
    /// (`profile::sealed` seals and opens it).
    Sealed(SealedSecret),
    /// Written by a version of authd that stored profiles in clear: read,
    /// re-sealed on its next write or by `authd store reseal`, never written.
    Clear(Profile),
}

/// The key a profile is sealed for.
pub fn profile_item_key(user_id: &str) -> String {
    format!("PROFILE#{user_id}")
}

/// An item holding sealed values, as `authd store reseal` walks them.
#[derive(Debug, Clone, PartialEq)]
pub enum SealedItem {
    /// A session: its refresh, access and id tokens.
    Session(SessionRecord),
    /// A profile.
    Profile {
        /// `sub`.
        user_id: String,
        /// What is stored.
        stored: StoredProfile,
    },
    /// A device login's answer: the session handle.
    DeviceApproval(DeviceApproval),
}

/// One page of a walk over every [`SealedItem`] of a store.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SealedPage {
    /// The items of this page (possibly none, when the store skipped only
    /// other items).
    pub items: Vec<SealedItem>,
    /// Where the next page starts; `None` after the last.
    pub next: Option<String>,
}

/// How many values each key seals, by the kind of item holding them, as
/// the last full `authd store reseal` walk counted them (`crate::reseal`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SealingCensus {
    /// When the count finished (unix seconds).
    pub counted_at: i64,
    /// Key id (a local key id, a KMS key ARN, or [`SealingCensus::CLEAR`]) → kind
    /// (`session`, `profile`, `device_approval`) → values.
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
}

impl SealingCensus {
    /// The key id counted for profiles still stored in clear.
    pub const CLEAR: &str = "clear";

    /// Counts one value of `kind` sealed by `key_id`.
    pub fn add(&mut self, key_id: &str, kind: &str) {
        *self
            .counts
            .entry(key_id.to_owned())
            .or_default()
            .entry(kind.to_owned())
            .or_default() += 1;
    }

    /// All values sealed by `key_id`.
    pub fn total(&self, key_id: &str) -> u64 {
        self.counts.get(key_id).map_or(0, |k| k.values().sum())
    }
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
    /// The issuer's own session id (`sid`), when its tokens carry one.
    #[serde(default)]
    pub issuer_session_id: Option<String>,
    /// The latest access token, sealed: concurrent refreshes on other
    /// replicas answer with it instead of spending the refresh token again.
    #[serde(default)]
    pub access_token: Option<SealedSecret>,
    /// When `access_token` expires (unix seconds).
    #[serde(default)]
    pub access_token_expires_at: i64,
    /// The latest id token, sealed.
    #[serde(default)]
    pub id_token: Option<SealedSecret>,
    /// The access tokens authd handed out for this session (hashes), kept
    /// until they expire so that revoking the session refuses them.
    #[serde(default)]
    pub issued_tokens: Vec<IssuedToken>,
    /// A replica refreshing the session holds it until then (unix seconds);
    /// 0 when free.
    #[serde(default)]
    pub lease_until: i64,
    /// Created by a device login whose APPROVED answer a repeated poll may
    /// still get ([`DeviceApproval`]): the session's first use bumps its
    /// version and clears this, which spends the device code.
    #[serde(default)]
    pub device_code_open: bool,
}

/// An access token handed out for a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedToken {
    /// SHA-256 of what the issuer signed (the JWS signing input
    /// `header.payload`), hex (`revocation::signed_digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_digest: Option<String>,
    /// SHA-256 of the whole token, hex: only in records written before
    /// tokens were named by their signed content (read, never written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Its `exp` (unix seconds).
    pub expires_at: i64,
}

/// What a revocation refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationKind {
    /// Tokens whose `sid` is `value`.
    SessionId,
    /// Tokens of subject `value` issued at or before the revocation.
    Subject,
    /// Tokens whose signing input (`header.payload`, what the issuer
    /// signed) has the SHA-256 `value`, whatever their signature's encoding.
    SignedDigest,
    /// The token whose whole-string SHA-256 is `value`. Written before
    /// [`RevocationKind::SignedDigest`] existed, and for records of that
    /// time; honoured until it expires. A re-encoded signature evades it,
    /// so nothing new relies on it alone.
    TokenHash,
}

/// A revocation, kept until no token it refuses can still be valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Revocation {
    /// What it refuses.
    pub kind: RevocationKind,
    /// The issuer of the tokens it refuses.
    pub issuer: String,
    /// The `sid`, subject or digest.
    pub value: String,
    /// When it was made (unix milliseconds).
    pub at_ms: i64,
    /// When it may be forgotten (unix seconds).
    pub expires_at: i64,
}

impl Revocation {
    /// The sort key: revocations are read back in the order they were made.
    pub fn sort_key(&self) -> String {
        let kind = match self.kind {
            RevocationKind::SessionId => "sid",
            RevocationKind::Subject => "sub",
            RevocationKind::SignedDigest => "dig",
            RevocationKind::TokenHash => "tok",
        };
        let digest = crate::secrets::hash_handle(&format!("{}|{}", self.issuer, self.value));
        format!("{:016}#{kind}#{}", self.at_ms.max(0), &digest[..32])
    }
}

/// What the poll that saw a device login approved answered, kept for a few
/// minutes: the issuer hands the tokens out once, so a poll repeated after
/// a lost answer is answered from here with the same session — only while
/// that session has not been used since (its version unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceApproval {
    /// SHA-256 of the device code, hex.
    pub id: String,
    /// The session's id (SHA-256 of its handle).
    pub session_id: String,
    /// The session's version when it was created; any later version means
    /// the session was used (refreshed, revoked) and the code is spent.
    /// `None` in approvals written before this was recorded: spent.
    #[serde(default)]
    pub session_version: Option<u64>,
    /// The session handle, sealed for [`DeviceApproval::item_key`].
    pub handle: SealedSecret,
    /// When it may be forgotten (unix seconds).
    pub expires_at: i64,
}

impl DeviceApproval {
    /// The key its handle is sealed for.
    pub fn item_key(&self) -> String {
        format!("DEVICE#{}", self.id)
    }
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
    async fn get_profile(&self, user_id: &str) -> Result<Option<StoredProfile>, StoreError>;
    /// Creates or replaces the profile of `user_id`, sealed.
    async fn put_profile(&self, user_id: &str, sealed: &SealedSecret) -> Result<(), StoreError>;
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

    /// Records a revocation.
    async fn put_revocation(&self, revocation: &Revocation) -> Result<(), StoreError>;
    /// Unexpired revocations made after `after_ms` (unix milliseconds), in
    /// the order they were made.
    async fn revocations_since(
        &self,
        after_ms: i64,
        now: i64,
    ) -> Result<Vec<Revocation>, StoreError>;

    /// Records what an approved device login answered (replacing any).
    async fn put_device_approval(&self, approval: &DeviceApproval) -> Result<(), StoreError>;
    /// The approval recorded for device code hash `id`, unless expired as
    /// of `now`.
    async fn get_device_approval(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<DeviceApproval>, StoreError>;

    /// Every item holding sealed values, a page of at most about `limit`
    /// items at a time from `cursor` (`None`: the start). Expired items may
    /// be included.
    async fn scan_sealed(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<SealedPage, StoreError>;
    /// Replaces `old` (as read by [`Store::scan_sealed`]) by `new`, the same
    /// item re-sealed, unless it changed since: [`StoreError::Conflict`]
    /// (a session's `new.version` must be `old.version + 1`), or
    /// [`StoreError::NotFound`] when it is gone.
    async fn replace_sealed(&self, old: &SealedItem, new: &SealedItem) -> Result<(), StoreError>;

    /// Records the census of sealed values a full re-sealing walk counted.
    async fn put_census(&self, census: &SealingCensus) -> Result<(), StoreError>;
    /// The census last recorded, if any.
    async fn get_census(&self) -> Result<Option<SealingCensus>, StoreError>;

    /// Succeeds when the store answers (for health).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Opens the configured store. The embedded store starts deleting what
/// expires (every `store.purge_interval_seconds`) until it is dropped.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match config.kind {
        StoreKind::Embedded => {
            let store = embedded::EmbeddedStore::open_with_cache(
                &config.path,
                config.embedded_cache_bytes,
            )?;
            store.spawn_purger(Duration::from_secs(config.purge_interval_seconds.max(1)));
            Arc::new(metered::Metered::new(store, "embedded"))
        }
        StoreKind::Dynamodb => Arc::new(metered::Metered::new(
            dynamodb::DynamoStore::connect(config).await,
            "dynamodb",
        )),
    })
}

/// Now, in the unix seconds records are kept in.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
