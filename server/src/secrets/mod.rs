//! Secrets at rest and in memory.
//!
//! [`Secret`] wraps a value (refresh token, client secret) so that `Debug`
//! and `Display` cannot print it. [`Sealer`] encrypts secrets and profiles
//! with AES-256-GCM before they reach a store, authenticated with the item's
//! key as associated data (a sealed value copied onto another item does not
//! open) and tagged with the key that sealed it, so keys rotate without
//! losing data: [`local`] keys (`[[secrets.keys]]`, values `v1.…`) or
//! envelope encryption under a [`kms`] key (`[secrets] kms_key_id`, values
//! `v2.…`). Every configured key opens what it sealed; one seals.

pub mod kms;
pub mod local;

use std::fmt;

use aws_lc_rs::{
    aead::NONCE_LEN,
    digest,
    rand::{SecureRandom, SystemRandom},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

pub use kms::{Kms, KmsStatus};
pub use local::LocalKeys;

use crate::config::SecretsConfig;

/// A secret value that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("…")
    }
}

/// An encrypted value as stored: `v1.<key id>.<nonce>.<ciphertext+tag>`
/// (a local key) or `v2.<KMS key ARN>.<wrapped data key>.<nonce>.<…>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedSecret(pub String);

impl SealedSecret {
    /// The id of the key that sealed it (a local key id or a KMS key ARN),
    /// as recorded in the value.
    pub fn key_id(&self) -> Option<&str> {
        let mut parts = self.0.split('.');
        match (parts.next(), parts.next()) {
            (Some("v1" | "v2"), Some(id)) if !id.is_empty() => Some(id),
            _ => None,
        }
    }
}

/// The `N` dot-separated fields after `version` (`v1`, `v2`) of a sealed
/// value; anything else is [`SealError::Corrupt`].
fn fields<'a, const N: usize>(
    sealed: &'a SealedSecret,
    version: &str,
) -> Result<[&'a str; N], SealError> {
    let mut parts = sealed.0.split('.');
    if parts.next() != Some(version) {
        return Err(SealError::Corrupt);
    }
    let fields: Vec<&str> = parts.collect();
    <[&str; N]>::try_from(fields).map_err(|_| SealError::Corrupt)
}

/// Why secrets cannot be sealed or opened.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// A configured key cannot be read or is not 32 bytes of base64.
    #[error("secrets.keys[{0}]: {1}")]
    Key(usize, String),
    /// The primary key id names no configured key.
    #[error("secrets.primary_key_id {0:?} names no configured key")]
    NoPrimary(String),
    /// The sealed value names a key that is not configured.
    #[error("sealed with key {0:?}, which is not configured")]
    UnknownKey(String),
    /// Tampered, moved to another item, or not a sealed value.
    #[error("sealed value does not open")]
    Corrupt,
    /// KMS does not answer and no data key held in memory serves.
    #[error("the sealing keys cannot be reached: {0}")]
    Unavailable(String),
}

/// Seals and opens secrets with the configured keys.
#[derive(Debug)]
pub struct Sealer {
    local: LocalKeys,
    kms: Option<Kms>,
}

impl Sealer {
    /// The sealer of `config`, or `None` when no key is configured. A KMS key
    /// is not called here: [`Sealer::warm`] does, off the start-up path.
    pub async fn from_config(config: &SecretsConfig) -> Result<Option<Sealer>, SealError> {
        let local = LocalKeys::from_config(&config.keys, config.primary_key_id.as_deref())?;
        let kms = match &config.kms_key_id {
            Some(key_id) => Some(Kms::connect(config, key_id).await),
            None => None,
        };
        if local.is_empty() && kms.is_none() {
            return Ok(None);
        }
        Ok(Some(Sealer { local, kms }))
    }

    /// A sealer over raw 32-byte local keys `(id, key)`; the first seals.
    pub fn from_keys(keys: &[(&str, [u8; 32])]) -> Result<Sealer, SealError> {
        let local = LocalKeys::from_keys(keys)?;
        if local.is_empty() {
            return Err(SealError::NoPrimary(String::new()));
        }
        Ok(Sealer { local, kms: None })
    }

    /// A sealer whose one key is made now and lives only in this process:
    /// what profiles are sealed with when no key is configured.
    pub fn ephemeral() -> Sealer {
        let mut key = [0u8; 32];
        fill_random(&mut key);
        let id = format!("process-{}", &random_handle()[..8]);
        #[allow(clippy::expect_used)]
        let sealer =
            Sealer::from_keys(&[(id.as_str(), key)]).expect("a fresh 32-byte key is a valid key");
        sealer
    }

    /// Encrypts `secret` for the item whose key is `item_key`, under the KMS
    /// key when one is configured, else the primary local key.
    pub async fn seal(&self, secret: &Secret, item_key: &str) -> Result<SealedSecret, SealError> {
        match &self.kms {
            Some(kms) => kms.seal(secret, item_key).await,
            None => self.local.seal(secret, item_key),
        }
    }

    /// Decrypts `sealed`, which must have been sealed for `item_key`.
    pub async fn open(&self, sealed: &SealedSecret, item_key: &str) -> Result<Secret, SealError> {
        match (sealed.0.get(..3), &self.kms) {
            (Some("v2."), Some(kms)) => kms.open(sealed, item_key).await,
            (Some("v2."), None) => Err(SealError::UnknownKey(
                sealed.key_id().unwrap_or_default().to_owned(),
            )),
            _ => self.local.open(sealed, item_key),
        }
    }

    /// The id of the key new values are sealed under: the KMS key's ARN
    /// (known once KMS answered, see [`Sealer::warm`]) or the primary local
    /// key's id.
    pub fn primary_key_id(&self) -> Option<String> {
        match &self.kms {
            Some(kms) => kms.sealing_key_arn(),
            None => self.local.primary_id().map(str::to_owned),
        }
    }

    /// Whether `sealed` was sealed under another key than the one sealing
    /// now, and should be re-sealed.
    pub fn needs_reseal(&self, sealed: &SealedSecret) -> bool {
        sealed.key_id().map(str::to_owned) != self.primary_key_id()
    }

    /// Asks KMS for the data key that will seal (no-op with local keys).
    pub async fn warm(&self) -> Result<(), SealError> {
        match &self.kms {
            Some(kms) => kms.warm().await,
            None => Ok(()),
        }
    }

    /// The configured local key ids and the KMS key, when configured.
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids = self.local.ids();
        if let Some(arn) = self.kms.as_ref().and_then(Kms::sealing_key_arn) {
            ids.push(arn);
        }
        ids
    }

    /// KMS's state, when a KMS key is configured.
    pub fn kms_status(&self) -> Option<KmsStatus> {
        self.kms.as_ref().map(Kms::status)
    }
}

/// Fills `bytes` from the OS CSPRNG.
fn fill_random(bytes: &mut [u8]) {
    // The OS CSPRNG failing is unrecoverable for a security service.
    #[allow(clippy::expect_used)]
    SystemRandom::new()
        .fill(bytes)
        .expect("the OS random generator failed");
}

/// A fresh AES-GCM nonce.
fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce);
    nonce
}

/// 256 bits from the OS CSPRNG, base64url: a session handle or device id.
pub fn random_handle() -> String {
    let mut bytes = [0u8; 32];
    fill_random(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The SHA-256 of `handle`, hex: how handles are stored.
pub fn hash_handle(handle: &str) -> String {
    let digest = digest::digest(&digest::SHA256, handle.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(keys: &[(&str, u8)]) -> Sealer {
        let keys: Vec<(&str, [u8; 32])> = keys.iter().map(|(id, b)| (*id, [*b; 32])).collect();
        Sealer::from_keys(&keys).expect("sealer")
    }

    async fn seal(s: &Sealer, value: &str, item: &str) -> SealedSecret {
        s.seal(&Secret::new(value), item).await.expect("seals")
    }

    #[tokio::test]
    async fn sealed_secret_opens_for_its_item_only() {
        let s = sealer(&[("k1", 1)]);
        let sealed = seal(&s, "refresh-token-abc", "SESSION#1").await;
        assert!(!sealed.0.contains("refresh-token-abc"));
        assert_eq!(
            s.open(&sealed, "SESSION#1").await.expect("opens").expose(),
            "refresh-token-abc"
        );
        assert_eq!(s.open(&sealed, "SESSION#2").await, Err(SealError::Corrupt));
        assert_eq!(sealed.key_id(), Some("k1"));
    }

    #[tokio::test]
    async fn tampering_is_detected() {
        let s = sealer(&[("k1", 1)]);
        let sealed = seal(&s, "x", "item").await;
        let mut bytes = sealed.0.into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = SealedSecret(String::from_utf8(bytes).expect("utf8"));
        assert_eq!(s.open(&tampered, "item").await, Err(SealError::Corrupt));
        let plain = SealedSecret("plain".to_owned());
        assert_eq!(s.open(&plain, "item").await, Err(SealError::Corrupt));
        assert_eq!(plain.key_id(), None);
    }

    #[tokio::test]
    async fn rotation_keeps_old_values_readable() {
        let old = sealer(&[("k1", 1)]);
        let sealed = seal(&old, "before rotation", "item").await;
        let rotated = sealer(&[("k2", 2), ("k1", 1)]);
        assert_eq!(
            rotated
                .open(&sealed, "item")
                .await
                .expect("old key")
                .expose(),
            "before rotation"
        );
        assert!(rotated.needs_reseal(&sealed));
        let resealed = seal(&rotated, "after", "item").await;
        assert!(resealed.0.starts_with("v1.k2."));
        assert!(!rotated.needs_reseal(&resealed));
        assert_eq!(
            old.open(&resealed, "item").await,
            Err(SealError::UnknownKey("k2".to_owned()))
        );
    }

    #[tokio::test]
    async fn a_kms_value_without_kms_names_its_key() {
        let s = sealer(&[("k1", 1)]);
        let value =
            SealedSecret("v2.arn:aws:kms:eu-west-1:1:key/x.d3JhcHBlZA.bm9uY2U.ZGF0YQ".to_owned());
        assert_eq!(value.key_id(), Some("arn:aws:kms:eu-west-1:1:key/x"));
        assert_eq!(
            s.open(&value, "item").await,
            Err(SealError::UnknownKey(
                "arn:aws:kms:eu-west-1:1:key/x".to_owned()
            ))
        );
    }

    #[tokio::test]
    async fn nonces_differ_between_seals() {
        let s = sealer(&[("k1", 1)]);
        assert_ne!(
            seal(&s, "same", "item").await,
            seal(&s, "same", "item").await
        );
    }

    #[tokio::test]
    async fn an_ephemeral_key_opens_only_in_its_process() {
        let (a, b) = (Sealer::ephemeral(), Sealer::ephemeral());
        let sealed = seal(&a, "profile", "PROFILE#u").await;
        assert_eq!(
            a.open(&sealed, "PROFILE#u").await.expect("opens").expose(),
            "profile"
        );
        assert!(matches!(
            b.open(&sealed, "PROFILE#u").await,
            Err(SealError::UnknownKey(_))
        ));
    }

    #[test]
    fn secrets_do_not_print() {
        let secret = Secret::new("hunter2");
        assert!(!format!("{secret:?} {secret}").contains("hunter2"));
    }

    #[test]
    fn handles_are_random_and_hashed() {
        let (a, b) = (random_handle(), random_handle());
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).expect("b64").len(), 32);
        assert_eq!(hash_handle(&a).len(), 64);
        assert_ne!(hash_handle(&a), a);
    }
}
