//! Connect protocol callers: VerifyToken as `POST
//! /auth.v1.AuthService/VerifyToken` with a JSON body, over HTTP/1.1 (one
//! keep-alive connection per worker) or HTTP/2 (workers share a few
//! connections, as gRPC's do).

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use http::{HeaderValue, Request, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper::{
    body::Bytes,
    client::conn::{http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::{CallError, Caller};

const PATH: &str = "/auth.v1.AuthService/VerifyToken";

/// One JSON VerifyToken request body per token.
pub fn bodies(tokens: &[String], required_scopes: &[String]) -> Arc<[Bytes]> {
    tokens
        .iter()
        .map(|token| {
            Bytes::from(
                serde_json::json!({"token": token, "requiredScopes": required_scopes}).to_string(),
            )
        })
        .collect()
}

/// A worker's way to authd: its own HTTP/1.1 connection (opened again after
/// it closes or fails), or the shared HTTP/2 one.
#[derive(Debug)]
enum Send {
    Http1(Option<http1::SendRequest<Full<Bytes>>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

/// An HTTP/2 connection workers share.
#[derive(Debug, Clone)]
pub struct H2(http2::SendRequest<Full<Bytes>>);

impl H2 {
    /// Opens an HTTP/2 (prior knowledge) connection to `addr`.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<H2> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        tcp.set_nodelay(true)?;
        let (send, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(H2(send))
    }
}

/// A worker sending Connect JSON VerifyToken calls.
#[derive(Debug)]
pub struct JsonCaller {
    addr: SocketAddr,
    host: HeaderValue,
    bodies: Arc<[Bytes]>,
    send: Send,
}

impl JsonCaller {
    /// A worker with its own HTTP/1.1 keep-alive connection to `url`'s host.
    pub async fn http1(url: &Uri, bodies: Arc<[Bytes]>) -> anyhow::Result<JsonCaller> {
        let addr = super::resolve(url).await?;
        Ok(JsonCaller {
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
            bodies,
            send: Send::Http1(Some(open_http1(addr).await?)),
        })
    }

    /// A worker on the shared HTTP/2 connection `h2`.
    pub fn http2(addr: SocketAddr, h2: H2, bodies: Arc<[Bytes]>) -> anyhow::Result<JsonCaller> {
        Ok(JsonCaller {
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
            bodies,
            send: Send::Http2(h2.0),
        })
    }

    async fn send(&mut self, index: usize) -> anyhow::Result<http::StatusCode> {
        let request = |uri: &str| {
            Request::post(uri)
                .header(header::HOST, self.host.clone())
                .header(header::CONTENT_TYPE, "application/json")
                .header("connect-protocol-version", "1")
                .body(Full::new(self.bodies[index].clone()))
        };
        let response = match &mut self.send {
            Send::Http2(send) => {
                send.ready().await?;
                let uri = format!("http://{}{PATH}", self.addr);
                send.send_request(request(&uri)?).await?
            }
            Send::Http1(slot) => {
                let send = match slot {
                    Some(send) if !send.is_closed() => send,
                    _ => slot.insert(open_http1(self.addr).await?),
                };
                send.ready().await?;
                send.send_request(request(PATH)?).await?
            }
        };
        let status = response.status();
        response.into_body().collect().await?;
        Ok(status)
    }
}

/// A new HTTP/1.1 keep-alive connection to `addr`.
async fn open_http1(addr: SocketAddr) -> anyhow::Result<http1::SendRequest<Full<Bytes>>> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    tcp.set_nodelay(true)?;
    let (send, connection) = http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(send)
}

impl Caller for JsonCaller {
    async fn call(&mut self, index: usize) -> Result<(), CallError> {
        let sent = self.send(index).await;
        if sent.is_err()
            && let Send::Http1(slot) = &mut self.send
        {
            *slot = None;
        }
        CallError::of_http(sent, "authd")
    }
}
