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
    if !scheme.eq_ignore_ascii_case("bearer") {
        return if in_query {
            Err(invalid("more than one credential"))
        } else {
            Ok(Credential::None)
        };
    }
    let token = rest.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(invalid("malformed Bearer credential"));
    }
    if in_query {
        return Err(invalid("the token is in two places"));
    }
    Ok(Credential::Bearer(token))
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
        Ok(Policy {
            required_scopes,
            audience,
            allow_anonymous,
        })
    }
}

/// The HTTP answer to `error`: 401 without `error` for no token, 400
/// `invalid_request`, 403 `insufficient_scope` (naming the route's
/// `required` scopes), 503 when authd cannot decide, else 401
/// `invalid_token` with a description.
pub fn denial(realm: &str, error: &Error, required: &[String]) -> Denial {
    let reason = error.reason();
    let (status, code) = match reason {
        Reason::TokenMissing => (401, None),
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
        headers.push((
            "www-authenticate".to_owned(),
            challenge(realm, code, Some(&description), scope.as_deref()),
        ));
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
