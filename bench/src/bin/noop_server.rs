//! `noop-server`: the do-nothing tonic `AuthService`, the reference ceiling.

use std::{net::SocketAddr, process::ExitCode};

use anyhow::Context as _;
use clap::Parser;
use tokio::net::TcpListener;

/// Serves `auth.v1.AuthService/VerifyToken` answering an empty response at
/// once; prints `READY <addr>` when listening.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where to listen; loopback only (port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:50052")]
    listen: SocketAddr,
    /// Runtime threads; 1 is a current-thread runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = authd_bench::runtime(args.threads)
        .context("cannot start the runtime")
        .and_then(|runtime| runtime.block_on(run(&args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("noop-server: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let listener = TcpListener::bind(authd_bench::ensure_loopback(args.listen)?)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("READY {}", listener.local_addr()?);
    authd_bench::noop::serve(listener, shutdown()).await?;
    Ok(())
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
