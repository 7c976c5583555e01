//! Entry points for the fuzz targets in `fuzz/` (cargo feature `fuzzing`,
//! off by default): authd's parsers of untrusted input, reached without a
//! server, a runtime or HTTP. Everything else the targets drive (the
//! [`crate::Verifier`], [`crate::secrets::Sealer`], [`crate::Config`]) is
//! public already.

use url::Url;

use crate::{
    error::Error,
    issuer::{Discovery, IssuerError, KeySetDocument, check_discovery, keys_of},
    jwks::{Algorithm, Jwk, KeyError, VerifyingKey},
    verify::token,
};

/// What [`parse_token`] read from a token it did not refuse.
#[derive(Debug)]
pub struct ParsedToken<'a> {
    /// The header's `alg`, as written.
    pub alg: String,
    /// The header's `kid`.
    pub kid: Option<String>,
    /// The `iss` claim.
    pub iss: String,
    /// What the signature covers: `header.payload`, borrowed from the token.
    pub signing_input: &'a [u8],
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// The untrusted JWT parser of the verify path (`verify/token.rs`): shape,
/// header safety, claim types and duplicates; no signature check.
pub fn parse_token(token: &str) -> Result<ParsedToken<'_>, Error> {
    let parsed = token::parse(token)?;
    Ok(ParsedToken {
        alg: parsed.header.alg,
        kid: parsed.header.kid,
        iss: parsed.claims.iss,
        signing_input: parsed.signing_input,
        signature: parsed.signature,
    })
}

/// One member of a key set: the JWK as read, and the key prepared from it.
pub type PreparedJwk = (Jwk, Result<VerifyingKey, KeyError>);

/// A JWKS document read as [`crate::issuer::IssuerClient::key_set`] reads
/// it (at most 100 members, those that are not JWKs dropped), then each key
/// prepared as the key set does it, for `allowed`. `None` when the document
/// is refused.
pub fn parse_key_set(document: &[u8], allowed: &[Algorithm]) -> Option<Vec<PreparedJwk>> {
    let doc: KeySetDocument = serde_json::from_slice(document).ok()?;
    let keys = keys_of(doc, &fuzz_url()).ok()?;
    Some(
        keys.into_iter()
            .map(|jwk| {
                let key = VerifyingKey::from_jwk(&jwk, allowed);
                (jwk, key)
            })
            .collect(),
    )
}

fn fuzz_url() -> Url {
    #[allow(clippy::expect_used)]
    Url::parse("https://fuzz.invalid/").expect("a constant URL")
}

/// An OpenID Connect discovery document read as
/// [`crate::issuer::IssuerClient::discovery`] reads it: the JSON, then the
/// rule that it must name the issuer it was fetched for.
pub fn parse_discovery(document: &[u8], issuer: &str) -> Result<Discovery, IssuerError> {
    let doc: Discovery = serde_json::from_slice(document).map_err(|e| IssuerError::Document {
        url: "fuzz".to_owned(),
        problem: format!("not the JSON expected: {e}"),
    })?;
    check_discovery(doc, issuer, &fuzz_url())
}
