//! Connection workers, one thread per core: each worker runs its own
//! current-thread tokio runtime and serves the connections the acceptor hands
//! it, so every task of a call stays on the thread that read the call.
//!
//! Why not tokio's work-stealing runtime for the calls: there, a finished
//! call wakes its connection task at once (the runtime's LIFO slot), which
//! then writes that one answer alone — about one `writev` per call — and
//! calls stolen by the other core wake their connection across cores. A
//! current-thread runtime runs every ready call first and writes their
//! answers together. BENCHMARKS.md has the figures. The main runtime keeps
//! the acceptor and the background tasks (key refresh, revocations, health).

use std::{future::Future, thread, time::Duration};

use futures_util::stream;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot, watch},
};
use tonic::transport::server::Router;

use crate::server::StartError;

/// Where the server is in its life; workers watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Serving,
    /// Accepting nothing more; calls in flight finish.
    Draining,
    /// The grace period is over: calls still in flight are dropped.
    Dropping,
}

/// Connections a worker may have queued before the acceptor waits for it.
const QUEUE: usize = 256;

/// The number of workers for `configured` (0: one per core this process may
/// run on, which `taskset` and cgroup limits narrow).
pub(crate) fn count(configured: usize) -> usize {
    match configured {
        0 => thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
}

/// Serves `router` on `listener` with `threads` workers until `stop`
/// completes; then closes the listener and lets the calls in flight finish,
/// for at most `grace`.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    threads: usize,
    stop: impl Future<Output = ()>,
    grace: Duration,
) -> Result<(), StartError> {
    let (stage, watching) = watch::channel(Stage::Serving);
    let mut queues = Vec::with_capacity(threads);
    let mut finished = Vec::with_capacity(threads);
    for index in 0..threads.max(1) {
        let (queue, connections) = mpsc::channel(QUEUE);
        let (done, result) = oneshot::channel();
        let (router, watching) = (router.clone(), watching.clone());
        thread::Builder::new()
            .name(format!("authd-worker-{index}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = done.send(Err(StartError::Setup(format!(
                            "cannot start worker {index}: {error}"
                        ))));
                        return;
                    }
                };
                let _ = done.send(runtime.block_on(worker(router, connections, watching)));
                // Tasks a dropped call left behind must not hold the thread.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| StartError::Setup(format!("cannot start worker {index}: {e}")))?;
        queues.push(queue);
        finished.push(result);
    }

    accept(&listener, &queues, stop).await;
    drop(listener);
    drop(queues);
    stage.send_replace(Stage::Draining);

    let mut all = futures_util::future::join_all(finished);
    let results = tokio::select! {
        results = &mut all => results,
        () = tokio::time::sleep(grace) => {
            tracing::warn!("grace period over; dropping calls still in flight");
            stage.send_replace(Stage::Dropping);
            all.await
        }
    };
    for result in results {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error),
            Err(_) => return Err(StartError::Setup("a worker thread panicked".to_owned())),
        }
    }
    Ok(())
}

/// Accepts connections until `stop`, handing them to the workers in turn.
async fn accept(
    listener: &TcpListener,
    queues: &[mpsc::Sender<std::net::TcpStream>],
    stop: impl Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            () = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        let connection = match accepted.and_then(|(tcp, _)| {
            // Nagle off: answers are small and must leave at once.
            tcp.set_nodelay(true)?;
            tcp.into_std()
        }) {
            Ok(connection) => connection,
            Err(error) => {
                // Out of file descriptors, or the peer left: back off a little.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if queues[next % queues.len()].send(connection).await.is_err() {
            // That worker ended on an error, which `serve` reports.
            tracing::error!("a connection worker stopped; no longer accepting");
            return;
        }
        next = next.wrapping_add(1);
    }
}

/// One worker: serves the connections it receives until the stage moves on.
async fn worker(
    router: Router,
    mut connections: mpsc::Receiver<std::net::TcpStream>,
    mut stage: watch::Receiver<Stage>,
) -> Result<(), StartError> {
    let incoming = stream::poll_fn(move |cx| {
        connections
            .poll_recv(cx)
            .map(|next| next.map(TcpStream::from_std))
    });
    let mut draining = stage.clone();
    let signal = async move {
        let _ = draining.wait_for(|s| *s != Stage::Serving).await;
    };
    tokio::select! {
        served = router.serve_with_incoming_shutdown(incoming, signal) => Ok(served?),
        _ = stage.wait_for(|s| *s == Stage::Dropping) => Ok(()),
    }
}
