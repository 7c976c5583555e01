//! HTTP/1.1 callers for the HTTP peers (Express + express-jwt): `GET` with
//! `Authorization: Bearer <token>`, one keep-alive connection per worker.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use http::{HeaderValue, Request, Uri, header};
use http_body_util::{BodyExt as _, Empty};
use hyper::{body::Bytes, client::conn::http1};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{CallError, Caller};

/// A worker with its own HTTP/1.1 connection, reopened if the server closes it.
#[derive(Debug)]
pub struct BearerCaller {
    addr: SocketAddr,
    path: Uri,
    host: HeaderValue,
    authorizations: Arc<[HeaderValue]>,
    send: Option<http1::SendRequest<Empty<Bytes>>>,
}

impl BearerCaller {
    /// Connects to `url`'s host (loopback only); requests go to its path.
    pub async fn connect(
        url: &Uri,
        authorizations: Arc<[HeaderValue]>,
    ) -> anyhow::Result<BearerCaller> {
        let addr = super::resolve(url).await?;
        let host = HeaderValue::from_str(&addr.to_string())?;
        let path = url
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse::<Uri>()?;
        let mut caller = BearerCaller {
            addr,
            path,
            host,
            authorizations,
            send: None,
        };
        caller.send = Some(caller.open().await?);
        Ok(caller)
    }

    async fn open(&self) -> anyhow::Result<http1::SendRequest<Empty<Bytes>>> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("cannot connect to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let (send, connection) = http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            // The connection ends when the server closes it; the caller
            // notices and reopens.
            let _ = connection.await;
        });
        Ok(send)
    }

    async fn send(&mut self, index: usize) -> anyhow::Result<http::StatusCode> {
        let send = match &mut self.send {
            Some(send) if !send.is_closed() => send,
            _ => self.send.insert(self.open().await?),
        };
        send.ready().await?;
        let request = Request::get(self.path.clone())
            .header(header::HOST, self.host.clone())
            .header(header::AUTHORIZATION, self.authorizations[index].clone())
            .body(Empty::new())?;
        let response = send.send_request(request).await?;
        let status = response.status();
        // Read the whole body so the connection can carry the next request.
        response.into_body().collect().await?;
        Ok(status)
    }
}

impl Caller for BearerCaller {
    async fn call(&mut self, index: usize) -> Result<(), CallError> {
        let sent = self.send(index).await;
        if sent.is_err() {
            self.send = None;
        }
        CallError::of_http(sent, "the server")
    }
}

/// Pre-builds one `Authorization` header per token.
pub fn authorizations(tokens: &[String]) -> anyhow::Result<Arc<[HeaderValue]>> {
    tokens
        .iter()
        .map(|token| Ok(HeaderValue::from_str(&format!("Bearer {token}"))?))
        .collect()
}
