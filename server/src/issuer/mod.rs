//! Talking to an OpenID Connect issuer over HTTP: discovery, the key set and
//! userinfo (token, revocation and device endpoints come with sessions).
//!
//! Failures are [`IssuerError`]s, logged by callers and mapped to opaque
//! `UNAVAILABLE` / `RESOURCE_EXHAUSTED` answers: an issuer's message never
//! reaches authd's callers.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

use crate::{
    config::IssuerConfig,
    jwks::{BoxFuture, FetchKeys, Jwk},
    secrets::Secret,
};

mod observed;
mod token;

pub use token::{DeviceAuthorization, TokenSet};

/// The largest document authd reads from an issuer.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// The most keys a key set may publish. Issuers publish a handful (Auth0:
/// the current and the next); every key is parsed and kept, so a set of
/// thousands is refused whole and the last good keys keep serving.
const MAX_KEYS: usize = 100;

/// Why a call to the issuer failed.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// The request failed (connection, timeout).
    #[error("request to {url} failed: {source}")]
    Http {
        /// What was requested.
        url: String,
        /// The client's error.
        source: reqwest::Error,
    },
    /// The issuer answered 429.
    #[error("{url} limits the rate (retry after {retry_after:?})")]
    RateLimited {
        /// What was requested.
        url: String,
        /// `Retry-After`, when given in seconds.
        retry_after: Option<Duration>,
    },
    /// The issuer refused the credential (401/403).
    #[error("{url} refused the credential (HTTP {status})")]
    Refused {
        /// What was requested.
        url: String,
        /// The status code.
        status: u16,
    },
    /// Any other non-success status.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// What was requested.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The document is too large, not the JSON expected, or inconsistent.
    #[error("{url}: {problem}")]
    Document {
        /// What was requested.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The issuer does not offer this endpoint.
    #[error("the issuer has no {0} endpoint")]
    NoEndpoint(&'static str),
    /// The token endpoint refused the grant with an OAuth error code
    /// (`invalid_grant`, `authorization_pending`, ...).
    #[error("{url} refused the grant: {error}")]
    Grant {
        /// What was requested.
        url: String,
        /// The OAuth `error`.
        error: String,
    },
}

/// The parts of an OIDC discovery document authd uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    /// Must equal the configured issuer.
    pub issuer: String,
    /// The key set.
    pub jwks_uri: Url,
    /// Userinfo, when offered.
    #[serde(default)]
    pub userinfo_endpoint: Option<Url>,
    /// The token endpoint, when offered.
    #[serde(default)]
    pub token_endpoint: Option<Url>,
    /// The revocation endpoint (RFC 7009), when offered.
    #[serde(default)]
    pub revocation_endpoint: Option<Url>,
    /// The device authorization endpoint (RFC 8628), when offered.
    #[serde(default)]
    pub device_authorization_endpoint: Option<Url>,
}

#[derive(Deserialize)]
pub(crate) struct KeySetDocument {
    pub(crate) keys: Vec<Value>,
}

/// One issuer's HTTP endpoints, found by discovery (cached; re-discovered
/// after a failure) unless configured explicitly.
#[derive(Debug)]
pub struct IssuerClient {
    http: reqwest::Client,
    issuer: String,
    discovery_url: Url,
    jwks_uri: Option<Url>,
    userinfo_uri: Option<Url>,
    token_uri: Option<Url>,
    revocation_uri: Option<Url>,
    device_uri: Option<Url>,
    oauth_client: Option<(String, Secret)>,
    request_timeout: Duration,
    discovered: Mutex<Option<Arc<Discovery>>>,
}

impl IssuerClient {
    /// A client for `config`'s issuer over `http` (which carries timeouts).
    /// The client secret is read here (environment or file).
    pub fn new(http: reqwest::Client, config: &IssuerConfig) -> Result<Self, String> {
        let oauth_client = match (&config.client_id, &config.client_secret) {
            (Some(id), Some(secret)) => Some((id.clone(), Secret::new(secret.read()?))),
            _ => None,
        };
        Ok(IssuerClient {
            http,
            issuer: config.issuer.clone(),
            discovery_url: config.discovery_url().map_err(|e| e.to_string())?,
            jwks_uri: config.jwks_uri.clone(),
            userinfo_uri: config.userinfo_uri.clone(),
            token_uri: config.token_uri.clone(),
            revocation_uri: config.revocation_uri.clone(),
            device_uri: config.device_authorization_uri.clone(),
            oauth_client,
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            discovered: Mutex::new(None),
        })
    }

    /// The OAuth client id, when sessions are configured for this issuer.
    pub fn client_id(&self) -> Option<&str> {
        self.oauth_client.as_ref().map(|(id, _)| id.as_str())
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, Option<Arc<Discovery>>> {
        self.discovered.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The discovery document, fetched once and kept.
    pub async fn discovery(&self) -> Result<Arc<Discovery>, IssuerError> {
        if let Some(doc) = self.cached().clone() {
            return Ok(doc);
        }
        let doc: Discovery = self
            .observed("discovery", self.get_json(&self.discovery_url, None))
            .await?;
        let doc = Arc::new(check_discovery(doc, &self.issuer, &self.discovery_url)?);
        *self.cached() = Some(Arc::clone(&doc));
        Ok(doc)
    }

    fn forget_discovery(&self) {
        *self.cached() = None;
    }

    /// The current key set. Keys that do not parse are dropped, so that one
    /// odd key does not hide the others.
    pub async fn key_set(&self) -> Result<Vec<Jwk>, IssuerError> {
        let uri = match &self.jwks_uri {
            Some(uri) => uri.clone(),
            None => self.discovery().await?.jwks_uri.clone(),
        };
        let result = self
            .observed("jwks", self.get_json::<KeySetDocument>(&uri, None))
            .await;
        if result.is_err() {
            // The issuer may have moved its key set: discover again next time.
            self.forget_discovery();
        }
        keys_of(result?, &uri)
    }

    /// The claims userinfo returns for the holder of `access_token`.
    pub async fn userinfo(&self, access_token: &str) -> Result<Map<String, Value>, IssuerError> {
        let uri = match &self.userinfo_uri {
            Some(uri) => uri.clone(),
            None => self
                .discovery()
                .await?
                .userinfo_endpoint
                .clone()
                .ok_or(IssuerError::NoEndpoint("userinfo"))?,
        };
        self.observed("userinfo", self.get_json(&uri, Some(access_token)))
            .await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &Url,
        bearer: Option<&str>,
    ) -> Result<T, IssuerError> {
        let mut request = self
            .http
            .get(url.clone())
            .header("accept", "application/json");
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|source| IssuerError::Http {
            url: url.to_string(),
            source,
        })?;
        read_json(url, response).await
    }
}

/// OpenID Connect Discovery 1.0 §4.3: the document fetched from `url` must
/// name the very issuer it was fetched for.
pub(crate) fn check_discovery(
    doc: Discovery,
    issuer: &str,
    url: &Url,
) -> Result<Discovery, IssuerError> {
    if doc.issuer != issuer {
        return Err(IssuerError::Document {
            url: url.to_string(),
            problem: format!("names issuer {:?}, expected {issuer:?}", doc.issuer),
        });
    }
    Ok(doc)
}

/// The JWKs of a key set fetched from `url`: at most [`MAX_KEYS`] members,
/// and members that are not JWKs dropped, so that one odd key does not hide
/// the others.
pub(crate) fn keys_of(document: KeySetDocument, url: &Url) -> Result<Vec<Jwk>, IssuerError> {
    if document.keys.len() > MAX_KEYS {
        return Err(IssuerError::Document {
            url: url.to_string(),
            problem: format!(
                "the key set has {} keys, over the limit of {MAX_KEYS}",
                document.keys.len()
            ),
        });
    }
    Ok(document
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value(value).ok())
        .collect())
}

/// Checks the status and reads a bounded JSON body.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    url: &Url,
    mut response: reqwest::Response,
) -> Result<T, IssuerError> {
    let status = response.status();
    let url_text = || url.to_string();
    match status.as_u16() {
        200..=299 => {}
        429 => {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(IssuerError::RateLimited {
                url: url_text(),
                retry_after,
            });
        }
        401 | 403 => {
            return Err(IssuerError::Refused {
                url: url_text(),
                status: status.as_u16(),
            });
        }
        code => {
            return Err(IssuerError::Status {
                url: url_text(),
                status: code,
            });
        }
    }
    let too_large = || IssuerError::Document {
        url: url_text(),
        problem: format!("larger than {MAX_DOCUMENT_BYTES} bytes"),
    };
    if response
        .content_length()
        .is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|source| IssuerError::Http {
        url: url_text(),
        source,
    })? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| IssuerError::Document {
        url: url_text(),
        problem: format!("not the JSON expected: {e}"),
    })
}

impl FetchKeys for IssuerClient {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<Jwk>, IssuerError>> {
        Box::pin(self.key_set())
    }
}
