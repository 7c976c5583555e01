//! Idle WatchRevocations streams held open for the length of a load run
//! (`loadgen --watchers N`), to measure what watchers cost authd: the same
//! run with and without them, side by side.

use std::net::SocketAddr;

use anyhow::Context as _;
use authd_proto::pb::{
    WatchRevocationsRequest, auth_service_client::AuthServiceClient,
    watch_revocations_response::Event,
};
use http::Uri;
use tokio::task::JoinSet;

use super::grpc::{H2Connection, Tls};

/// Streams per HTTP/2 connection: under authd's default
/// `limits.max_concurrent_streams` (100).
const STREAMS_PER_CONNECTION: usize = 50;

/// The open streams; closed when dropped.
#[derive(Debug)]
pub struct Watchers {
    readers: JoinSet<()>,
}

impl Watchers {
    /// How many streams are still open.
    pub fn open(&self) -> usize {
        self.readers.len()
    }
}

/// Opens `count` streams to `addr` with `authorization: Bearer <token>`,
/// each read until its first heartbeat (caught up) before the next opens,
/// then drained in the background. Fails when authd refuses one.
pub async fn open(
    addr: SocketAddr,
    origin: &Uri,
    tls: Option<&Tls>,
    token: &str,
    count: usize,
) -> anyhow::Result<Watchers> {
    let authorization: tonic::metadata::MetadataValue<_> = format!("Bearer {token}")
        .parse()
        .context("the watch token is not a header value")?;
    let mut readers = JoinSet::new();
    let mut connection = None;
    for i in 0..count {
        if i % STREAMS_PER_CONNECTION == 0 {
            connection = Some(H2Connection::connect_with(addr, tls).await?);
        }
        let connection = connection.clone().context("a connection")?;
        let mut client = AuthServiceClient::with_origin(connection, origin.clone());
        let mut request = tonic::Request::new(WatchRevocationsRequest::default());
        request
            .metadata_mut()
            .insert("authorization", authorization.clone());
        let mut stream = client
            .watch_revocations(request)
            .await
            .with_context(|| format!("watcher {i} refused"))?
            .into_inner();
        loop {
            let message = stream
                .message()
                .await
                .with_context(|| format!("watcher {i}"))?
                .with_context(|| format!("watcher {i}: the stream ended"))?;
            if matches!(message.event, Some(Event::Heartbeat(_))) {
                break;
            }
        }
        readers.spawn(async move {
            while let Ok(Some(_)) = stream.message().await {}
            eprintln!("loadgen: a watcher's stream ended");
        });
    }
    Ok(Watchers { readers })
}
