//! Every call, before a handler sees it: a bound on calls in flight (shed at
//! once, never queued), a deadline (the caller's `grpc-timeout` or
//! `request_timeout_ms`, whichever is shorter), and the request message read
//! whole under its RPC's size limit, so that an oversized, truncated,
//! compressed, doubled or undecodable message is answered `INVALID_ARGUMENT`
//! with an ErrorInfo like every other authd error.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use http::{HeaderMap, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Status, body::Body};
use tower::Service;

use super::Refusals;
use crate::{callers::Peer, config::LimitsConfig, error::Error};

/// RPCs whose callers stream several messages: their bodies are not read
/// here (tonic bounds each message with `max_message_bytes`).
const STREAMING_PREFIX: &str = "/grpc.reflection.";
/// The 5-byte gRPC message prefix: compressed flag, big-endian length.
const PREFIX: usize = 5;

/// What every connection's calls share.
#[derive(Debug)]
pub(crate) struct CallLimits {
    in_flight: Arc<Semaphore>,
    request_timeout: Duration,
    body_timeout: Duration,
    max_verify_message: usize,
    max_message: usize,
    refusals: Arc<Refusals>,
}

impl CallLimits {
    pub(crate) fn new(limits: &LimitsConfig, refusals: Arc<Refusals>) -> Arc<Self> {
        Arc::new(CallLimits {
            refusals,
            in_flight: Arc::new(Semaphore::new(limits.max_calls_in_flight)),
            request_timeout: limits.request_timeout(),
            body_timeout: limits.request_body_timeout(),
            max_verify_message: limits.max_verify_message_bytes,
            max_message: limits.max_message_bytes,
        })
    }

    /// Counts a refused call by its reason.
    fn refused(&self, error: &Error) {
        let counter = match error {
            Error::Overloaded => &self.refusals.calls_shed,
            Error::DeadlineExceeded { .. } => &self.refusals.deadlines,
            _ => &self.refusals.bad_requests,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// An authd error as a trailers-only gRPC answer, counted.
    fn answer(&self, refused: Error) -> Response<Body> {
        self.refused(&refused);
        Status::from(refused).into_http()
    }
}

/// The service one connection's calls go through, in front of `S` (the
/// tonic routes).
#[derive(Debug, Clone)]
pub(crate) struct Calls<S> {
    inner: S,
    limits: Arc<CallLimits>,
    activity: Arc<Activity>,
    /// The connection's client certificate identity, given to every call.
    peer: Option<Peer>,
}

impl<S> Calls<S> {
    pub(crate) fn new(
        inner: S,
        limits: Arc<CallLimits>,
        activity: Arc<Activity>,
        peer: Option<Peer>,
    ) -> Self {
        Calls {
            inner,
            limits,
            activity,
            peer,
        }
    }
}

impl<S, B> Service<Request<B>> for Calls<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Into<tonic::codegen::StdError>,
{
    type Response = Response<Held>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Held>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // tonic's routes are always ready; the bound is the semaphore.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let call = self.activity.start();
        if let Some(peer) = &self.peer {
            request.extensions_mut().insert(peer.clone());
        }
        let Ok(permit) = Arc::clone(&self.limits.in_flight).try_acquire_owned() else {
            tracing::debug!(rpc = %rpc(&request), "shedding a call: limits.max_calls_in_flight reached");
            let answer = self.limits.answer(Error::Overloaded);
            return Box::pin(std::future::ready(Ok(held(answer, None, call))));
        };
        let limits = Arc::clone(&self.limits);
        // Take the ready service; leave a fresh clone for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let deadline = grpc_timeout(request.headers())
            .map_or(limits.request_timeout, |t| t.min(limits.request_timeout));
        Box::pin(async move {
            let path = request.uri().path();
            let streaming = path.starts_with(STREAMING_PREFIX);
            let max = if path == crate::grpc::VERIFY_TOKEN_PATH {
                limits.max_verify_message
            } else {
                limits.max_message
            };
            let work = async {
                if streaming {
                    return inner.call(request.map(Body::new)).await;
                }
                let (parts, body) = request.into_parts();
                let message = match within(limits.body_timeout, one_message(body, max)).await {
                    Some(Ok(message)) => message,
                    Some(Err(refused)) => return Ok(limits.answer(refused)),
                    None => {
                        return Ok(limits.answer(Error::DeadlineExceeded {
                            waiting_for: "the request message",
                        }));
                    }
                };
                let request = Request::from_parts(parts, Body::new(Full::new(message)));
                let response = inner.call(request).await?;
                Ok(undecodable_is_malformed(response, &limits))
            };
            let response = match within(deadline, work).await {
                Some(Ok(response)) => response,
                Some(Err(never)) => match never {},
                None => limits.answer(Error::DeadlineExceeded {
                    waiting_for: "the answer",
                }),
            };
            Ok(held(response, Some(permit), call))
        })
    }
}

/// `future`'s output, or `None` when it takes longer than `limit`. A future
/// ready at its first poll (a whole message already received, a cached
/// verification) arms no timer: the hot path pays for none.
async fn within<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    if let Poll::Ready(out) = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await
    {
        return Some(out);
    }
    tokio::time::timeout(limit, future).await.ok()
}

/// The RPC's path, cut short, for logs.
fn rpc<B>(request: &Request<B>) -> String {
    crate::error::truncate(request.uri().path(), 96)
}

/// Reads the one gRPC message of a unary (or server-streaming) call:
/// refused when its declared length is over `max` (before the rest is read),
/// when it is compressed (authd accepts no `grpc-encoding`), missing,
/// truncated, or followed by a second message.
async fn one_message<B>(body: B, max: usize) -> Result<Bytes, Error>
where
    B: HttpBody<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let mut body = std::pin::pin!(body);
    // A message that arrives in one DATA frame (the usual case) is kept as
    // that frame's bytes; only a message split over frames is copied.
    let mut whole: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    let mut declared: Option<usize> = None;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| Error::MalformedRequest(format!("the request body failed: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers from a client: nothing authd reads
        };
        if whole.is_none() && buf.is_empty() {
            whole = Some(data);
        } else {
            if let Some(first) = whole.take() {
                buf.extend_from_slice(&first);
            }
            buf.extend_from_slice(&data);
        }
        let seen: &[u8] = whole.as_deref().unwrap_or(&buf);
        if declared.is_none() && seen.len() >= PREFIX {
            if seen[0] != 0 {
                return Err(Error::MalformedRequest(
                    "the message is compressed; authd accepts no grpc-encoding".to_owned(),
                ));
            }
            let len = u32::from_be_bytes([seen[1], seen[2], seen[3], seen[4]]) as usize;
            if len > max {
                return Err(Error::RequestTooLarge { len, max });
            }
            declared = Some(len);
        }
        if let Some(len) = declared
            && seen.len() > PREFIX + len
        {
            return Err(Error::MalformedRequest(
                "more than one message on a unary call".to_owned(),
            ));
        }
    }
    let message = whole.unwrap_or_else(|| buf.freeze());
    match declared {
        None => Err(Error::MalformedRequest("no request message".to_owned())),
        Some(len) if message.len() < PREFIX + len => Err(Error::MalformedRequest(format!(
            "the message is truncated: {} of {len} bytes",
            message.len() - PREFIX
        ))),
        Some(_) => Ok(message),
    }
}

/// tonic answers a message that does not decode as `INTERNAL` without
/// details, before any handler runs; authd's own errors always carry an
/// ErrorInfo. Such an answer is the caller's malformed message.
fn undecodable_is_malformed(response: Response<Body>, limits: &CallLimits) -> Response<Body> {
    let headers = response.headers();
    let internal = headers.get("grpc-status").is_some_and(|v| v == "13");
    if internal && !headers.contains_key("grpc-status-details-bin") {
        return limits.answer(Error::MalformedRequest(
            "the message does not decode as the RPC's request type".to_owned(),
        ));
    }
    response
}

/// The caller's `grpc-timeout` (gRPC over HTTP/2: up to 8 digits and a
/// unit); `None` when absent or malformed.
fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn held(
    response: Response<Body>,
    permit: Option<OwnedSemaphorePermit>,
    call: CallGuard,
) -> Response<Held> {
    response.map(|inner| Held {
        inner,
        _hold: (permit, call),
    })
}

/// An answer's body that holds the call's place (in-flight permit, the
/// connection's count of open calls) until it has been sent or dropped.
#[derive(Debug)]
pub(crate) struct Held {
    inner: Body,
    _hold: (Option<OwnedSemaphorePermit>, CallGuard),
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === calls open on a connection ===

/// How many calls a connection has open, and since when it has none.
#[derive(Debug)]
pub(crate) struct Activity {
    born: Instant,
    open: AtomicUsize,
    /// Milliseconds after `born` when the last call ended.
    last_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Activity {
            born: Instant::now(),
            open: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    /// Counts a call open until the guard is dropped.
    pub(crate) fn start(self: &Arc<Self>) -> CallGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        CallGuard(Arc::clone(self))
    }

    /// How long the connection has had no open call; `None` while one is.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        if self.open.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Some(self.born.elapsed().saturating_sub(last))
    }
}

/// One open call of a connection; dropping it ends the call.
#[derive(Debug)]
pub(crate) struct CallGuard(Arc<Activity>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        let now = u64::try_from(self.0.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_ms.store(now, Ordering::Relaxed);
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(messages: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            out.push(0);
            out.extend_from_slice(&(m.len() as u32).to_be_bytes());
            out.extend_from_slice(m);
        }
        out
    }

    async fn read(bytes: Vec<u8>, max: usize) -> Result<Bytes, Error> {
        one_message(Full::new(Bytes::from(bytes)), max).await
    }

    #[tokio::test]
    async fn one_message_within_the_limit_is_read() {
        let bytes = framed(&[b"hello"]);
        assert_eq!(read(bytes.clone(), 5).await, Ok(Bytes::from(bytes)));
    }

    #[tokio::test]
    async fn oversized_missing_truncated_doubled_and_compressed_are_refused() {
        assert_eq!(
            read(framed(&[&[7; 100]]), 99).await,
            Err(Error::RequestTooLarge { len: 100, max: 99 })
        );
        // Refused on the prefix alone: the 4 GiB body is never awaited.
        let mut huge = vec![0u8];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            read(huge, 16384).await,
            Err(Error::RequestTooLarge { .. })
        ));
        let reason = |r: Result<Bytes, Error>| r.expect_err("refused").reason();
        use crate::Reason::MalformedRequest as M;
        assert_eq!(reason(read(Vec::new(), 10).await), M);
        assert_eq!(reason(read(vec![0, 0, 0], 10).await), M);
        assert_eq!(reason(read(framed(&[b"abc"])[..6].to_vec(), 10).await), M);
        assert_eq!(reason(read(framed(&[b"a", b"b"]), 10).await), M);
        let mut compressed = framed(&[b"abc"]);
        compressed[0] = 1;
        assert_eq!(reason(read(compressed, 10).await), M);
    }

    #[tokio::test(start_paused = true)]
    async fn within_answers_ready_futures_and_times_out_pending_ones() {
        assert_eq!(within(Duration::from_secs(1), async { 7 }).await, Some(7));
        let slow = tokio::time::sleep(Duration::from_secs(5));
        assert_eq!(within(Duration::from_secs(1), slow).await, None);
        let soon = tokio::time::sleep(Duration::from_millis(10));
        assert_eq!(within(Duration::from_secs(1), soon).await, Some(()));
    }

    #[test]
    fn grpc_timeout_units_and_garbage() {
        let parse = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", v.parse().expect("ascii"));
            grpc_timeout(&h)
        };
        assert_eq!(parse("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse("123456789S"), None, "at most 8 digits");
        assert_eq!(parse("m"), None);
        assert_eq!(parse("10x"), None);
        assert_eq!(parse("-1S"), None);
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn idle_counts_only_without_open_calls() {
        let activity = Arc::new(Activity::new());
        let call = activity.start();
        assert_eq!(activity.idle_for(), None);
        drop(call);
        assert!(activity.idle_for().is_some());
    }
}
