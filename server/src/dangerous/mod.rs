//! Development-only tools that mint tokens. Nothing here is used by
//! `authd serve`: the development issuer exists so that `authd dev`, tests
//! and benchmarks have an issuer with no cloud account. It binds loopback only.

mod dev_issuer;
mod malleate;
mod signer;

pub use dev_issuer::{DEMO_USER, DEV_CLIENT_ID, DevIssuer, DevIssuerError};
pub use malleate::ecdsa_twin;
pub use signer::SigningKey;
