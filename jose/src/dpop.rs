//! DPoP proofs (RFC 9449 §4.2–4.3): every check of a proof presented with an
//! access token, except its freshness (`jti`, see [`crate::replay`]) and a
//! server nonce, which need state the caller keeps.

use aws_lc_rs::digest;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::{
    htu,
    key::{Algorithm, Jwk, VerifyingKey},
};

/// The proof algorithms accepted by default: asymmetric only, ES256 first
/// (what Auth0's and most clients' SDKs use).
pub const DEFAULT_ALGORITHMS: [Algorithm; 5] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::PS256,
    Algorithm::RS256,
    Algorithm::EdDSA,
];

/// The largest proof accepted, in bytes: a 4096-bit RSA key in the header
/// and the claims fit well within it.
pub const MAX_PROOF_BYTES: usize = 8192;

/// The longest `jti` accepted.
pub const MAX_JTI_BYTES: usize = 256;

/// What the verifier accepts of proofs.
#[derive(Debug, Clone, Copy)]
pub struct ProofPolicy<'a> {
    /// The asymmetric algorithms a proof may be signed with.
    pub algorithms: &'a [Algorithm],
    /// How old a proof's `iat` may be, in seconds.
    pub max_age_seconds: u64,
    /// Clock skew allowed on `iat`, both ways, in seconds.
    pub leeway_seconds: u64,
}

impl ProofPolicy<'_> {
    /// The unix second after which a proof issued at `iat` is no longer
    /// accepted: how long its `jti` must be remembered.
    pub fn accepted_until(&self, iat: f64) -> i64 {
        let window = self.max_age_seconds.saturating_add(self.leeway_seconds) as f64;
        // `as` saturates; `ceil` keeps the whole last second.
        (iat + window).ceil() as i64
    }
}

/// The request a proof must be for, as the protected service received it.
#[derive(Debug, Clone, Copy)]
pub struct ProofRequest<'a> {
    /// The HTTP method (`htm`), case-sensitive.
    pub method: &'a str,
    /// The target URI (`htu`); query and fragment are ignored.
    pub uri: &'a str,
    /// The access token presented with the proof (`ath`).
    pub access_token: &'a str,
}

/// A proof that passed every stateless check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedProof {
    /// `jti`, to be accepted once.
    pub jti: String,
    /// The RFC 7638 thumbprint of the proof's key, for `cnf.jkt`.
    pub thumbprint: String,
    /// `iat`, unix seconds (possibly fractional).
    pub issued_at: f64,
    /// `nonce`, when the proof carries one.
    pub nonce: Option<String>,
}

/// Why a proof is refused; the problem names the check, for `ErrorInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid DPoP proof: {problem} ({detail})")]
pub struct ProofError {
    /// The check that failed: `count`, `size`, `format`, `typ`, `alg`,
    /// `jwk`, `signature`, `claims`, `jti`, `htm`, `htu`, `iat` or `ath`.
    pub problem: &'static str,
    /// What was wrong, in words; never the proof itself.
    pub detail: &'static str,
}

const fn refuse(problem: &'static str, detail: &'static str) -> ProofError {
    ProofError { problem, detail }
}

#[derive(Deserialize)]
struct Header {
    typ: Option<String>,
    alg: String,
    jwk: Option<Jwk>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Claims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<f64>,
    ath: Option<String>,
    nonce: Option<String>,
}

/// Checks `proof` (the `DPoP` header value) for `request` as of `now` (unix
/// seconds): one compact JWS, `typ` `dpop+jwt`, an algorithm of `policy`, a
/// public `jwk` that fits it, the signature, `jti`, `htm`, `htu`, `iat`
/// within the window and `ath` over the access token.
pub fn check_proof(
    proof: &str,
    request: &ProofRequest<'_>,
    policy: &ProofPolicy<'_>,
    now: f64,
) -> Result<CheckedProof, ProofError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(refuse("size", "the proof is over 8192 bytes"));
    }
    // Two `DPoP` headers joined by a proxy, or any list: exactly one proof.
    if proof.contains(',') {
        return Err(refuse("count", "more than one DPoP proof"));
    }
    let proof = proof.trim();
    let mut segments = proof.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(refuse("format", "a proof is a JWS with three segments"));
    };
    let decode = |segment: &str| URL_SAFE_NO_PAD.decode(segment).ok();
    let (Some(header_json), Some(claims_json), Some(signature)) = (
        decode(header_b64),
        decode(claims_b64),
        decode(signature_b64),
    ) else {
        return Err(refuse("format", "a segment is not base64url"));
    };
    let header: Header = serde_json::from_slice(&header_json)
        .map_err(|_| refuse("format", "the header is not a JOSE header of a proof"))?;

    if !header
        .typ
        .as_deref()
        .is_some_and(|typ| crate::typ::names(typ, "dpop+jwt"))
    {
        return Err(refuse("typ", "typ must be dpop+jwt"));
    }
    if header.crit.is_some() {
        return Err(refuse(
            "format",
            "no critical header extension is understood",
        ));
    }
    let alg = Algorithm::from_name(&header.alg)
        .filter(|alg| policy.algorithms.contains(alg))
        .ok_or(refuse("alg", "the algorithm is not one allowed for proofs"))?;
    let jwk = header.jwk.ok_or(refuse("jwk", "the header has no jwk"))?;
    if jwk.has_private_members() {
        return Err(refuse("jwk", "the jwk holds a private key"));
    }
    let key = VerifyingKey::from_jwk(&jwk, &[alg])
        .map_err(|_| refuse("jwk", "the jwk is not a public key for the algorithm"))?;
    let thumbprint = jwk
        .thumbprint()
        .map_err(|_| refuse("jwk", "the jwk has no thumbprint"))?;
    let signing_input = &proof.as_bytes()[..header_b64.len() + 1 + claims_b64.len()];
    if !key.verify(alg, signing_input, &signature) {
        return Err(refuse("signature", "the signature does not verify"));
    }

    let claims: Claims = serde_json::from_slice(&claims_json)
        .map_err(|_| refuse("claims", "the claims are not those of a proof"))?;
    let jti = claims
        .jti
        .filter(|jti| !jti.is_empty() && jti.len() <= MAX_JTI_BYTES)
        .ok_or(refuse("jti", "jti is missing, empty or over 256 bytes"))?;
    if claims.htm.as_deref() != Some(request.method) {
        return Err(refuse("htm", "htm is not the request's method"));
    }
    if !claims
        .htu
        .as_deref()
        .is_some_and(|htu| htu::same_target(htu, request.uri))
    {
        return Err(refuse("htu", "htu is not the request's URI"));
    }
    let issued_at = claims.iat.ok_or(refuse("iat", "iat is missing"))?;
    let leeway = policy.leeway_seconds as f64;
    let oldest = now - policy.max_age_seconds as f64 - leeway;
    if issued_at > now + leeway {
        return Err(refuse("iat", "iat is in the future"));
    }
    if issued_at < oldest {
        return Err(refuse("iat", "the proof is too old"));
    }
    let expected_ath = URL_SAFE_NO_PAD
        .encode(digest::digest(&digest::SHA256, request.access_token.as_bytes()).as_ref());
    if claims.ath.as_deref() != Some(expected_ath.as_str()) {
        return Err(refuse("ath", "ath is not the hash of the access token"));
    }
    Ok(CheckedProof {
        jti,
        thumbprint,
        issued_at,
        nonce: claims.nonce,
    })
}
