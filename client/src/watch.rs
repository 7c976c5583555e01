//! The background task that keeps the cache's WatchRevocations stream open:
//! it reconnects with back-off, resumes from the last cursor received, and
//! hands every revocation and heartbeat to the cache. It ends when the last
//! clone of the client is dropped. While authd refuses this caller the
//! stream (`PERMISSION_DENIED`, or an authd without it) the cache is off and
//! the task asks again every minute (a renewed token, a changed policy).

use std::{fmt, sync::Arc, time::Duration};

use authd_proto::pb::{self, auth_service_client::AuthServiceClient};
use tonic::{Code, metadata::MetadataValue, transport::Channel};

use crate::{Secret, cache::VerifyCache};

/// The first wait before reconnecting; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a refused caller asks again.
const REFUSED_RETRY: Duration = Duration::from_secs(60);

/// Where the watch's service token comes from, asked at every connection.
#[derive(Clone)]
pub(crate) struct TokenSource(Arc<dyn Fn() -> Secret + Send + Sync>);

impl TokenSource {
    pub(crate) fn new(source: impl Fn() -> Secret + Send + Sync + 'static) -> Self {
        TokenSource(Arc::new(source))
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSource(..)")
    }
}

/// Stops the task when the last client holding it is dropped.
#[derive(Debug)]
pub(crate) struct WatchTask(tokio::task::AbortHandle);

impl Drop for WatchTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts watching for `cache`, or turns the cache off when there is no
/// Tokio runtime to run the task in.
pub(crate) fn start(
    cache: &Arc<VerifyCache>,
    channel: Channel,
    token: Option<TokenSource>,
) -> Option<WatchTask> {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("authd-client built outside a Tokio runtime: no verification cache");
        cache.turn_off();
        return None;
    };
    let task = runtime.spawn(watch(Arc::clone(cache), channel, token));
    Some(WatchTask(task.abort_handle()))
}

async fn watch(cache: Arc<VerifyCache>, channel: Channel, token: Option<TokenSource>) {
    let mut client = AuthServiceClient::new(channel);
    let mut cursor = String::new();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut request = tonic::Request::new(pb::WatchRevocationsRequest {
            cursor: cursor.clone(),
        });
        if let Some(source) = &token {
            let Ok(value) = MetadataValue::try_from(format!("Bearer {}", (source.0)().expose()))
            else {
                tracing::warn!("the watch token is not a header value: no verification cache");
                cache.turn_off();
                return;
            };
            request.metadata_mut().insert("authorization", value);
        }
        let status = match client.watch_revocations(request).await {
            Ok(response) => {
                cache.stream_opened();
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(message)) => {
                            backoff = FIRST_BACKOFF;
                            if heard(&cache, &message) && !message.cursor.is_empty() {
                                cursor = message.cursor;
                            }
                        }
                        Ok(None) => break None,
                        Err(status) => break Some(status),
                    }
                }
            }
            Err(status) => Some(status),
        };
        if let Some(status) = status {
            if matches!(status.code(), Code::PermissionDenied | Code::Unimplemented) {
                if cache.turn_off() {
                    tracing::warn!(
                        code = ?status.code(),
                        message = status.message(),
                        "authd does not stream revocations to this client: running without the verification cache"
                    );
                }
                tokio::time::sleep(REFUSED_RETRY).await;
                continue;
            }
            tracing::debug!(code = ?status.code(), message = status.message(), "revocation stream ended; reconnecting");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Hands `message` to the cache; `false` when it was not understood (its
/// cursor is then not taken).
fn heard(cache: &VerifyCache, message: &pb::WatchRevocationsResponse) -> bool {
    use pb::watch_revocations_response::Event;
    match &message.event {
        Some(Event::Revocation(revocation)) => cache.revoked(revocation),
        Some(Event::Heartbeat(heartbeat)) => {
            cache.heartbeat(Duration::from_millis(heartbeat.interval_ms.into()));
        }
        None => return false,
    }
    true
}
