//! Fetching key sets over HTTP: OIDC discovery, then the JWKS document.

use std::{future::Future, pin::Pin, sync::Mutex};

use serde::Deserialize;
use url::Url;

use super::key::Jwk;

/// The largest discovery or JWKS document authd reads.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// A boxed future, so that fetchers can sit behind `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a key set could not be fetched. Logged, never returned to callers.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request failed (connection, timeout).
    #[error("request to {url} failed: {source}")]
    Http {
        /// What was requested.
        url: String,
        /// The client's error.
        source: reqwest::Error,
    },
    /// The server answered with a non-success status.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// What was requested.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The document is too large or not the JSON expected.
    #[error("{url}: {problem}")]
    Document {
        /// What was requested.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// Where an issuer's key set comes from. The HTTP implementation is
/// [`HttpFetcher`]; tests script their own.
pub trait FetchKeys: Send + Sync + 'static {
    /// Fetches the current key set.
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<Jwk>, FetchError>>;
}

#[derive(Deserialize)]
struct KeySetDocument {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    jwks_uri: Url,
}

/// Fetches a key set from an explicit `jwks_uri`, or from the one OIDC
/// discovery names (re-discovered whenever a fetch fails).
#[derive(Debug)]
pub struct HttpFetcher {
    client: reqwest::Client,
    issuer: String,
    discovery: Url,
    explicit: Option<Url>,
    discovered: Mutex<Option<Url>>,
}

impl HttpFetcher {
    /// A fetcher for `issuer`; `client` carries the timeouts.
    pub fn new(
        client: reqwest::Client,
        issuer: String,
        discovery: Url,
        explicit: Option<Url>,
    ) -> Self {
        HttpFetcher {
            client,
            issuer,
            discovery,
            explicit,
            discovered: Mutex::new(None),
        }
    }

    async fn jwks_uri(&self) -> Result<Url, FetchError> {
        if let Some(uri) = &self.explicit {
            return Ok(uri.clone());
        }
        if let Some(uri) = self
            .discovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(uri);
        }
        let doc: DiscoveryDocument = self.get_json(&self.discovery).await?;
        // OpenID Connect Discovery 1.0 §4.3: the document must name the very
        // issuer it was fetched for.
        if doc.issuer != self.issuer {
            return Err(FetchError::Document {
                url: self.discovery.to_string(),
                problem: format!("names issuer {:?}, expected {:?}", doc.issuer, self.issuer),
            });
        }
        *self.discovered.lock().unwrap_or_else(|e| e.into_inner()) = Some(doc.jwks_uri.clone());
        Ok(doc.jwks_uri)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &Url) -> Result<T, FetchError> {
        let http = |source| FetchError::Http {
            url: url.to_string(),
            source,
        };
        let mut response = self
            .client
            .get(url.clone())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(http)?;
        if !response.status().is_success() {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: response.status().as_u16(),
            });
        }
        let too_large = || FetchError::Document {
            url: url.to_string(),
            problem: format!("larger than {MAX_DOCUMENT_BYTES} bytes"),
        };
        if response
            .content_length()
            .is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(http)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| FetchError::Document {
            url: url.to_string(),
            problem: format!("not the JSON expected: {e}"),
        })
    }

    async fn fetch_keys(&self) -> Result<Vec<Jwk>, FetchError> {
        let uri = self.jwks_uri().await?;
        let result = self.get_json::<KeySetDocument>(&uri).await;
        if result.is_err() {
            // The issuer may have moved its key set: discover again next time.
            *self.discovered.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        // One odd key must not hide the others: keys that do not parse are dropped.
        Ok(result?
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value(value).ok())
            .collect())
    }
}

impl FetchKeys for HttpFetcher {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<Jwk>, FetchError>> {
        Box::pin(self.fetch_keys())
    }
}

/// A fixed key set, for embedding authd's verifier where the keys are known
/// ahead (benchmarks, offline tools).
#[derive(Debug, Clone)]
pub struct StaticKeys(pub Vec<Jwk>);

impl FetchKeys for StaticKeys {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<Jwk>, FetchError>> {
        let keys = self.0.clone();
        Box::pin(async move { Ok(keys) })
    }
}
