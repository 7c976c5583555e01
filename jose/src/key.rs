//! Signature algorithms and public keys prepared once per JWK.
//!
//! A key is usable with an algorithm only when three things agree: the
//! issuer's configured algorithms, the key's type (and its own `alg`, when
//! the JWK names one), and the token's `alg`. The token alone never chooses.

use std::fmt;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize, de::IgnoredAny};

/// A JWS signature algorithm authd can verify. Symmetric (`HS*`) and `none`
/// are deliberately absent: a key set holds public keys only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (Auth0's default).
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 9] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// The JOSE name, e.g. `RS256`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Looks a JOSE name up; `None` for anything unsupported (`none`, `HS256`, …).
    /// `Ed25519`, the fully-specified name of RFC 9864 (npm `dpop` and newer
    /// libraries write it), is [`Algorithm::EdDSA`]: the same signature.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        if name == "Ed25519" {
            return Some(Algorithm::EdDSA);
        }
        Algorithm::ALL.into_iter().find(|alg| alg.as_str() == name)
    }

    fn family(self) -> KeyFamily {
        match self {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyFamily::Rsa,
            Algorithm::ES256 => KeyFamily::P256,
            Algorithm::ES384 => KeyFamily::P384,
            Algorithm::EdDSA => KeyFamily::Ed25519,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyFamily {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// One JSON Web Key as published in a key set (RFC 7517). Only the public
/// members authd uses are read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Jwk {
    /// Key type: `RSA`, `EC`, `OKP`.
    pub kty: String,
    /// Key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// The algorithm the key is meant for, when the issuer says.
    #[serde(default)]
    pub alg: Option<String>,
    /// `sig` or `enc`.
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    /// RSA modulus.
    #[serde(default)]
    pub n: Option<String>,
    /// RSA exponent.
    #[serde(default)]
    pub e: Option<String>,
    /// EC or OKP curve.
    #[serde(default)]
    pub crv: Option<String>,
    /// EC x coordinate, or the OKP public key.
    #[serde(default)]
    pub x: Option<String>,
    /// EC y coordinate.
    #[serde(default)]
    pub y: Option<String>,
    /// The operations the key is meant for (RFC 7517 §4.3); when present it
    /// must hold `verify`.
    #[serde(default)]
    pub key_ops: Option<Vec<String>>,
    /// Private members (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`) and the
    /// symmetric `k`: their mere presence makes the JWK unusable.
    #[serde(flatten)]
    private: PrivateMembers,
}

/// The members only a private or symmetric JWK has. Read, never used: a JWK
/// carrying any of them is refused.
#[derive(Debug, Clone, Default, Deserialize)]
struct PrivateMembers {
    #[serde(default)]
    d: Option<IgnoredAny>,
    #[serde(default)]
    p: Option<IgnoredAny>,
    #[serde(default)]
    q: Option<IgnoredAny>,
    #[serde(default)]
    dp: Option<IgnoredAny>,
    #[serde(default)]
    dq: Option<IgnoredAny>,
    #[serde(default)]
    qi: Option<IgnoredAny>,
    #[serde(default)]
    oth: Option<IgnoredAny>,
    #[serde(default)]
    k: Option<IgnoredAny>,
}

impl PrivateMembers {
    fn any(&self) -> bool {
        [
            &self.d, &self.p, &self.q, &self.dp, &self.dq, &self.qi, &self.oth, &self.k,
        ]
        .iter()
        .any(|member| member.is_some())
    }
}

impl Jwk {
    /// Whether the JWK carries a private or symmetric member.
    pub fn has_private_members(&self) -> bool {
        self.private.any()
    }

    /// The RFC 7638 thumbprint: base64url(SHA-256) of the key's required
    /// members, in lexicographic order, as JSON without white space.
    pub fn thumbprint(&self) -> Result<String, KeyError> {
        fn required<'a>(
            value: &'a Option<String>,
            what: &'static str,
        ) -> Result<&'a str, KeyError> {
            value.as_deref().ok_or(KeyError::Invalid(what))
        }
        let json = |text: &str| serde_json::Value::from(text).to_string();
        let canonical = match self.kty.as_str() {
            "RSA" => format!(
                r#"{{"e":{},"kty":"RSA","n":{}}}"#,
                json(required(&self.e, "member e")?),
                json(required(&self.n, "member n")?)
            ),
            "EC" => format!(
                r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
                json(required(&self.crv, "member crv")?),
                json(required(&self.x, "member x")?),
                json(required(&self.y, "member y")?)
            ),
            "OKP" => format!(
                r#"{{"crv":{},"kty":"OKP","x":{}}}"#,
                json(required(&self.crv, "member crv")?),
                json(required(&self.x, "member x")?)
            ),
            _ => return Err(KeyError::NotUsable),
        };
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        Ok(URL_SAFE_NO_PAD.encode(digest.as_ref()))
    }
}

/// Why a JWK cannot be used; such keys are skipped with a log line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The JWK lacks a member or has one of the wrong form.
    #[error("JWK {0}")]
    Invalid(&'static str),
    /// Not a signature key, or none of the configured algorithms fits it.
    #[error("JWK not usable with the configured algorithms")]
    NotUsable,
}

/// A public key parsed once, for every configured algorithm it fits.
pub struct VerifyingKey {
    kid: String,
    prepared: Vec<(Algorithm, ParsedPublicKey)>,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algs: Vec<_> = self.prepared.iter().map(|(alg, _)| alg.as_str()).collect();
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algorithms", &algs)
            .finish()
    }
}

impl VerifyingKey {
    /// Prepares `jwk` for each algorithm in `allowed` that fits it.
    pub fn from_jwk(jwk: &Jwk, allowed: &[Algorithm]) -> Result<VerifyingKey, KeyError> {
        if jwk.has_private_members() {
            return Err(KeyError::Invalid("has a private or symmetric member"));
        }
        if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(KeyError::NotUsable);
        }
        // Project Wycheproof's `rejectWrongKeyOps`: a key published for other
        // operations is not a verification key, whatever its type.
        if jwk
            .key_ops
            .as_ref()
            .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
        {
            return Err(KeyError::NotUsable);
        }
        let kid = jwk.kid.clone().unwrap_or_default();
        let family = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("RSA", _) => KeyFamily::Rsa,
            ("EC", Some("P-256")) => KeyFamily::P256,
            ("EC", Some("P-384")) => KeyFamily::P384,
            ("OKP", Some("Ed25519")) => KeyFamily::Ed25519,
            _ => return Err(KeyError::NotUsable),
        };
        let named = match jwk.alg.as_deref() {
            Some(name) => Some(Algorithm::from_name(name).ok_or(KeyError::NotUsable)?),
            None => None,
        };
        let mut prepared = Vec::new();
        for &alg in allowed {
            if alg.family() != family || named.is_some_and(|named| named != alg) {
                continue;
            }
            prepared.push((alg, prepare(jwk, alg)?));
        }
        if prepared.is_empty() {
            return Err(KeyError::NotUsable);
        }
        Ok(VerifyingKey { kid, prepared })
    }

    /// The key's `kid` (empty when the JWK had none).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Whether the key may verify `alg`.
    pub fn supports(&self, alg: Algorithm) -> bool {
        self.prepared.iter().any(|(a, _)| *a == alg)
    }

    /// Verifies `signature` over `message` with `alg`. `false` when the key is
    /// not prepared for `alg` or the signature is wrong.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        self.prepared
            .iter()
            .find(|(a, _)| *a == alg)
            .is_some_and(|(_, key)| key.verify_sig(message, signature).is_ok())
    }
}

fn member<'a>(value: &'a Option<String>, what: &'static str) -> Result<Vec<u8>, KeyError> {
    let text: &'a str = value.as_deref().ok_or(KeyError::Invalid(what))?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| KeyError::Invalid(what))
}

fn prepare(jwk: &Jwk, alg: Algorithm) -> Result<ParsedPublicKey, KeyError> {
    let rejected = |_| KeyError::Invalid("key material rejected");
    match alg.family() {
        KeyFamily::Rsa => {
            let n = member(&jwk.n, "member n")?;
            let e = member(&jwk.e, "member e")?;
            let params: &'static signature::RsaParameters = match alg {
                Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                _ => &signature::RSA_PSS_2048_8192_SHA512,
            };
            RsaPublicKeyComponents {
                n: strip_zeros(&n),
                e: strip_zeros(&e),
            }
            .to_parsed_public_key(params)
            .map_err(rejected)
        }
        KeyFamily::P256 | KeyFamily::P384 => {
            let x = member(&jwk.x, "member x")?;
            let y = member(&jwk.y, "member y")?;
            let (len, algorithm) = if alg == Algorithm::ES256 {
                (32, &signature::ECDSA_P256_SHA256_FIXED)
            } else {
                (48, &signature::ECDSA_P384_SHA384_FIXED)
            };
            if x.len() != len || y.len() != len {
                return Err(KeyError::Invalid("EC coordinates of the wrong length"));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            ParsedPublicKey::new(algorithm, point).map_err(rejected)
        }
        KeyFamily::Ed25519 => {
            let x = member(&jwk.x, "member x")?;
            if x.len() != 32 {
                return Err(KeyError::Invalid("Ed25519 key of the wrong length"));
            }
            ParsedPublicKey::new(&signature::ED25519, x).map_err(rejected)
        }
    }
}

/// JWKs may carry a leading zero byte on `n`; the RSA parser wants none.
fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}
