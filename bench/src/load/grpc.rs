//! gRPC callers: tonic's generated `AuthServiceClient` over hyper HTTP/2
//! connections, plaintext or TLS (rustls, ALPN h2).
//!
//! A tonic `Channel` would put a `tower::buffer` (a queue and a task hop) in
//! front of every call; a cloned hyper `SendRequest` multiplexes calls on its
//! connection directly, which keeps the generator's own cost per call low.

use std::{
    future::Future,
    net::SocketAddr,
    path::Path,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use anyhow::Context as _;
use authd_proto::pb::{VerifyTokenRequest, auth_service_client::AuthServiceClient};
use http::Uri;
use hyper::{body::Incoming, client::conn::http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_rustls::{
    TlsConnector,
    rustls::{
        self, ClientConfig, RootCertStore,
        pki_types::{CertificateDer, ServerName, pem::PemObject},
    },
};

use super::{CallError, Caller};

/// One HTTP/2 connection, as the tower service tonic's client wants.
#[derive(Debug, Clone)]
pub struct H2Connection(http2::SendRequest<tonic::body::Body>);

/// TLS to the server: the CA that signed its certificate, which must name
/// `localhost`.
#[derive(Clone)]
pub struct Tls(TlsConnector);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// Trusts the CA certificates of the PEM file `ca`.
    pub fn from_ca_file(ca: &Path) -> anyhow::Result<Tls> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("cannot read {}", ca.display()))?
        {
            roots.add(cert.with_context(|| format!("bad PEM in {}", ca.display()))?)?;
        }
        let mut config = ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Tls(TlsConnector::from(Arc::new(config))))
    }
}

impl H2Connection {
    /// Connects to `addr` (loopback only) with `TCP_NODELAY`.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<H2Connection> {
        Self::connect_with(addr, None).await
    }

    /// Connects to `addr` (loopback only) with `TCP_NODELAY`, over TLS
    /// when `tls` is given.
    pub async fn connect_with(addr: SocketAddr, tls: Option<&Tls>) -> anyhow::Result<H2Connection> {
        let tcp = TcpStream::connect(crate::ensure_loopback(addr)?)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        tcp.set_nodelay(true)?;
        let builder = http2::Builder::new(TokioExecutor::new());
        let send = match tls {
            None => {
                let (send, connection) = builder
                    .handshake(TokioIo::new(tcp))
                    .await
                    .with_context(|| format!("HTTP/2 handshake with {addr} failed"))?;
                tokio::spawn(drive(connection, addr));
                send
            }
            Some(Tls(connector)) => {
                let stream = connector
                    .connect(ServerName::try_from("localhost")?, tcp)
                    .await
                    .with_context(|| format!("TLS handshake with {addr} failed"))?;
                let (send, connection) = builder
                    .handshake(TokioIo::new(stream))
                    .await
                    .with_context(|| format!("HTTP/2 handshake with {addr} failed"))?;
                tokio::spawn(drive(connection, addr));
                send
            }
        };
        Ok(H2Connection(send))
    }
}

/// Runs a connection until it ends; an error is printed, not fatal.
async fn drive(connection: impl Future<Output = Result<(), hyper::Error>>, addr: SocketAddr) {
    if let Err(error) = connection.await {
        eprintln!("loadgen: HTTP/2 connection to {addr} ended: {error}");
    }
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Incoming>, hyper::Error>> + Send>>;

impl tower::Service<http::Request<tonic::body::Body>> for H2Connection {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

/// A worker calling `VerifyToken` with pre-built requests.
#[derive(Debug)]
pub struct VerifyCaller {
    client: AuthServiceClient<H2Connection>,
    requests: Arc<[VerifyTokenRequest]>,
}

impl VerifyCaller {
    /// A caller on `connection` (shared with other workers) for `origin`
    /// (`http://127.0.0.1:PORT`).
    pub fn new(
        connection: H2Connection,
        origin: Uri,
        requests: Arc<[VerifyTokenRequest]>,
    ) -> VerifyCaller {
        VerifyCaller {
            client: AuthServiceClient::with_origin(connection, origin),
            requests,
        }
    }
}

impl Caller for VerifyCaller {
    async fn call(&mut self, index: usize) -> Result<(), CallError> {
        // The generated client takes the message by value: one clone of a
        // pre-built request (the token string) is the only per-call copy.
        let request = self.requests[index].clone();
        match self.client.verify_token(request).await {
            Ok(_) => Ok(()),
            Err(status) => Err(CallError {
                kind: format!("{:?}", status.code()),
                detail: status.message().to_owned(),
            }),
        }
    }
}

/// A worker that opens a new connection for every call (TCP, TLS when
/// given, HTTP/2), makes one `VerifyToken` call on it and closes it: what a
/// connection costs the server.
#[derive(Debug)]
pub struct ConnectCaller {
    addr: SocketAddr,
    tls: Option<Tls>,
    origin: Uri,
    requests: Arc<[VerifyTokenRequest]>,
}

impl ConnectCaller {
    /// A caller of `addr` (`origin` = `http://127.0.0.1:PORT`).
    pub fn new(
        addr: SocketAddr,
        tls: Option<Tls>,
        origin: Uri,
        requests: Arc<[VerifyTokenRequest]>,
    ) -> ConnectCaller {
        ConnectCaller {
            addr,
            tls,
            origin,
            requests,
        }
    }
}

impl Caller for ConnectCaller {
    async fn call(&mut self, index: usize) -> Result<(), CallError> {
        let connection = H2Connection::connect_with(self.addr, self.tls.as_ref())
            .await
            .map_err(|error| CallError {
                kind: "Connect".to_owned(),
                detail: format!("{error:#}"),
            })?;
        let mut caller =
            VerifyCaller::new(connection, self.origin.clone(), Arc::clone(&self.requests));
        caller.call(index).await
    }
}

/// Pre-builds one request per token.
pub fn requests(tokens: &[String], required_scopes: &[String]) -> Arc<[VerifyTokenRequest]> {
    tokens
        .iter()
        .map(|token| VerifyTokenRequest {
            token: token.clone(),
            required_scopes: required_scopes.to_vec(),
            audience: None,
            ..VerifyTokenRequest::default()
        })
        .collect()
}
