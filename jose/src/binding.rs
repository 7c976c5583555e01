//! Sender-constrained tokens: the `Authorization` scheme a token came with,
//! the token's confirmation claim (`cnf`, RFC 7800) and the rule that a bound
//! token is never a bearer token (RFC 9449 §7.2, RFC 8705 §3).

use aws_lc_rs::{constant_time, digest};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::Value;

/// How the protected service received the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// The token alone: the caller stripped the scheme.
    Bare,
    /// `Authorization: Bearer …` (RFC 6750).
    Bearer,
    /// `Authorization: DPoP …` (RFC 9449 §7.1).
    Dpop,
}

/// Splits an `Authorization` value into its scheme (`Bearer`, `DPoP`, any
/// case) and the token, trimmed. A value with no known scheme is the bare
/// token.
pub fn split_authorization(value: &str) -> (Scheme, &str) {
    let value = value.trim();
    for (name, scheme) in [("bearer", Scheme::Bearer), ("dpop", Scheme::Dpop)] {
        if let Some(prefix) = value.get(..name.len())
            && prefix.eq_ignore_ascii_case(name)
            && value[name.len()..]
                .chars()
                .next()
                .is_none_or(char::is_whitespace)
        {
            return (scheme, value[name.len()..].trim_start());
        }
    }
    (Scheme::Bare, value)
}

/// A token's confirmation: what it is bound to. Both members may be present;
/// then the request must prove both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmation {
    /// `cnf.jkt`: the RFC 7638 thumbprint of the client's DPoP key.
    pub jkt: Option<String>,
    /// `cnf["x5t#S256"]`: base64url SHA-256 of the client's certificate.
    pub x5t_s256: Option<String>,
}

/// Why a token's binding is not proven.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct BindingMismatch {
    /// What the token is bound to: `jkt`, `x5t#S256` or `cnf`.
    pub binding: &'static str,
    /// What is wrong, for `ErrorInfo` metadata and logs; never a credential.
    pub problem: &'static str,
}

const fn mismatch(binding: &'static str, problem: &'static str) -> BindingMismatch {
    BindingMismatch { binding, problem }
}

impl Confirmation {
    /// Reads the `cnf` claim. `Ok(None)`: no `cnf`, a bearer token. Anything
    /// authd cannot check — a member other than `jkt` and `x5t#S256` (`jwk`,
    /// `kid`, `jku`, …), a member of the wrong type, an empty `cnf` — refuses
    /// the token: a binding it does not understand must not fall back to
    /// bearer use.
    pub fn from_claim(cnf: Option<&Value>) -> Result<Option<Confirmation>, BindingMismatch> {
        let Some(cnf) = cnf else { return Ok(None) };
        let Value::Object(members) = cnf else {
            return Err(mismatch("cnf", "the cnf claim is not an object"));
        };
        let mut confirmation = Confirmation::default();
        for (name, value) in members {
            let (slot, what) = match name.as_str() {
                "jkt" => (&mut confirmation.jkt, "jkt"),
                "x5t#S256" => (&mut confirmation.x5t_s256, "x5t#S256"),
                _ => {
                    return Err(mismatch(
                        "cnf",
                        "the cnf claim has a member authd cannot check",
                    ));
                }
            };
            match value {
                Value::String(text) if !text.is_empty() => *slot = Some(text.clone()),
                _ => return Err(mismatch(what, "the cnf member is not a non-empty string")),
            }
        }
        if confirmation.jkt.is_none() && confirmation.x5t_s256.is_none() {
            return Err(mismatch("cnf", "the cnf claim is empty"));
        }
        Ok(Some(confirmation))
    }
}

/// Checks the parts of a binding that need no DPoP proof: the scheme against
/// the token's kind, and the client certificate against `x5t#S256`.
/// `with_proof`: the request carried a `DPoP` header. When this passes and
/// the token has a `jkt`, the caller must still check the proof and compare
/// its key's thumbprint with [`check_thumbprint`].
pub fn check_presentation(
    confirmation: Option<&Confirmation>,
    scheme: Scheme,
    with_proof: bool,
    client_certificate: Option<&[u8]>,
) -> Result<(), BindingMismatch> {
    let jkt = confirmation.and_then(|c| c.jkt.as_deref());
    match (scheme, jkt) {
        (Scheme::Dpop, None) => {
            return Err(mismatch(
                "jkt",
                "the DPoP scheme with a token that is not DPoP-bound",
            ));
        }
        (Scheme::Bare, None) if with_proof => {
            return Err(mismatch(
                "jkt",
                "a DPoP proof with a token that is not DPoP-bound",
            ));
        }
        (Scheme::Bearer, Some(_)) => {
            return Err(mismatch(
                "jkt",
                "a DPoP-bound token sent with the Bearer scheme",
            ));
        }
        (_, Some(_)) if !with_proof => {
            return Err(mismatch("jkt", "a DPoP-bound token without a DPoP proof"));
        }
        _ => {}
    }
    if let Some(expected) = confirmation.and_then(|c| c.x5t_s256.as_deref()) {
        let Some(der) = client_certificate.filter(|der| !der.is_empty()) else {
            return Err(mismatch(
                "x5t#S256",
                "a certificate-bound token without the client's certificate",
            ));
        };
        let presented = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, der).as_ref());
        if constant_time::verify_slices_are_equal(presented.as_bytes(), expected.as_bytes())
            .is_err()
        {
            return Err(mismatch(
                "x5t#S256",
                "the client certificate is not the one the token is bound to",
            ));
        }
    }
    Ok(())
}

/// Checks that the DPoP proof's key is the one the token is bound to.
pub fn check_thumbprint(
    confirmation: &Confirmation,
    proof_thumbprint: &str,
) -> Result<(), BindingMismatch> {
    match confirmation.jkt.as_deref() {
        Some(jkt)
            if constant_time::verify_slices_are_equal(
                jkt.as_bytes(),
                proof_thumbprint.as_bytes(),
            )
            .is_ok() =>
        {
            Ok(())
        }
        _ => Err(mismatch(
            "jkt",
            "the DPoP proof is signed by another key than the token is bound to",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schemes_are_split_in_any_case() {
        assert_eq!(
            split_authorization("Bearer a.b.c"),
            (Scheme::Bearer, "a.b.c")
        );
        assert_eq!(
            split_authorization(" bearer   a.b.c "),
            (Scheme::Bearer, "a.b.c")
        );
        assert_eq!(split_authorization("DPoP a.b.c"), (Scheme::Dpop, "a.b.c"));
        assert_eq!(split_authorization("dpop\ta.b.c"), (Scheme::Dpop, "a.b.c"));
        assert_eq!(split_authorization("a.b.c"), (Scheme::Bare, "a.b.c"));
        assert_eq!(
            split_authorization("DPoPa.b.c"),
            (Scheme::Bare, "DPoPa.b.c")
        );
        assert_eq!(split_authorization("Bearer"), (Scheme::Bearer, ""));
    }

    #[test]
    fn unknown_or_odd_confirmations_refuse_the_token() {
        assert_eq!(Confirmation::from_claim(None), Ok(None));
        for cnf in [
            json!({"jwk": {"kty": "EC"}}),
            json!({"jkt": "abc", "kid": "k"}),
            json!({}),
            json!("jkt"),
            json!({"jkt": 7}),
            json!({"jkt": ""}),
        ] {
            assert!(Confirmation::from_claim(Some(&cnf)).is_err(), "{cnf}");
        }
        let both = json!({"jkt": "j", "x5t#S256": "x"});
        assert_eq!(
            Confirmation::from_claim(Some(&both)),
            Ok(Some(Confirmation {
                jkt: Some("j".into()),
                x5t_s256: Some("x".into())
            }))
        );
    }

    #[test]
    fn a_bound_token_is_never_a_bearer_token() {
        let dpop = Confirmation {
            jkt: Some("j".into()),
            x5t_s256: None,
        };
        for (scheme, proof) in [
            (Scheme::Bearer, false),
            (Scheme::Bearer, true),
            (Scheme::Bare, false),
            (Scheme::Dpop, false),
        ] {
            assert!(
                check_presentation(Some(&dpop), scheme, proof, None).is_err(),
                "{scheme:?} {proof}"
            );
        }
        assert!(check_presentation(Some(&dpop), Scheme::Dpop, true, None).is_ok());
        assert!(check_presentation(Some(&dpop), Scheme::Bare, true, None).is_ok());
        assert!(check_thumbprint(&dpop, "j").is_ok());
        assert!(check_thumbprint(&dpop, "k").is_err());

        // The DPoP scheme (or a proof with a bare token) needs a DPoP-bound token.
        assert!(check_presentation(None, Scheme::Dpop, true, None).is_err());
        assert!(check_presentation(None, Scheme::Bare, true, None).is_err());
        assert!(check_presentation(None, Scheme::Bearer, true, None).is_ok());
        assert!(check_presentation(None, Scheme::Bare, false, None).is_ok());
    }

    #[test]
    fn certificate_bound_tokens_need_that_certificate() {
        let der = b"certificate bytes";
        let x5t = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, der).as_ref());
        let bound = Confirmation {
            jkt: None,
            x5t_s256: Some(x5t),
        };
        assert!(check_presentation(Some(&bound), Scheme::Bearer, false, Some(der)).is_ok());
        assert!(check_presentation(Some(&bound), Scheme::Bearer, false, None).is_err());
        assert!(check_presentation(Some(&bound), Scheme::Bearer, false, Some(b"")).is_err());
        assert!(check_presentation(Some(&bound), Scheme::Bearer, false, Some(b"other")).is_err());
        // The DPoP scheme does not fit a token bound to a certificate only.
        assert!(check_presentation(Some(&bound), Scheme::Dpop, true, Some(der)).is_err());
    }
}
