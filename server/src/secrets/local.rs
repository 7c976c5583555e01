//! Keys held by authd itself (`[[secrets.keys]]`): AES-256-GCM, values
//! stored as `v1.<key id>.<nonce>.<ciphertext+tag>`.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};

use super::{SealError, SealedSecret, Secret, fields, random_nonce};
use crate::config::SecretKeyConfig;

/// One AES-256-GCM key and its id.
pub(super) struct Key {
    pub(super) id: String,
    pub(super) key: LessSafeKey,
}

impl Key {
    pub(super) fn new(id: &str, bytes: &[u8]) -> Result<Key, ()> {
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

/// The configured local keys; the first (or the primary) seals.
pub struct LocalKeys {
    keys: Vec<Key>,
    primary: usize,
}

impl fmt::Debug for LocalKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<_> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("LocalKeys")
            .field("key_ids", &ids)
            .field("primary", &self.primary_id())
            .finish()
    }
}

impl LocalKeys {
    /// The keys of `[[secrets.keys]]`, `primary` sealing (default: the first).
    pub fn from_config(
        entries: &[SecretKeyConfig],
        primary: Option<&str>,
    ) -> Result<LocalKeys, SealError> {
        let mut keys = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
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
        let primary = match primary {
            Some(id) => keys
                .iter()
                .position(|k| k.id == id)
                .ok_or_else(|| SealError::NoPrimary(id.to_owned()))?,
            None => 0,
        };
        Ok(LocalKeys { keys, primary })
    }

    /// Raw 32-byte keys `(id, key)`; the first seals.
    pub fn from_keys(keys: &[(&str, [u8; 32])]) -> Result<LocalKeys, SealError> {
        let keys = keys
            .iter()
            .enumerate()
            .map(|(i, (id, key))| {
                Key::new(id, key).map_err(|()| SealError::Key(i, "rejected".to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LocalKeys { keys, primary: 0 })
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The ids of the keys.
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.id.clone()).collect()
    }

    /// The id of the key that seals, if any.
    pub fn primary_id(&self) -> Option<&str> {
        self.keys.get(self.primary).map(|k| k.id.as_str())
    }

    /// Encrypts `secret` for the item whose key is `item_key`.
    pub fn seal(&self, secret: &Secret, item_key: &str) -> Result<SealedSecret, SealError> {
        let key = self
            .keys
            .get(self.primary)
            .ok_or_else(|| SealError::NoPrimary(String::new()))?;
        let (nonce, data) = seal_with(&key.key, &aad(&key.id, item_key), secret);
        Ok(SealedSecret(format!(
            "v1.{}.{}.{}",
            key.id,
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(data)
        )))
    }

    /// Decrypts a `v1` value, which must have been sealed for `item_key`.
    pub fn open(&self, sealed: &SealedSecret, item_key: &str) -> Result<Secret, SealError> {
        let [id, nonce, data] = fields(sealed, "v1")?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        open_with(&key.key, &aad(id, item_key), nonce, data)
    }
}

/// AES-256-GCM under a fresh random nonce: `(nonce, ciphertext + tag)`.
pub(super) fn seal_with(
    key: &LessSafeKey,
    aad: &[u8],
    secret: &Secret,
) -> ([u8; NONCE_LEN], Vec<u8>) {
    let nonce = random_nonce();
    let mut data = secret.expose().as_bytes().to_vec();
    #[allow(clippy::expect_used)]
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut data,
    )
    .expect("AES-GCM sealing of an in-memory buffer cannot fail");
    (nonce, data)
}

/// Opens base64url `nonce` and `data` under `key`.
pub(super) fn open_with(
    key: &LessSafeKey,
    aad: &[u8],
    nonce: &str,
    data: &str,
) -> Result<Secret, SealError> {
    let nonce: [u8; NONCE_LEN] = URL_SAFE_NO_PAD
        .decode(nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or(SealError::Corrupt)?;
    let mut data = URL_SAFE_NO_PAD
        .decode(data)
        .map_err(|_| SealError::Corrupt)?;
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut data,
        )
        .map_err(|_| SealError::Corrupt)?;
    String::from_utf8(plain.to_vec())
        .map(Secret::new)
        .map_err(|_| SealError::Corrupt)
}

/// The associated data binds a sealed value to its key id and its item.
fn aad(key_id: &str, item_key: &str) -> Vec<u8> {
    format!("authd/v1|{key_id}|{item_key}").into_bytes()
}
