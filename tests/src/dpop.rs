//! A DPoP client for the tests: a key pair, its thumbprint (`cnf.jkt`) and
//! fresh proofs (RFC 9449 §4.2), each with its own `jti`.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use authd::{dangerous::SigningKey, jwks::Algorithm, jwks::Jwk};
use aws_lc_rs::digest;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};

/// A client's DPoP key.
#[derive(Debug)]
pub struct DpopKey {
    key: SigningKey,
}

impl DpopKey {
    /// A fresh ES256 key.
    pub fn generate() -> Result<DpopKey> {
        Ok(DpopKey {
            key: SigningKey::generate(Algorithm::ES256, "dpop").context("ES256 key")?,
        })
    }

    /// Its RFC 7638 thumbprint, what a token bound to it carries as `cnf.jkt`.
    pub fn jkt(&self) -> Result<String> {
        let jwk: Jwk = serde_json::from_value(self.key.public_jwk())?;
        Ok(jwk.thumbprint()?)
    }

    /// The `cnf` claim binding a token to this key, as the issuer's `claims`
    /// knob takes it.
    pub fn cnf_claims(&self) -> Result<String> {
        Ok(json!({"cnf": {"jkt": self.jkt()?}}).to_string())
    }

    /// A fresh proof for `htm` `htu` with `token`, issued now.
    pub fn proof(&self, htm: &str, htu: &str, token: &str) -> String {
        self.proof_with(htm, htu, token, &[])
    }

    /// [`Self::proof`] with extra claims (`nonce`, or hostile ones).
    pub fn proof_with(&self, htm: &str, htu: &str, token: &str, extra: &[(&str, Value)]) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut claims = json!({
            "jti": format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)),
            "htm": htm,
            "htu": htu,
            "iat": now,
            "ath": URL_SAFE_NO_PAD
                .encode(digest::digest(&digest::SHA256, token.as_bytes()).as_ref()),
        });
        for (name, value) in extra {
            claims[*name] = value.clone();
        }
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.key.public_jwk()});
        self.key.sign_with_header(&header, &claims)
    }
}

/// base64url(SHA-256(`der`)): what a token bound to that certificate
/// carries as `cnf["x5t#S256"]`.
pub fn x5t_s256(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, der).as_ref())
}
