//! Who a caller is: read once per connection from its verified client
//! certificate, or per call from a service token authd verified.

use std::fmt;

use x509_parser::{certificate::X509Certificate, extensions::GeneralName, prelude::FromDer};

/// A caller's identity, as `[[callers]]` entries name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The one `spiffe://` URI SAN of an X509-SVID.
    Spiffe(String),
    /// The first DNS SAN of a certificate without a SPIFFE ID.
    Dns(String),
    /// The subject CN of a certificate with neither.
    CommonName(String),
    /// The subject of a service access token authd verified.
    Token {
        /// `sub`.
        subject: String,
        /// The token's scopes and permissions, which entries with a
        /// `permission` match.
        permissions: Vec<String>,
    },
}

impl Identity {
    /// Whether the `[[callers]]` identity `pattern` names this caller:
    /// exactly, or as a SPIFFE prefix ending in `/` (a trust domain or a
    /// path).
    pub fn matches(&self, pattern: &str) -> bool {
        match self {
            Identity::Spiffe(id) => {
                id == pattern
                    || (pattern.starts_with(SPIFFE)
                        && pattern.ends_with('/')
                        && id.starts_with(pattern))
            }
            Identity::Dns(name) => pattern.strip_prefix("dns:") == Some(name.as_str()),
            Identity::CommonName(name) => pattern.strip_prefix("cn:") == Some(name.as_str()),
            Identity::Token { subject, .. } => {
                pattern.strip_prefix("token:") == Some(subject.as_str())
            }
        }
    }

    /// Whether this is a service token carrying `permission`.
    pub fn holds(&self, permission: &str) -> bool {
        match self {
            Identity::Token { permissions, .. } => permissions.iter().any(|p| p == permission),
            _ => false,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Spiffe(id) => f.write_str(id),
            Identity::Dns(name) => write!(f, "dns:{name}"),
            Identity::CommonName(name) => write!(f, "cn:{name}"),
            Identity::Token { subject, .. } => write!(f, "token:{subject}"),
        }
    }
}

const SPIFFE: &str = "spiffe://";

/// Why a certificate names no usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Not a parsable X.509 certificate.
    #[error("the certificate does not parse: {0}")]
    Unparsable(String),
    /// An X509-SVID has exactly one SPIFFE ID.
    #[error("the certificate has {0} spiffe:// URI SANs; an X509-SVID has exactly one")]
    SeveralSpiffeIds(usize),
    /// No SPIFFE ID, DNS SAN or subject CN.
    #[error("the certificate names no SPIFFE ID, DNS name or common name")]
    Anonymous,
}

/// The identity a client certificate (DER) proves: its SPIFFE ID when it
/// has exactly one `spiffe://` URI SAN (more than one is refused, as the
/// X509-SVID specification says), else its first DNS SAN, else its subject
/// CN. The certificate's chain is verified by the TLS handshake, not here.
pub fn from_certificate(der: &[u8]) -> Result<Identity, IdentityError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san.value.general_names.clone(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(IdentityError::Unparsable(e.to_string())),
    };
    let spiffe: Vec<&str> = names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) if uri.get(..SPIFFE.len()) == Some(SPIFFE) => Some(*uri),
            _ => None,
        })
        .collect();
    match spiffe.as_slice() {
        [id] => return Ok(Identity::Spiffe((*id).to_owned())),
        [] => {}
        several => return Err(IdentityError::SeveralSpiffeIds(several.len())),
    }
    let dns = names.iter().find_map(|name| match name {
        GeneralName::DNSName(dns) => Some(*dns),
        _ => None,
    });
    if let Some(dns) = dns {
        return Ok(Identity::Dns(dns.to_owned()));
    }
    cert.subject()
        .iter_common_name()
        .find_map(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .map(|cn| Identity::CommonName(cn.to_owned()))
        .ok_or(IdentityError::Anonymous)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    fn cert(sans: Vec<SanType>, cn: Option<&str>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        let key = KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(s.try_into().expect("uri"))
    }

    fn dns(s: &str) -> SanType {
        SanType::DnsName(s.try_into().expect("dns"))
    }

    #[test]
    fn one_spiffe_uri_is_the_identity_over_dns_and_cn() {
        let der = cert(
            vec![
                dns("api.internal"),
                uri("https://example.com/x"),
                uri("spiffe://prod.example/ns/payments/sa/api"),
            ],
            Some("api"),
        );
        assert_eq!(
            from_certificate(&der),
            Ok(Identity::Spiffe(
                "spiffe://prod.example/ns/payments/sa/api".to_owned()
            ))
        );
    }

    #[test]
    fn two_spiffe_uris_are_refused() {
        let der = cert(
            vec![uri("spiffe://a.example/one"), uri("spiffe://a.example/two")],
            None,
        );
        assert_eq!(
            from_certificate(&der),
            Err(IdentityError::SeveralSpiffeIds(2))
        );
    }

    #[test]
    fn without_spiffe_the_dns_san_then_the_cn() {
        let der = cert(vec![dns("bff.internal")], Some("bff"));
        assert_eq!(
            from_certificate(&der),
            Ok(Identity::Dns("bff.internal".to_owned()))
        );
        let der = cert(vec![], Some("legacy-batch"));
        assert_eq!(
            from_certificate(&der),
            Ok(Identity::CommonName("legacy-batch".to_owned()))
        );
        assert_eq!(
            from_certificate(&cert(vec![], None)),
            Err(IdentityError::Anonymous)
        );
    }

    #[test]
    fn patterns_match_exactly_or_by_spiffe_prefix() {
        let id = Identity::Spiffe("spiffe://prod.example/ns/payments/sa/api".to_owned());
        assert!(id.matches("spiffe://prod.example/ns/payments/sa/api"));
        assert!(id.matches("spiffe://prod.example/"));
        assert!(id.matches("spiffe://prod.example/ns/payments/"));
        assert!(!id.matches("spiffe://prod.example/ns/pay"));
        assert!(!id.matches("spiffe://prod.example"));
        assert!(!id.matches("spiffe://other.example/"));
        assert!(!id.matches("spiffe://prod.example/ns/payments/sa/api/"));
        assert!(Identity::Dns("bff".to_owned()).matches("dns:bff"));
        assert!(!Identity::Dns("bff".to_owned()).matches("cn:bff"));
        let token = Identity::Token {
            subject: "svc@clients".to_owned(),
            permissions: vec!["profiles:read".to_owned()],
        };
        assert!(token.matches("token:svc@clients"));
        assert!(token.holds("profiles:read"));
        assert!(!token.holds("sessions:revoke"));
        assert!(!Identity::Dns("x".to_owned()).holds("profiles:read"));
    }
}
