//! A typed Rust client for authd, and tower middleware that protects tonic
//! and HTTP services with it.
//!
//! - [`AuthClient`] (`client.rs`): every `auth.v1` method with domain types,
//!   built by [`AuthClientBuilder`] — several endpoints balanced, TLS and
//!   client certificates, per-call deadlines, retries on `UNAVAILABLE`.
//! - `tls_files.rs`: [`tls::TlsFiles`], TLS and mutual TLS from files that
//!   are read again when they change (rotating workload certificates).
//! - [`AuthError`] and [`ErrorReason`] (`error.rs`): the gRPC code and
//!   authd's reason, decoded from `google.rpc.ErrorInfo`.
//! - [`CacheConfig`] (`cache.rs`): the cache of positive verifications, on
//!   by default and revocation-aware: it answers only while its
//!   WatchRevocations stream is live, and never for a token a received
//!   revocation names (`revoked.rs`: the revocations heard; `watch.rs`: the
//!   task holding the stream).
//! - `middleware`: tower layers for tonic (`tonic-middleware` feature) and
//!   HTTP servers (`http-middleware`, `axum`).
//! - `types.rs`: [`VerifiedToken`], sessions, profiles, device logins, and
//!   [`Secret`], whose `Debug` never prints it.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use authd_client::{AuthClient, ErrorReason};
//!
//! let mut client = AuthClient::connect("http://127.0.0.1:50051").await?;
//! match client.verify_token("eyJ...", &["read:orders"]).await {
//!     Ok(token) => println!("hello {}", token.subject),
//!     Err(e) if e.reason() == Some(ErrorReason::TokenExpired) => println!("refresh first"),
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok(()) }
//! ```

mod cache;
mod client;
mod dpop;
mod error;
#[cfg(any(feature = "tonic-middleware", feature = "http-middleware"))]
pub mod middleware;
mod revoked;
#[cfg(feature = "tls")]
mod tls_files;
mod types;
mod watch;

pub use authd_jose::{binding::Confirmation, key::Algorithm};
pub use cache::{CacheConfig, CacheState};
pub use client::{AuthClient, AuthClientBuilder, RetryPolicy};
pub use dpop::{DpopPolicy, Presented};
pub use error::{AuthError, ErrorReason};
pub use types::{
    DeviceLogin, DeviceLoginState, DevicePoll, NewSession, Profile, RefreshCredential, Refreshed,
    RevokeTarget, Secret, Session, SessionGrant, VerifiedToken,
};

/// TLS settings for [`AuthClientBuilder::tls`] (tonic's, re-exported).
#[cfg(feature = "tls")]
pub mod tls {
    pub use crate::tls_files::TlsFiles;
    pub use tonic::transport::{Certificate, ClientTlsConfig, Identity};
}
