//! Who is calling, and what they may call.
//!
//! - `identity`: a caller's identity, from its client certificate (SPIFFE
//!   ID, DNS SAN, subject CN) or a service token authd verified.
//! - `policy`: the `[[callers]]` policy per RPC, pure.
//! - `layer`: the tower layer that applies it to every call of the port.

pub mod identity;
mod layer;
pub mod policy;

use std::sync::Arc;

pub use identity::{Identity, IdentityError};
pub use layer::{Guard, PolicyLayer};
pub use policy::{Policy, UnknownRpc};

/// The identity of a connection's verified client certificate, which the
/// transport puts in every request of that connection.
#[derive(Debug, Clone)]
pub struct Peer(pub Arc<Identity>);

/// The caller of a call the policy let through, in the request's
/// extensions for handlers that want it.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Identity>);
