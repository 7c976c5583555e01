//! authd: a gRPC authentication service in front of Auth0 and other OpenID
//! Connect issuers.
//!
//! - [`config`]: typed configuration (TOML + `AUTHD_*` environment).
//! - [`jwks`]: issuers' key sets — discovery, fetching, rotation, staleness.
//! - [`verify`]: the VerifyToken pipeline, free of protobuf types.
//! - [`dpop`]: sender-constrained tokens on that pipeline — the binding
//!   check, the replica's DPoP replay cache and server nonces (the proof
//!   checks themselves are the `authd-jose` crate's, shared with the client).
//! - [`issuer`]: HTTP calls to an issuer (discovery, JWKS, userinfo).
//! - [`store`]: profiles and sessions — one trait, embedded and DynamoDB.
//! - [`session`]: sessions — create, refresh (single-flight, leases), revoke.
//! - [`revocation`]: the revocation set VerifyToken checks, fed by every replica;
//!   `revocation/watch.rs`: WatchRevocations, the stream of it to callers
//!   that cache answers ([`revocation::Watchers`]).
//! - [`logout`]: OpenID Connect back-channel logout — the issuer ends a
//!   session, authd revokes it everywhere (`POST /backchannel-logout`, HTTP/1.1
//!   on authd's port).
//! - [`secrets`]: secrets that never print, sealed at rest (AES-256-GCM)
//!   under local keys or KMS data keys (envelope encryption).
//! - [`reseal`]: `authd store reseal` — re-seals every value under the key
//!   sealing now and counts the values each key still seals.
//! - [`ext_authz`]: Envoy's external authorization as HTTP decisions
//!   (RFC 6750 answers), free of protobuf types.
//! - [`callers`]: caller identities (client certificates, service tokens)
//!   and the `[[callers]]` policy per RPC, one tower layer.
//! - [`connect`]: the Connect protocol (JSON or binary over HTTP/1.1 and
//!   HTTP/2) and gRPC-Web on the same port, each request a gRPC call to the
//!   same routes in-process; `authd openapi`'s document of the JSON surface.
//! - [`grpc`]: thin tonic handlers and the one error → status mapping.
//! - [`server`]: wiring, health, reflection, graceful shutdown.
//! - [`observe`]: the `[metrics]` listener — Prometheus `/metrics`,
//!   `/healthz`, `/readyz` — and the layer measuring every gRPC call.
//! - `transport`: the listener under `[limits]` — connections, handshake,
//!   streams, idle and keep-alive, calls in flight, message sizes, deadlines;
//!   TLS and mutual TLS with certificates reloaded from disk (`transport/tls.rs`).
//! - [`dangerous`]: the loopback development issuer behind `authd dev`.
//! - [`error`]: the domain error and its stable reasons.

pub mod callers;
pub mod config;
pub mod connect;
pub mod dangerous;
pub mod dpop;
pub mod error;
pub mod ext_authz;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod grpc;
pub mod issuer;
pub mod jwks;
pub mod logout;
pub mod observe;
pub mod profile;
pub mod reseal;
pub mod revocation;
pub mod secrets;
pub mod server;
pub mod session;
pub mod store;
pub mod telemetry;
mod transport;
pub mod verify;

pub use config::Config;
pub use error::{Error, Reason};
pub use server::{App, run};
pub use transport::listen;
pub use verify::{VerifiedToken, Verifier, VerifyRequest};
