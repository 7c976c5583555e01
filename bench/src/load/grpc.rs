//! gRPC callers: tonic's generated `AuthServiceClient` over plain hyper
//! HTTP/2 connections.
//!
//! A tonic `Channel` would put a `tower::buffer` (a queue and a task hop) in
//! front of every call; a cloned hyper `SendRequest` multiplexes calls on its
//! connection directly, which keeps the generator's own cost per call low.

use std::{
    future::Future,
    net::SocketAddr,
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

use super::{CallError, Caller};

/// One HTTP/2 connection, as the tower service tonic's client wants.
#[derive(Debug, Clone)]
pub struct H2Connection(http2::SendRequest<tonic::body::Body>);

impl H2Connection {
    /// Connects to `addr` (loopback only) with `TCP_NODELAY`.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<H2Connection> {
        let tcp = TcpStream::connect(crate::ensure_loopback(addr)?)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        tcp.set_nodelay(true)?;
        let (send, connection) = http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(tcp))
            .await
            .with_context(|| format!("HTTP/2 handshake with {addr} failed"))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                eprintln!("loadgen: HTTP/2 connection to {addr} ended: {error}");
            }
        });
        Ok(H2Connection(send))
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

/// Pre-builds one request per token.
pub fn requests(tokens: &[String], required_scopes: &[String]) -> Arc<[VerifyTokenRequest]> {
    tokens
        .iter()
        .map(|token| VerifyTokenRequest {
            token: token.clone(),
            required_scopes: required_scopes.to_vec(),
            audience: None,
        })
        .collect()
}
