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
//!
//! The acceptor holds the bound on connections: past `limits.max_connections`
//! a new connection is closed as soon as it is accepted.

use std::{
    future::Future,
    io,
    sync::{Arc, atomic::Ordering},
    thread,
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch},
    task::JoinSet,
};

use super::{
    Refusals, Routes, SUMMARY_EVERY, Stage, Tls,
    connection::{self, Shared},
};
use crate::config::LimitsConfig;

/// Connections a worker may have queued before the acceptor waits for it.
const QUEUE: usize = 256;

/// A connection handed to a worker, with its place under the bound.
type Accepted = (std::net::TcpStream, OwnedSemaphorePermit);

/// The number of workers for `configured` (0: one per core this process may
/// run on, which `taskset` and cgroup limits narrow).
pub(crate) fn count(configured: usize) -> usize {
    match configured {
        0 => thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
}

/// Serves `routes` on `listener` (with TLS when `tls` is given) with
/// `threads` workers under `limits` until
/// `stop` completes; then closes the listener and lets the calls in flight
/// finish, for at most `grace`.
pub(crate) async fn serve(
    listener: TcpListener,
    routes: Routes,
    limits: &LimitsConfig,
    tls: Option<Arc<Tls>>,
    threads: usize,
    stop: impl Future<Output = ()>,
    grace: Duration,
) -> io::Result<()> {
    let refusals = Arc::new(Refusals::default());
    let shared = Shared::new(limits, Arc::clone(&refusals), tls);
    let connections = Arc::new(Semaphore::new(super::connection_limit(
        limits.max_connections,
    )));
    let (stage, watching) = watch::channel(Stage::Serving);
    let mut queues = Vec::with_capacity(threads);
    let mut finished = Vec::with_capacity(threads);
    for index in 0..threads.max(1) {
        let (queue, accepted) = mpsc::channel(QUEUE);
        let (done, result) = oneshot::channel();
        let (routes, shared, watching) = (routes.clone(), Arc::clone(&shared), watching.clone());
        thread::Builder::new()
            .name(format!("authd-worker-{index}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = done.send(Err(error));
                        return;
                    }
                };
                runtime.block_on(worker(routes, shared, accepted, watching));
                let _ = done.send(Ok(()));
                // Tasks a dropped call left behind must not hold the thread.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        queues.push(queue);
        finished.push(result);
    }

    let summaries = tokio::spawn(async move {
        let mut every = tokio::time::interval(SUMMARY_EVERY);
        every.tick().await;
        loop {
            every.tick().await;
            refusals.log_summary();
        }
    });
    accept(&listener, &queues, &connections, &shared.refusals, stop).await;
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
    summaries.abort();
    for result in results {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error),
            Err(_) => return Err(io::Error::other("a worker thread panicked")),
        }
    }
    Ok(())
}

/// Accepts connections until `stop`, handing them to the workers in turn;
/// one past the bound of `connections` is closed at once.
async fn accept(
    listener: &TcpListener,
    queues: &[mpsc::Sender<Accepted>],
    connections: &Arc<Semaphore>,
    refusals: &Refusals,
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
        let Ok(permit) = Arc::clone(connections).try_acquire_owned() else {
            refusals
                .connections_over_limit
                .fetch_add(1, Ordering::Relaxed);
            drop(connection);
            continue;
        };
        if queues[next % queues.len()]
            .send((connection, permit))
            .await
            .is_err()
        {
            // That worker ended, which `serve` reports.
            tracing::error!("a connection worker stopped; no longer accepting");
            return;
        }
        next = next.wrapping_add(1);
    }
}

/// One worker: serves the connections it receives until the acceptor stops,
/// then until they have all finished (or the stage drops them).
async fn worker(
    routes: Routes,
    shared: Arc<Shared>,
    mut accepted: mpsc::Receiver<Accepted>,
    stage: watch::Receiver<Stage>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            next = accepted.recv() => {
                let Some((tcp, permit)) = next else { break };
                match TcpStream::from_std(tcp) {
                    Ok(tcp) => {
                        connections.spawn(connection::serve(
                            tcp,
                            routes.clone(),
                            Arc::clone(&shared),
                            stage.clone(),
                            permit,
                        ));
                    }
                    Err(error) => tracing::warn!(%error, "cannot serve a connection"),
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    while connections.join_next().await.is_some() {}
}
