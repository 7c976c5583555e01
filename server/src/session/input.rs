//! Bounds on the strings a caller hands to the session RPCs, checked before
//! anything is sent to the issuer or stored: no field is forwarded
//! unbounded. The bounds are generous for real values (Auth0 codes and
//! refresh tokens are tens of bytes; RFC 7636 verifiers at most 128).

use crate::error::Error;

/// An authorization code.
pub(super) const MAX_CODE: usize = 2048;
/// A redirect URI.
pub(super) const MAX_URI: usize = 2048;
/// A PKCE code verifier (RFC 7636 §4.1: 43 to 128 characters).
pub(super) const MAX_VERIFIER: usize = 128;
/// A nonce.
pub(super) const MAX_NONCE: usize = 512;
/// A refresh token.
pub(super) const MAX_REFRESH_TOKEN: usize = 4096;
/// An id or access token the caller already holds.
pub(super) const MAX_TOKEN: usize = 16_384;
/// One scope, and how many a device login may ask for.
pub(super) const MAX_SCOPE: usize = 256;
pub(super) const MAX_SCOPES: usize = 32;
/// An audience.
pub(super) const MAX_AUDIENCE: usize = 512;

/// `value` is at most `max` bytes.
pub(super) fn bounded(field: &'static str, value: &str, max: usize) -> Result<(), Error> {
    if value.len() > max {
        return Err(Error::InvalidRequest {
            field,
            problem: format!("is {} bytes, over the limit of {max}", value.len()),
        });
    }
    Ok(())
}

/// `value` is 1 to `max` bytes.
pub(super) fn required(field: &'static str, value: &str, max: usize) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::InvalidRequest {
            field,
            problem: "is required".to_owned(),
        });
    }
    bounded(field, value, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_oversized_values_name_their_field() {
        assert!(required("code", "abc", 3).is_ok());
        let too_long = required("code", "abcd", 3).expect_err("too long");
        assert_eq!(too_long.metadata(), vec![("field", "code".to_owned())]);
        assert!(too_long.to_string().contains("4 bytes"), "{too_long}");
        assert!(required("code", "", 3).is_err());
        assert!(bounded("nonce", "", 3).is_ok());
    }
}
