//! The listener, and the bounds on everything a client controls there
//! (`[limits]`): connections per process, the handshake, streams per
//! connection, header lists, keep-alive and idle connections, calls in
//! flight, message sizes and deadlines. What it refuses is counted and
//! logged as a summary every few seconds, so a flood cannot flood the log.
//!
//! - `workers`: the acceptor and one current-thread runtime per core.
//! - `connection`: one HTTP/2 connection under its limits.
//! - `calls`: one call: shed, deadline, the request message read whole.
//! - `tls`: TLS and mutual TLS, the files reloaded when they change.

mod calls;
mod connection;
mod tls;
mod workers;

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

pub(crate) use tls::{Tls, check_plaintext};
pub(crate) use workers::{count, serve};

/// What the port serves, over HTTP/2 and HTTP/1.1 alike: the gRPC
/// services as tonic routes them (gRPC itself, and Connect and gRPC-Web
/// turned into gRPC calls by [`crate::connect`]), and the plain HTTP
/// endpoints (OpenID Connect back-channel logout, account events).
#[derive(Clone)]
pub(crate) struct Routes {
    /// The gRPC services.
    pub(crate) grpc: tonic::service::Routes,
    /// The plain HTTP endpoints.
    pub(crate) http: axum::Router,
    /// Connect and gRPC-Web: which are on, and what they serve.
    pub(crate) protocols: std::sync::Arc<crate::connect::Protocols>,
}

/// Where the server is in its life; connections watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Serving,
    /// Accepting nothing more; calls in flight finish.
    Draining,
    /// The grace period is over: calls still in flight are dropped.
    Dropping,
}

/// What the limits refused since the last summary.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    /// Connections closed at once: `limits.max_connections` reached.
    pub(crate) connections_over_limit: AtomicU64,
    /// Connections closed without a preface and SETTINGS in time.
    pub(crate) handshake_timeouts: AtomicU64,
    /// Connections closed because they did not start with the HTTP/2
    /// preface (authd speaks gRPC, HTTP/2 only).
    pub(crate) not_http2: AtomicU64,
    /// TLS handshakes that failed (no or a refused client certificate,
    /// no common protocol, not TLS).
    pub(crate) tls_failures: AtomicU64,
    /// Calls shed: `limits.max_calls_in_flight` reached.
    pub(crate) calls_shed: AtomicU64,
    /// Calls refused for an oversized or malformed request message.
    pub(crate) bad_requests: AtomicU64,
    /// Calls past their deadline.
    pub(crate) deadlines: AtomicU64,
}

impl Refusals {
    /// Logs what was refused since the last call, if anything.
    fn log_summary(&self) {
        let take = |c: &AtomicU64| c.swap(0, Ordering::Relaxed);
        let (over, handshake, other, tls, shed, bad, late) = (
            take(&self.connections_over_limit),
            take(&self.handshake_timeouts),
            take(&self.not_http2),
            take(&self.tls_failures),
            take(&self.calls_shed),
            take(&self.bad_requests),
            take(&self.deadlines),
        );
        if over + handshake + other + tls > 0 {
            tracing::warn!(
                over_max_connections = over,
                no_handshake_in_time = handshake,
                not_http2 = other,
                tls_handshake_failed = tls,
                "connections refused in the last {} s",
                SUMMARY_EVERY.as_secs()
            );
        }
        if shed + bad + late > 0 {
            tracing::warn!(
                shed_over_max_calls_in_flight = shed,
                oversized_or_malformed = bad,
                deadline_exceeded = late,
                "calls refused in the last {} s",
                SUMMARY_EVERY.as_secs()
            );
        }
    }
}

/// Connections the kernel may hold completed but not yet accepted. A burst
/// larger than the queue is not refused: the kernel drops the handshake's
/// last packet and the client's connection is accepted only when the
/// handshake is sent again, a second and more later. tokio's default is 1024;
/// Linux caps the value at `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds authd's port for [`crate::run`], with an accept queue that holds a
/// burst of connections (4096, or `net.core.somaxconn` if lower).
///
/// # Errors
/// The address is in use, not local, or not permitted.
pub fn listen(address: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted authd binds at once.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// How often refusals are summed up in the log.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// How many file descriptors authd keeps beside its client connections:
/// the listener, the store, HTTP clients, runtimes, log files.
const RESERVED_FDS: u64 = 256;

/// `max_connections`, or fewer when the process may not open that many file
/// descriptors even after raising its soft limit to the hard one.
pub(crate) fn connection_limit(max_connections: usize) -> usize {
    let wanted = max_connections as u64 + RESERVED_FDS;
    let granted = match rlimit::increase_nofile_limit(wanted) {
        Ok(granted) => granted,
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the file-descriptor limit");
            return max_connections;
        }
    };
    if granted >= wanted {
        return max_connections;
    }
    let fits = usize::try_from(granted.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(1);
    tracing::warn!(
        configured = max_connections,
        serving = fits,
        fd_limit = granted,
        "limits.max_connections does not fit the file-descriptor limit (ulimit -n); serving fewer connections"
    );
    fits
}
