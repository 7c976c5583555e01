//! Secrets at rest and in memory.
//!
//! [`Secret`] wraps a value (refresh token, client secret) so that `Debug`
//! and `Display` cannot print it. [`Sealer`] encrypts secrets with
//! AES-256-GCM before they reach a store, authenticated with the item's key
//! as associated data (a sealed value copied onto another item does not
//! open) and tagged with the key id, so keys rotate without losing data.

use std::fmt;

use aws_lc_rs::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    digest,
    rand::{SecureRandom, SystemRandom},
};
use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use serde::{Deserialize, Serialize};

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

/// An encrypted secret as stored: `v1.<key id>.<nonce>.<ciphertext+tag>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedSecret(pub String);

/// Why secrets cannot be sealed or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
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
}

struct Key {
    id: String,
    key: LessSafeKey,
}

/// Seals and opens secrets with the configured keys.
pub struct Sealer {
    keys: Vec<Key>,
    primary: usize,
    rng: SystemRandom,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<_> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Sealer")
            .field("key_ids", &ids)
            .field("primary", &self.keys[self.primary].id)
            .finish()
    }
}

impl Sealer {
    /// The sealer of `config`, or `None` when no key is configured.
    pub fn from_config(config: &SecretsConfig) -> Result<Option<Sealer>, SealError> {
        if config.keys.is_empty() {
            return Ok(None);
        }
        let mut keys = Vec::with_capacity(config.keys.len());
        for (index, entry) in config.keys.iter().enumerate() {
            let fail = |problem: String| SealError::Key(index, problem);
            let encoded = entry.source.read().map_err(fail)?;
            let bytes = STANDARD
                .decode(encoded.trim())
                .map_err(|_| fail("is not base64".to_owned()))?;
            keys.push(
                Key::new(&entry.id, &bytes)
                    .map_err(|()| fail("must be 32 bytes (AES-256)".to_owned()))?,
            );
        }
        let primary = match &config.primary_key_id {
            Some(id) => keys
                .iter()
                .position(|k| &k.id == id)
                .ok_or_else(|| SealError::NoPrimary(id.clone()))?,
            None => 0,
        };
        Ok(Some(Sealer {
            keys,
            primary,
            rng: SystemRandom::new(),
        }))
    }

    /// A sealer over raw 32-byte keys `(id, key)`; the first seals.
    pub fn from_keys(keys: &[(&str, [u8; 32])]) -> Result<Sealer, SealError> {
        let keys = keys
            .iter()
            .enumerate()
            .map(|(i, (id, key))| {
                Key::new(id, key).map_err(|()| SealError::Key(i, "rejected".to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(SealError::NoPrimary(String::new()));
        }
        Ok(Sealer {
            keys,
            primary: 0,
            rng: SystemRandom::new(),
        })
    }

    /// Encrypts `secret` for the item whose key is `item_key`.
    pub fn seal(&self, secret: &Secret, item_key: &str) -> SealedSecret {
        let key = &self.keys[self.primary];
        let mut nonce = [0u8; NONCE_LEN];
        // The OS CSPRNG failing is unrecoverable for a security service.
        #[allow(clippy::expect_used)]
        self.rng
            .fill(&mut nonce)
            .expect("the OS random generator failed");
        let mut data = secret.expose().as_bytes().to_vec();
        #[allow(clippy::expect_used)]
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(&key.id, item_key)),
                &mut data,
            )
            .expect("AES-GCM sealing of an in-memory buffer cannot fail");
        SealedSecret(format!(
            "v1.{}.{}.{}",
            key.id,
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(data)
        ))
    }

    /// Decrypts `sealed`, which must have been sealed for `item_key`.
    pub fn open(&self, sealed: &SealedSecret, item_key: &str) -> Result<Secret, SealError> {
        let mut parts = sealed.0.split('.');
        let (Some("v1"), Some(id), Some(nonce), Some(data), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(SealError::Corrupt);
        };
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        let nonce: [u8; NONCE_LEN] = URL_SAFE_NO_PAD
            .decode(nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(SealError::Corrupt)?;
        let mut data = URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|_| SealError::Corrupt)?;
        let plain = key
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(id, item_key)),
                &mut data,
            )
            .map_err(|_| SealError::Corrupt)?;
        String::from_utf8(plain.to_vec())
            .map(Secret)
            .map_err(|_| SealError::Corrupt)
    }

    /// Whether `sealed` was sealed with an older key and should be re-sealed.
    pub fn needs_reseal(&self, sealed: &SealedSecret) -> bool {
        !sealed
            .0
            .starts_with(&format!("v1.{}.", self.keys[self.primary].id))
    }
}

impl Key {
    fn new(id: &str, bytes: &[u8]) -> Result<Key, ()> {
        if bytes.len() != 32 {
            return Err(());
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| ())?;
        Ok(Key {
            id: id.to_owned(),
            key: LessSafeKey::new(key),
        })
    }
}

/// The associated data binds a sealed value to its key id and its item.
fn aad(key_id: &str, item_key: &str) -> Vec<u8> {
    format!("authd/v1|{key_id}|{item_key}").into_bytes()
}

/// 256 bits from the OS CSPRNG, base64url: a session handle or device id.
pub fn random_handle() -> String {
    let mut bytes = [0u8; 32];
    #[allow(clippy::expect_used)]
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the OS random generator failed");
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

    #[test]
    fn sealed_secret_opens_for_its_item_only() {
        let s = sealer(&[("k1", 1)]);
        let sealed = s.seal(&Secret::new("refresh-token-abc"), "SESSION#1");
        assert!(!sealed.0.contains("refresh-token-abc"));
        assert_eq!(
            s.open(&sealed, "SESSION#1").expect("opens").expose(),
            "refresh-token-abc"
        );
        assert_eq!(s.open(&sealed, "SESSION#2"), Err(SealError::Corrupt));
    }

    #[test]
    fn tampering_is_detected() {
        let s = sealer(&[("k1", 1)]);
        let sealed = s.seal(&Secret::new("x"), "item");
        let mut bytes = sealed.0.into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = SealedSecret(String::from_utf8(bytes).expect("utf8"));
        assert_eq!(s.open(&tampered, "item"), Err(SealError::Corrupt));
        assert_eq!(
            s.open(&SealedSecret("plain".to_owned()), "item"),
            Err(SealError::Corrupt)
        );
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let old = sealer(&[("k1", 1)]);
        let sealed = old.seal(&Secret::new("before rotation"), "item");
        let rotated = sealer(&[("k2", 2), ("k1", 1)]);
        assert_eq!(
            rotated.open(&sealed, "item").expect("old key").expose(),
            "before rotation"
        );
        assert!(rotated.needs_reseal(&sealed));
        let resealed = rotated.seal(&Secret::new("after"), "item");
        assert!(resealed.0.starts_with("v1.k2."));
        assert_eq!(
            old.open(&resealed, "item"),
            Err(SealError::UnknownKey("k2".to_owned()))
        );
    }

    #[test]
    fn nonces_differ_between_seals() {
        let s = sealer(&[("k1", 1)]);
        let a = s.seal(&Secret::new("same"), "item");
        let b = s.seal(&Secret::new("same"), "item");
        assert_ne!(a, b);
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
