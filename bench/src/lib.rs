//! authd's benchmark suite, the pieces `bench/run` puts together.
//!
//! - [`issuer`]: a loopback OpenID Connect issuer (RS256 or ES256) that
//!   publishes discovery and a JWKS and mints many distinct Auth0-shaped
//!   tokens (binary `bench-issuer`).
//! - [`load`]: the load generator behind binary `loadgen` — a bounded
//!   schedule, per-worker latency histograms, and two callers:
//!   [`load::grpc`] (tonic's generated `AuthServiceClient` over raw HTTP/2
//!   connections) and [`load::http`] (HTTP/1.1 `GET` with a bearer token).
//! - [`noop`]: the do-nothing `AuthService` (binary `noop-server`), the
//!   ceiling of a tonic service on this machine.
//! - [`soak`]: the soak driver behind binary `soak` — capacity, then a
//!   long paced run of a mixed workload with every answer checked and the
//!   server process sampled.
//! - [`tokens`]: the token file format (one token per line).

pub mod issuer;
pub mod load;
pub mod noop;
pub mod soak;
pub mod tokens;

use std::net::SocketAddr;

/// Refuses anything but a loopback address: the suite never binds or loads
/// anything else.
pub fn ensure_loopback(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "the benchmark suite uses loopback addresses only, not {addr}"
    );
    Ok(addr)
}

/// The runtime of a bench binary: a current-thread runtime for `threads` ≤ 1
/// (pin it with `taskset`), else a multi-thread one with that many workers.
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}
