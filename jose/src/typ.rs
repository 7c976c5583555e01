//! JOSE `typ` values (RFC 7515 §4.1.9): compared without case and without an
//! optional `application/` prefix, and the types that are never an access
//! token whatever an issuer's configuration says.

/// `typ` without its optional `application/` prefix.
pub fn media_type(typ: &str) -> &str {
    match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    }
}

/// Whether `typ` names `name` (its media type without the prefix).
pub fn names(typ: &str, name: &str) -> bool {
    media_type(typ).eq_ignore_ascii_case(name)
}

/// Whether `typ` names a token that is never an access token: a DPoP proof,
/// a back-channel logout token, a security event token. Issuers sign all of
/// these with the same keys as their access tokens.
pub fn never_an_access_token(typ: &str) -> bool {
    ["dpop+jwt", "logout+jwt", "secevent+jwt"]
        .iter()
        .any(|refused| names(typ, refused))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_compare_without_case_or_prefix() {
        assert!(names("application/DPoP+JWT", "dpop+jwt"));
        assert!(names("at+jwt", "AT+JWT"));
        assert!(!names("application/", "dpop+jwt"));
        assert!(never_an_access_token("application/logout+jwt"));
        assert!(never_an_access_token("secevent+jwt"));
        assert!(!never_an_access_token("at+jwt"));
    }
}
