//! Where key sets come from.

use std::{future::Future, pin::Pin};

use authd_jose::key::Jwk;

/// A boxed future, so that fetchers can sit behind `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a key set could not be fetched; logged, never returned to callers.
pub type FetchError = crate::issuer::IssuerError;

/// Where an issuer's key set comes from: [`crate::issuer::IssuerClient`]
/// over HTTP, [`StaticKeys`], or a test's scripted fetcher.
pub trait FetchKeys: Send + Sync + 'static {
    /// Fetches the current key set.
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<Jwk>, FetchError>>;
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
