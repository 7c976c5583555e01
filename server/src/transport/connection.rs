//! One client connection, served with HTTP/2 under the bounds of
//! `[limits]`: the preface and SETTINGS must arrive within the handshake
//! timeout, streams are capped and advertised in SETTINGS, quiet peers are
//! pinged and dropped when they do not answer, and a connection without
//! calls for the idle timeout is closed gracefully (GOAWAY), or dropped if
//! the peer does not acknowledge that within the keep-alive timeout.
//!
//! A client whose first bytes are an HTTP/1.1 request line instead is
//! served HTTP/1.1 ([`serve_http1`]) with bounds of its own: each request's
//! head must arrive within the handshake timeout and fit the header limit,
//! one request at a time (a pipelined one waits for the answer before it),
//! and a connection idle for the idle timeout is closed.

use std::{
    io,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
    time::Duration,
};

use hyper::server::conn::{http1, http2};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, watch},
};

use tokio_rustls::server::TlsStream;

use super::{
    Refusals, Routes, Stage,
    calls::{Activity, CallLimits, Calls},
    tls::Tls,
};
use crate::{callers::Peer, config::LimitsConfig, connect::Front};

/// What every connection of the process shares.
#[derive(Debug)]
pub(crate) struct Shared {
    http2: http2::Builder<TokioExecutor>,
    http1: http1::Builder,
    handshake_timeout: Duration,
    idle_timeout: Option<Duration>,
    keepalive_timeout: Duration,
    pub(crate) calls: Arc<CallLimits>,
    pub(crate) refusals: Arc<Refusals>,
    tls: Option<Arc<Tls>>,
}

impl Shared {
    pub(crate) fn new(
        limits: &LimitsConfig,
        refusals: Arc<Refusals>,
        tls: Option<Arc<Tls>>,
    ) -> Arc<Self> {
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(limits.max_header_list_bytes)
            // Windows sized to the largest message: what a peer may send
            // before authd reads it is bounded per stream and per connection.
            .initial_stream_window_size(window(limits.max_message_bytes))
            .initial_connection_window_size(window(4 * limits.max_message_bytes))
            .keep_alive_interval(Duration::from_secs(limits.keepalive_interval_seconds))
            .keep_alive_timeout(Duration::from_secs(limits.keepalive_timeout_seconds))
            // Rapid reset (CVE-2023-44487) and streams reset for errors: a
            // peer past these gets GOAWAY.
            .max_pending_accept_reset_streams(20)
            .max_local_error_reset_streams(256);
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.handshake_timeout())
            .max_buf_size(limits.max_header_list_bytes.max(8192) as usize)
            .keep_alive(true)
            .half_close(false)
            // An answer's head and body in one buffer, sent by one `write`:
            // the body is a few hundred bytes, and a two-part `writev` cost
            // the kernel 0.1–0.45 µs a call more (BENCHMARKS.md). Rewind's
            // vectored writes stay for HTTP/2.
            .writev(false);
        Arc::new(Shared {
            http2,
            http1,
            handshake_timeout: limits.handshake_timeout(),
            idle_timeout: limits.idle_timeout(),
            keepalive_timeout: Duration::from_secs(limits.keepalive_timeout_seconds),
            calls: CallLimits::new(limits, Arc::clone(&refusals)),
            refusals,
            tls,
        })
    }
}

/// An HTTP/2 window of at least the default 65,535 bytes that holds one
/// message of `bytes` and its prefix.
fn window(bytes: usize) -> u32 {
    u32::try_from(bytes.saturating_add(1024))
        .unwrap_or(u32::MAX)
        .max(65_535)
}

/// Serves `tcp` until the peer leaves, the connection idles out, or the
/// stage moves on; `permit` is its place under `limits.max_connections`.
///
/// Until the client has completed the TLS handshake (when `[server.tls]` is
/// set) and sent the HTTP/2 preface and its first frame, all within the
/// handshake timeout, the connection costs a socket and this small task:
/// HTTP/2's buffers and tables are allocated only for a client that
/// completed its handshake in time, so idle and slow-loris connections
/// cannot grow authd's memory.
pub(crate) async fn serve(
    tcp: TcpStream,
    routes: Routes,
    shared: Arc<Shared>,
    stage: watch::Receiver<Stage>,
    permit: OwnedSemaphorePermit,
) {
    let handshake =
        tokio::time::timeout(shared.handshake_timeout, open(tcp, shared.tls.as_deref()));
    let mut stopping = stage.clone();
    let opened = tokio::select! {
        opened = handshake => opened,
        // Shutting down: a connection that has not spoken yet just closes.
        _ = stopping.wait_for(|s| *s != Stage::Serving) => return,
    };
    let opened = match opened {
        Ok(Ok(Some(opened))) => opened,
        Ok(Ok(None)) => {
            shared.refusals.not_http2.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Ok(Err(Failed::Tls(error))) => {
            tracing::debug!(%error, "TLS handshake failed");
            shared.refusals.tls_failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Ok(Err(Failed::Io(error))) => {
            tracing::debug!(%error, "connection ended during its handshake");
            return;
        }
        Err(_) => {
            shared
                .refusals
                .handshake_timeouts
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    match opened {
        Opened::Plain(protocol, tcp) => {
            Box::pin(serve_opened(
                protocol, tcp, None, routes, shared, stage, permit,
            ))
            .await;
        }
        Opened::Tls(protocol, tls, peer) => {
            Box::pin(serve_opened(
                protocol, *tls, peer, routes, shared, stage, permit,
            ))
            .await;
        }
    }
}

/// Serves a connection whose handshake arrived, in the protocol it speaks.
///
/// Both protocols serve the same stack: [`crate::connect::Front`] sends
/// gRPC, Connect and gRPC-Web calls through the connection's calls (limits,
/// metrics, the client certificate's identity) to the tonic routes, and
/// other requests to the plain HTTP routes, each counted as a call of the
/// connection while it is served.
async fn serve_opened<T>(
    protocol: Protocol,
    io: T,
    peer: Option<Peer>,
    routes: Routes,
    shared: Arc<Shared>,
    mut stage: watch::Receiver<Stage>,
    permit: OwnedSemaphorePermit,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let rpc = crate::observe::GrpcMetrics::new(Calls::new(
        routes.grpc,
        Arc::clone(&shared.calls),
        Arc::clone(&activity),
        peer,
    ));
    let marked = Arc::clone(&activity);
    let http = tower::ServiceBuilder::new()
        .map_request(move |mut request: http::Request<hyper::body::Incoming>| {
            let guard = marked.start();
            request.extensions_mut().insert(Arc::new(guard));
            request
        })
        .service(routes.http);
    let front = TowerToHyperService::new(Front::new(rpc, http, routes.protocols));
    match protocol {
        Protocol::Http2(first) => {
            let io = TokioIo::new(Rewind::for_http2(first, io));
            let connection = shared.http2.serve_connection(io, front);
            let connection = std::pin::pin!(connection);
            drive(
                connection,
                |c| c.graceful_shutdown(),
                &mut stage,
                &activity,
                shared.idle_timeout,
                shared.keepalive_timeout,
            )
            .await;
        }
        Protocol::Http1(first) => {
            let io = TokioIo::new(Rewind::for_http1(first, io));
            let connection = shared.http1.serve_connection(io, front);
            let connection = std::pin::pin!(connection);
            // Always an idle bound: an HTTP/1.1 client has no PING to keep
            // it honest.
            let idle = shared.idle_timeout.unwrap_or(shared.handshake_timeout * 6);
            drive(
                connection,
                |c| c.graceful_shutdown(),
                &mut stage,
                &activity,
                Some(idle),
                shared.keepalive_timeout,
            )
            .await;
        }
    }
    drop(permit);
}

/// A connection whose handshake arrived: its first bytes, its stream, and
/// the identity of its client certificate.
enum Opened {
    Plain(Protocol, TcpStream),
    Tls(Protocol, Box<TlsStream<TcpStream>>, Option<Peer>),
}

/// What the client speaks, with the first bytes it sent.
#[derive(Debug, PartialEq, Eq)]
enum Protocol {
    /// The HTTP/2 preface and first frame.
    Http2(Vec<u8>),
    /// The start of an HTTP/1.1 request line.
    Http1(Vec<u8>),
}

/// Why a handshake did not complete.
enum Failed {
    /// The TLS handshake failed: no or a refused client certificate, no
    /// common protocol, not TLS at all.
    Tls(io::Error),
    /// The peer left.
    Io(io::Error),
}

/// The TLS handshake when configured, then the HTTP/2 one; `None` when the
/// client does not speak HTTP/2.
async fn open(mut tcp: TcpStream, tls: Option<&Tls>) -> Result<Option<Opened>, Failed> {
    let Some(tls) = tls else {
        return Ok(read_handshake(&mut tcp)
            .await
            .map_err(Failed::Io)?
            .map(|protocol| Opened::Plain(protocol, tcp)));
    };
    let (mut stream, peer) = tls.accept(tcp).await.map_err(Failed::Tls)?;
    Ok(read_handshake(&mut stream)
        .await
        .map_err(Failed::Io)?
        .map(|protocol| Opened::Tls(protocol, Box::new(stream), peer)))
}

/// Serves `connection` (HTTP/2 or HTTP/1.1) until it ends: closed
/// gracefully (`shut_down`) when the stage drains or when it has had no call
/// for `idle`, dropped when the stage drops it or when a peer told to close
/// has not gone `keepalive_timeout` later.
async fn drive<C>(
    mut connection: Pin<&mut C>,
    shut_down: impl Fn(Pin<&mut C>),
    stage: &mut watch::Receiver<Stage>,
    activity: &Activity,
    idle: Option<Duration>,
    keepalive_timeout: Duration,
) where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let mut tick = tokio::time::interval(idle.map_or(Duration::from_secs(3600), |i| {
        (i / 4).clamp(Duration::from_millis(100), Duration::from_secs(15))
    }));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (mut closing, mut watching) = (false, true);
    // After an idle GOAWAY, HTTP/2 waits for the peer to acknowledge a PING;
    // a peer that never does is dropped after the keep-alive timeout.
    let mut give_up = std::pin::pin!(tokio::time::sleep(Duration::MAX / 4));
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%error, "connection ended");
                }
                break;
            }
            changed = stage.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                    continue;
                }
                match *stage.borrow_and_update() {
                    Stage::Serving => {}
                    Stage::Draining if !closing => {
                        shut_down(connection.as_mut());
                        closing = true;
                    }
                    Stage::Draining => {}
                    Stage::Dropping => break,
                }
            }
            _ = tick.tick(), if idle.is_some() && !closing => {
                if idle.is_some_and(|idle| activity.idle_for().is_some_and(|d| d >= idle)) {
                    tracing::debug!("closing a connection idle for limits.idle_timeout_seconds");
                    shut_down(connection.as_mut());
                    closing = true;
                    give_up
                        .as_mut()
                        .reset(tokio::time::Instant::now() + keepalive_timeout);
                }
            }
            () = give_up.as_mut() => {
                tracing::debug!("dropping an idle connection whose peer did not acknowledge GOAWAY");
                break;
            }
        }
    }
}

// === the handshake ===

/// The client's first bytes: the 24-byte HTTP/2 preface, then a frame
/// header (9 bytes) and that frame's payload (its SETTINGS).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
/// A first frame longer than this is left for HTTP/2 to refuse.
const MAX_FIRST_FRAME: usize = 16_384;

/// Reads the preface and the first frame (HTTP/2 with prior knowledge, as
/// gRPC clients speak it), or the first bytes of an HTTP/1.1 request line;
/// `None` when the client speaks neither.
async fn read_handshake<T: AsyncRead + Unpin>(tcp: &mut T) -> io::Result<Option<Protocol>> {
    let mut head = [0u8; PREFACE.len() + FRAME_HEADER];
    // The preface alone first: a client speaking anything else is told
    // apart without waiting for more bytes than it may send.
    tcp.read_exact(&mut head[..PREFACE.len()]).await?;
    if &head[..PREFACE.len()] != PREFACE {
        let start = &head[..PREFACE.len()];
        return Ok(is_http1_request_line(start).then(|| Protocol::Http1(start.to_vec())));
    }
    tcp.read_exact(&mut head[PREFACE.len()..]).await?;
    let header = &head[PREFACE.len()..];
    let payload = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut first = head.to_vec();
    if payload <= MAX_FIRST_FRAME {
        first.resize(head.len() + payload, 0);
        tcp.read_exact(&mut first[head.len()..]).await?;
    }
    Ok(Some(Protocol::Http2(first)))
}

/// Whether `start` begins an HTTP/1.x request line: a method (1 to 10
/// upper-case letters) and a space, then an origin-form target (`/…`).
fn is_http1_request_line(start: &[u8]) -> bool {
    let Some(space) = start.iter().position(|b| *b == b' ') else {
        return false;
    };
    (1..=10).contains(&space)
        && start[..space].iter().all(u8::is_ascii_uppercase)
        && start.get(space + 1) == Some(&b'/')
}

/// A stream whose first bytes were already read: they are read again first.
struct Rewind<T> {
    first: Vec<u8>,
    at: usize,
    inner: T,
    /// Whether writers are told they may write several buffers at once.
    vectored: bool,
    /// HTTP/1.1: an answer's first write waits once for the worker's other
    /// ready tasks ([`Rewind::for_http1`]).
    yields: bool,
    /// Bytes were read since the last write: the next write yields first.
    read_since_write: bool,
}

impl<T: AsyncWrite> Rewind<T> {
    fn new(first: Vec<u8>, inner: T) -> Self {
        let vectored = inner.is_write_vectored();
        Rewind {
            first,
            at: 0,
            inner,
            vectored,
            yields: false,
            read_since_write: false,
        }
    }

    /// For HTTP/2, which writes the answers of many streams together: `h2`
    /// keeps a DATA payload out of its write buffer from 256 bytes on when
    /// the stream takes vectored writes, and from 1 KiB on when it does not,
    /// and it writes the buffer out before it buffers the next frame after
    /// such a payload. A Connect JSON answer of VerifyToken (~300 bytes)
    /// would then leave in a `writev` of its own, each waking the client,
    /// where the gRPC answers of the same calls leave together. Told that
    /// the stream does not take vectored writes, `h2` copies payloads under
    /// 1 KiB into its buffer, so the answers of the calls that are ready go
    /// out in one write; a larger payload is written after the buffer.
    fn for_http2(first: Vec<u8>, inner: T) -> Self {
        Rewind {
            vectored: false,
            ..Rewind::new(first, inner)
        }
    }

    /// For HTTP/1.1, which answers one request at a time on each
    /// connection: an answer is written in a system call of its own, and on
    /// loopback (or any client on this host) that call also wakes the
    /// client, which has gone idle while its request was served: on a
    /// virtual machine that wake-up costs the server more than the rest of
    /// a cached VerifyToken call. So the first write after a read yields
    /// once (the task wakes itself and returns `Pending`): the worker runs
    /// the other connections' ready calls first, and their answers leave
    /// one after the other, while the client is still awake from the
    /// first. A connection with nothing else ready waits one turn of the
    /// worker's loop.
    fn for_http1(first: Vec<u8>, inner: T) -> Self {
        Rewind {
            yields: true,
            ..Rewind::new(first, inner)
        }
    }

    /// Whether this write yields first (see [`Rewind::for_http1`]); once
    /// per read.
    fn yield_once(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.read_since_write {
            return false;
        }
        self.read_since_write = false;
        cx.waker().wake_by_ref();
        true
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.first.len() {
            let n = (this.first.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.first[this.at..this.at + n]);
            this.at += n;
            this.read_since_write |= this.yields;
            if this.at == this.first.len() {
                this.first = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.read_since_write |= this.yields && buf.filled().len() > before;
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.yield_once(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.yield_once(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"));
        let (client, server) = tokio::join!(client, listener.accept());
        (client.expect("connect"), server.expect("accept").0)
    }

    #[tokio::test]
    async fn the_handshake_is_the_preface_and_the_first_frame_then_rewound() {
        let (mut client, mut server) = pair().await;
        let mut bytes = PREFACE.to_vec();
        // SETTINGS with one 6-byte setting, then the start of a HEADERS frame.
        bytes.extend_from_slice(&[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]);
        bytes.extend_from_slice(&[0, 0, 9, 1]);
        // A byte at a time, as a slow client sends it.
        let writer = tokio::spawn(async move {
            for b in bytes {
                client.write_all(&[b]).await.expect("write");
            }
            client
        });
        let Some(Protocol::Http2(first)) = read_handshake(&mut server).await.expect("read") else {
            panic!("h2");
        };
        assert_eq!(first.len(), 24 + 9 + 6);
        let _client = writer.await.expect("writer");
        let mut rewound = Rewind::new(first.clone(), server);
        let mut again = vec![0u8; first.len() + 4];
        rewound.read_exact(&mut again).await.expect("read");
        assert_eq!(&again[..first.len()], &first[..]);
        assert_eq!(&again[first.len()..], &[0, 0, 9, 1]);
    }

    /// Counts the wake-ups of the task it wakes.
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn an_http1_answer_yields_once_after_each_read_and_never_otherwise() {
        let wakes = Arc::new(Wakes(std::sync::atomic::AtomicUsize::new(0)));
        let waker = std::task::Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        let woken = || wakes.0.load(Ordering::Relaxed);

        let (mut client, server) = tokio::io::duplex(1024);
        let mut stream = Rewind::for_http1(b"GET / HTTP/1.1\r\n".to_vec(), server);
        // Nothing read yet: a write goes at once.
        let write = |stream: &mut Rewind<_>, cx: &mut Context<'_>| {
            Pin::new(stream).poll_write(cx, b"answer")
        };
        assert!(matches!(write(&mut stream, &mut cx), Poll::Ready(Ok(6))));
        assert_eq!(woken(), 0);
        // The rewound first bytes count as a read: the next write yields
        // once, waking its own task, then goes.
        let mut read = [0u8; 64];
        let n = stream.read(&mut read).await.expect("read");
        assert_eq!(&read[..n], b"GET / HTTP/1.1\r\n");
        assert!(write(&mut stream, &mut cx).is_pending());
        assert_eq!(woken(), 1);
        assert!(matches!(write(&mut stream, &mut cx), Poll::Ready(Ok(6))));
        assert!(matches!(write(&mut stream, &mut cx), Poll::Ready(Ok(6))));
        assert_eq!(woken(), 1);
        // So does a read from the stream, vectored writes alike.
        client.write_all(b"GET / HTTP/1.1\r\n").await.expect("send");
        let n = stream.read(&mut read).await.expect("read");
        assert!(n > 0);
        let bufs = [io::IoSlice::new(b"ans"), io::IoSlice::new(b"wer")];
        assert!(
            Pin::new(&mut stream)
                .poll_write_vectored(&mut cx, &bufs)
                .is_pending()
        );
        assert_eq!(woken(), 2);
        assert!(matches!(
            Pin::new(&mut stream).poll_write_vectored(&mut cx, &bufs),
            Poll::Ready(Ok(3 | 6))
        ));
        // Every write that went is what the client reads, once.
        drop(stream);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("read");
        assert!(got.starts_with(b"answeransweranswer"), "{got:?}");

        // An HTTP/2 stream never yields: h2 writes the ready answers together.
        let (mut client, server) = tokio::io::duplex(1024);
        let mut stream = Rewind::for_http2(Vec::new(), server);
        client.write_all(b"x").await.expect("send");
        let n = stream.read(&mut read).await.expect("read");
        assert_eq!(&read[..n], b"x");
        assert!(matches!(write(&mut stream, &mut cx), Poll::Ready(Ok(6))));
        assert_eq!(woken(), 2);
    }

    /// A stream that takes vectored writes and counts the writes made to it.
    struct Counted {
        inner: tokio::io::DuplexStream,
        writes: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl AsyncRead for Counted {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Counted {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.writes.fetch_add(1, Ordering::Relaxed);
            Pin::new(&mut this.inner).poll_write(cx, buf)
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.writes.fetch_add(1, Ordering::Relaxed);
            let whole: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            Pin::new(&mut this.inner).poll_write(cx, &whole)
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
        }
    }

    /// The writes an HTTP/2 server over `wrap`'s stream makes to answer
    /// eight calls sent together, each answer a 300-byte body (the size of
    /// a Connect JSON VerifyToken answer).
    async fn writes_for_eight_answers(wrap: fn(Counted) -> Rewind<Counted>) -> usize {
        use http_body_util::{BodyExt, Full};
        use hyper::body::Bytes;

        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let server_io = wrap(Counted {
            inner: server_io,
            writes: Arc::clone(&writes),
        });
        let answer = |_request: http::Request<hyper::body::Incoming>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(vec![
                b'a';
                300
            ]))))
        };
        tokio::spawn(
            http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(server_io), hyper::service::service_fn(answer)),
        );
        let (mut send, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(client_io))
                .await
                .expect("handshake");
        tokio::spawn(connection);
        let call = |send: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>| {
            let request = http::Request::post("http://authd/auth.v1.AuthService/VerifyToken")
                .body(Full::new(Bytes::from_static(b"{}")))
                .expect("request");
            let answer = send.send_request(request);
            async move {
                let answer = answer.await.expect("answer");
                answer
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes()
                    .len()
            }
        };
        // The handshake and a first call, not counted.
        assert_eq!(call(&mut send).await, 300);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = writes.load(Ordering::Relaxed);
        let calls: Vec<_> = (0..8).map(|_| call(&mut send)).collect();
        for length in futures_util::future::join_all(calls).await {
            assert_eq!(length, 300);
        }
        writes.load(Ordering::Relaxed) - before
    }

    #[tokio::test]
    async fn http2_answers_ready_together_are_written_together() {
        // As h2 writes to a stream that takes vectored writes: an answer of
        // 300 bytes leaves in a write of its own.
        let apart = writes_for_eight_answers(|io| Rewind::new(Vec::new(), io)).await;
        assert!(apart >= 8, "{apart} writes for eight answers");
        // Served as authd serves HTTP/2: the eight answers share one write
        // (or two, should the calls arrive in two reads).
        let together = writes_for_eight_answers(|io| Rewind::for_http2(Vec::new(), io)).await;
        assert!(together <= 2, "{together} writes for eight answers");
    }

    #[tokio::test]
    async fn an_http1_request_is_told_apart_and_anything_else_refused() {
        let (mut client, mut server) = pair().await;
        client
            .write_all(b"POST /backchannel-logout HTTP/1.1\r\nHost: authd\r\n\r\n")
            .await
            .expect("write");
        assert_eq!(
            read_handshake(&mut server).await.expect("read"),
            Some(Protocol::Http1(b"POST /backchannel-logout".to_vec()))
        );
        for garbage in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 a TLS hello......"[..],
            b"post /lower-case-method HTTP/1.1\r\n",
            b"CONNECT authd:443 HTTP/1.1\r\nHost: x\r\n",
            b"GET http://absolute/ HTTP/1.1\r\nHost: x\r\n",
        ] {
            let (mut client, mut server) = pair().await;
            client.write_all(garbage).await.expect("write");
            assert_eq!(read_handshake(&mut server).await.expect("read"), None);
        }
    }
}
