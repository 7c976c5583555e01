//! The HTTP side of a check: the credential a request carries (RFC 6750 §2),
//! the route's policy, and the answer (RFC 6750 §3).

use std::collections::HashMap;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

use super::{Denial, REASON_HEADER};
use crate::{
    config::ExtAuthzConfig,
    error::{Error, Reason},
    verify::VerifiedToken,
};

/// The credential of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// No bearer token (no `authorization` header, or another scheme).
    None,
    /// The token of `Authorization: Bearer <token>`.
    Bearer(&'a str),
    /// The token of `Authorization: DPoP <token>` (RFC 9449 §7.1).
    Dpop(&'a str),
}

/// Finds the bearer token of a request: the `authorization` header, scheme
/// `Bearer` in any case. More than one credential (Envoy joins repeated
/// headers with `,`), or a token also in the URI query (`access_token`), is
/// an invalid request; so is a token only in the query, which authd does not
/// accept (URIs end up in logs).
pub fn credential<'a>(
    headers: &'a HashMap<String, String>,
    path: &str,
) -> Result<Credential<'a>, Error> {
    let in_query = path
        .split_once('?')
        .map(|(_, query)| {
            query
                .split('&')
                .any(|pair| pair.split('=').next() == Some("access_token"))
        })
        .unwrap_or(false);
    let Some(value) = headers.get("authorization") else {
        return if in_query {
            Err(invalid(
                "send the token in the Authorization header, not the URI",
            ))
        } else {
            Ok(Credential::None)
        };
    };
    if value.contains(',') {
        return Err(invalid("more than one credential"));
    }
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let dpop = scheme.eq_ignore_ascii_case("dpop");
    if !dpop && !scheme.eq_ignore_ascii_case("bearer") {
        return if in_query {
            Err(invalid("more than one credential"))
        } else {
            Ok(Credential::None)
        };
    }
    let token = rest.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(invalid(if dpop {
            "malformed DPoP credential"
        } else {
            "malformed Bearer credential"
        }));
    }
    if in_query {
        return Err(invalid("the token is in two places"));
    }
    Ok(if dpop {
        Credential::Dpop(token)
    } else {
        Credential::Bearer(token)
    })
}

/// The target URI a DPoP proof must name (`htu`), from what Envoy reports
/// of the request: its scheme, its host (which must be one of `hosts`, the
/// route's configured ones) and its path without the query. Never from
/// `X-Forwarded-*`, which any client can send.
pub fn dpop_target(
    scheme: &str,
    host: &str,
    path: &str,
    hosts: &[String],
) -> Result<String, Error> {
    let refused = |detail| Error::DpopProofInvalid {
        problem: "htu",
        detail,
    };
    let scheme = if scheme.is_empty() { "https" } else { scheme };
    if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
        return Err(refused("the request's scheme is not http or https"));
    }
    // A listed host matches the request's with or without the scheme's
    // default port.
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else {
        ":80"
    };
    let bare = host.strip_suffix(default_port).unwrap_or(host);
    let listed = hosts
        .iter()
        .any(|listed| listed.eq_ignore_ascii_case(host) || listed.eq_ignore_ascii_case(bare));
    if !listed {
        return Err(refused(
            "the request's host is not one of the route's dpop_hosts",
        ));
    }
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return Err(refused("the request's path is not absolute"));
    }
    Ok(format!("{}://{host}{path}", scheme.to_ascii_lowercase()))
}

/// The client certificate Envoy forwards (`source.certificate`: PEM,
/// URL-encoded) as DER; `None` when there is none.
pub fn peer_certificate(url_encoded_pem: &str) -> Result<Option<Vec<u8>>, Error> {
    if url_encoded_pem.is_empty() {
        return Ok(None);
    }
    let unusable = || Error::InvalidRequest {
        field: "source.certificate",
        problem: "not a URL-encoded PEM certificate".to_owned(),
    };
    let pem = percent_encoding::percent_decode_str(url_encoded_pem).collect::<Vec<u8>>();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).map_err(|_| unusable())?;
    if pem.label != "CERTIFICATE" {
        return Err(unusable());
    }
    Ok(Some(pem.contents))
}

fn invalid(problem: &str) -> Error {
    Error::InvalidRequest {
        field: "authorization",
        problem: problem.to_owned(),
    }
}

/// What a route asks of a request: the `[ext_authz]` defaults, overridden
/// by the route's `context_extensions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Scopes (or permissions) the token must hold.
    pub required_scopes: Vec<String>,
    /// The audience the token must carry.
    pub audience: Option<String>,
    /// Whether a request without a token passes.
    pub allow_anonymous: bool,
    /// The hosts a DPoP proof's `htu` may name.
    pub dpop_hosts: Vec<String>,
}

impl Policy {
    /// The policy of a route: `required_scopes` (space-separated),
    /// `audience` and `allow_anonymous` (`true` or `false`) from its
    /// `context_extensions`, else the configured defaults. Another value of
    /// `allow_anonymous` is the operator's mistake, answered as an internal
    /// error (so Envoy's failure mode applies), never guessed.
    pub fn of_route(
        config: &ExtAuthzConfig,
        context: &HashMap<String, String>,
    ) -> Result<Policy, Error> {
        let required_scopes = match context.get("required_scopes") {
            Some(scopes) => scopes.split_whitespace().map(str::to_owned).collect(),
            None => config.required_scopes.clone(),
        };
        let audience = match context.get("audience").map(|a| a.trim()) {
            Some("") => None,
            Some(audience) => Some(audience.to_owned()),
            None => config.audience.clone(),
        };
        let allow_anonymous = match context.get("allow_anonymous").map(|a| a.trim()) {
            None => config.allow_anonymous,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(_) => {
                tracing::warn!("context_extensions allow_anonymous is neither true nor false");
                return Err(Error::Internal(
                    "context_extensions allow_anonymous is neither true nor false".to_owned(),
                ));
            }
        };
        let dpop_hosts = match context.get("dpop_hosts") {
            Some(hosts) => hosts.split_whitespace().map(str::to_owned).collect(),
            None => config.dpop_hosts.clone(),
        };
        Ok(Policy {
            required_scopes,
            audience,
            allow_anonymous,
            dpop_hosts,
        })
    }
}

/// The HTTP answer to `error`: 401 without `error` for no token, 400
/// `invalid_request`, 403 `insufficient_scope` (naming the route's
/// `required` scopes), 503 when authd cannot decide, else 401
/// `invalid_token` with a description.
///
/// A request that used DPoP (the `DPoP` scheme or a `DPoP` header; `dpop_algs`
/// holds the proof algorithms accepted) is answered with a `DPoP` challenge
/// instead (RFC 9449 §7.1): `invalid_dpop_proof` for a bad or replayed proof,
/// `use_dpop_nonce` with a `DPoP-Nonce` header when a nonce is required,
/// `invalid_token` for the token itself.
pub fn denial(realm: &str, error: &Error, required: &[String], dpop_algs: Option<&str>) -> Denial {
    let reason = error.reason();
    let dpop_algs = dpop_algs.or(match reason {
        Reason::DpopProofInvalid | Reason::DpopProofReplayed | Reason::DpopNonceRequired => {
            Some("")
        }
        _ => None,
    });
    let (status, code) = match reason {
        Reason::TokenMissing => (401, None),
        Reason::DpopProofInvalid | Reason::DpopProofReplayed => (401, Some("invalid_dpop_proof")),
        Reason::DpopNonceRequired => (401, Some("use_dpop_nonce")),
        Reason::InvalidRequest | Reason::MalformedRequest | Reason::RequestTooLarge => {
            (400, Some("invalid_request"))
        }
        Reason::InsufficientScope => (403, Some("insufficient_scope")),
        reason if reason.is_undecided() => (503, None),
        _ => (401, Some("invalid_token")),
    };
    let description = error_description(&error.to_string());
    let mut headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        (REASON_HEADER.to_owned(), reason.as_str().to_owned()),
    ];
    if status < 500 {
        let scope = (reason == Reason::InsufficientScope).then(|| required.join(" "));
        let value = match dpop_algs {
            Some(algs) => dpop_challenge(realm, code, Some(&description), scope.as_deref(), algs),
            None => challenge(realm, code, Some(&description), scope.as_deref()),
        };
        headers.push(("www-authenticate".to_owned(), value));
    }
    if let Error::DpopNonceRequired { nonce } = error {
        headers.push(("dpop-nonce".to_owned(), nonce.clone()));
    }
    let mut body = Map::new();
    if let Some(code) = code {
        body.insert("error".to_owned(), json!(code));
    }
    body.insert("reason".to_owned(), json!(reason.as_str()));
    body.insert("message".to_owned(), json!(description));
    Denial {
        status,
        headers,
        body: Value::Object(body).to_string(),
        reason,
    }
}

/// A `WWW-Authenticate: Bearer` challenge (RFC 6750 §3). Without an
/// `error` code (no token at all) it names the realm only.
pub fn challenge(
    realm: &str,
    error: Option<&str>,
    description: Option<&str>,
    scope: Option<&str>,
) -> String {
    let mut value = format!("Bearer realm=\"{realm}\"");
    if let Some(error) = error {
        value.push_str(&format!(", error=\"{error}\""));
        if let Some(description) = description {
            value.push_str(&format!(", error_description=\"{description}\""));
        }
        if let Some(scope) = scope {
            value.push_str(&format!(", scope=\"{scope}\""));
        }
    }
    value
}

/// A `WWW-Authenticate: DPoP` challenge (RFC 9449 §7.1): the realm, the
/// error and its description, the scope, and `algs`, the proof algorithms
/// accepted.
pub fn dpop_challenge(
    realm: &str,
    error: Option<&str>,
    description: Option<&str>,
    scope: Option<&str>,
    algs: &str,
) -> String {
    let bearer = challenge(realm, error, description, scope);
    let mut value = format!("DPoP{}", &bearer["Bearer".len()..]);
    if !algs.is_empty() {
        value.push_str(&format!(", algs=\"{algs}\""));
    }
    value
}

/// An `error_description` RFC 6750 allows: printable ASCII without `"` or
/// `\`, at most 200 characters.
fn error_description(message: &str) -> String {
    message
        .chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if (' '..='~').contains(&c) => c,
            _ => '?',
        })
        .take(200)
        .collect()
}

/// Every verified claim as one JSON object.
pub fn claims_json(token: &VerifiedToken) -> Value {
    let mut claims = token.claims.clone();
    claims.insert("sub".to_owned(), json!(token.subject));
    claims.insert("iss".to_owned(), json!(token.issuer));
    claims.insert("aud".to_owned(), json!(token.audiences));
    claims.insert("scope".to_owned(), json!(token.scopes.join(" ")));
    claims.insert("permissions".to_owned(), json!(token.permissions));
    claims.insert("exp".to_owned(), json!(token.expires_at));
    let optional = [
        ("sid", token.session_id.as_ref().map(|v| json!(v))),
        ("jti", token.token_id.as_ref().map(|v| json!(v))),
        ("iat", token.issued_at.map(|v| json!(v))),
        ("azp", token.authorized_party.as_ref().map(|v| json!(v))),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            claims.insert(name.to_owned(), value);
        }
    }
    Value::Object(claims)
}

/// `value` as unpadded base64url JSON, for one header.
pub fn base64url_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// The identity Envoy's RBAC filter and access logs can read from the
/// dynamic metadata (namespace `envoy.filters.http.ext_authz`).
pub fn identity_metadata(token: &VerifiedToken) -> Map<String, Value> {
    let mut metadata = Map::new();
    metadata.insert("subject".to_owned(), json!(token.subject));
    metadata.insert("issuer".to_owned(), json!(token.issuer));
    metadata.insert("audiences".to_owned(), json!(token.audiences));
    metadata.insert("scopes".to_owned(), json!(token.scopes));
    metadata.insert("permissions".to_owned(), json!(token.permissions));
    if let Some(sid) = &token.session_id {
        metadata.insert("session_id".to_owned(), json!(sid));
    }
    metadata
}

#[cfg(test)]
mod tests;
