//! Private keys that sign JWTs, for the development issuer, tests and
//! benchmarks.

use std::fmt;

use aws_lc_rs::{
    rand::SystemRandom,
    rsa::KeySize,
    signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::jwks::Algorithm;

enum Private {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A freshly generated signing key with its `kid` and algorithm.
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    private: Private,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Key generation failed in the crypto library.
#[derive(Debug, thiserror::Error)]
#[error("key generation failed")]
pub struct KeyGenerationError;

impl SigningKey {
    /// Generates a key for `alg` (RSA keys are 2048 bits) named `kid`.
    pub fn generate(
        alg: Algorithm,
        kid: impl Into<String>,
    ) -> Result<SigningKey, KeyGenerationError> {
        let private = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => Private::Rsa(
                RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyGenerationError)?,
            ),
            Algorithm::ES256 => Private::Ecdsa(
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| KeyGenerationError)?,
            ),
            Algorithm::ES384 => Private::Ecdsa(
                EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING)
                    .map_err(|_| KeyGenerationError)?,
            ),
            Algorithm::EdDSA => {
                Private::Ed25519(Ed25519KeyPair::generate().map_err(|_| KeyGenerationError)?)
            }
        };
        Ok(SigningKey {
            kid: kid.into(),
            alg,
            private,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm it signs with.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public half as a JWK, with `kid`, `alg` and `use`.
    pub fn public_jwk(&self) -> Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let mut jwk = match &self.private {
            Private::Rsa(pair) => {
                let public = pair.public_key();
                json!({"kty": "RSA", "n": b64(public.modulus().big_endian_without_leading_zero()),
                       "e": b64(public.exponent().big_endian_without_leading_zero())})
            }
            Private::Ecdsa(pair) => {
                let point = pair.public_key().as_ref();
                let len = (point.len() - 1) / 2;
                let crv = if len == 32 { "P-256" } else { "P-384" };
                json!({"kty": "EC", "crv": crv, "x": b64(&point[1..=len]), "y": b64(&point[1 + len..])})
            }
            Private::Ed25519(pair) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())})
            }
        };
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(self.alg.as_str());
        jwk["use"] = json!("sig");
        jwk
    }

    /// Signs `payload` with a standard header (`alg`, `typ`, `kid`).
    pub fn sign(&self, payload: &Value) -> String {
        let header = json!({"alg": self.alg.as_str(), "typ": "JWT", "kid": self.kid});
        self.sign_with_header(&header, payload)
    }

    /// Signs `payload` under any `header` (for hostile-token tests): the
    /// signature is made with this key and algorithm, whatever the header says.
    pub fn sign_with_header(&self, header: &Value, payload: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let signature = self.sign_bytes(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// A raw signature over `message`.
    pub fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.private {
            Private::Rsa(pair) => {
                let encoding: &'static dyn signature::RsaEncoding = match self.alg {
                    Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_SHA256,
                    Algorithm::PS384 => &signature::RSA_PSS_SHA384,
                    Algorithm::PS512 => &signature::RSA_PSS_SHA512,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut out = vec![0; pair.public_modulus_len()];
                // Signing with a freshly generated key only fails on a broken
                // crypto library; an empty signature then simply never verifies.
                if pair.sign(encoding, &rng, message, &mut out).is_err() {
                    out.clear();
                }
                out
            }
            Private::Ecdsa(pair) => pair
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .unwrap_or_default(),
            Private::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
        }
    }
}
