//! The JOSE checks that authd's server and its client library share, written
//! once:
//!
//! - [`key`]: signature algorithms, JWKs and the public keys prepared from
//!   them, RFC 7638 thumbprints;
//! - [`binding`]: the `Authorization` scheme and a token's confirmation
//!   (`cnf`, RFC 7800) — DPoP-bound (`jkt`, RFC 9449) or certificate-bound
//!   (`x5t#S256`, RFC 8705) — and whether a request proves it;
//! - [`dpop`]: every check of a DPoP proof (RFC 9449 §4.3), [`htu`] its URI
//!   comparison;
//! - [`replay`]: the bounded cache that accepts each proof once;
//! - [`typ`]: JOSE `typ` values, and those never accepted as access tokens.
//!
//! Nothing here does I/O or keeps a clock: callers pass `now`.

pub mod binding;
pub mod dpop;
pub mod htu;
pub mod key;
pub mod replay;
pub mod typ;
