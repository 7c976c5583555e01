//! `revocation-delay`: how long after a revocation a caller's authd-client
//! cache refuses the revoked token, over many trials (p50/p99), printed as
//! one JSON line.
//!
//! In one process: a loopback development issuer, authd (embedded store)
//! and a client whose cache is warm with the token. Each trial mints a token
//! for a new user, has the cache answer it, revokes the user
//! (RevokeSession by user id, on the replica the client watches) while a
//! task keeps asking the cache, and records when the first refusal came:
//! `after_answer_us` from the moment RevokeSession answered (the revocation
//! is in force at authd; 0 when the refusal came first) and
//! `after_request_us` from the moment it was sent. A caller watching
//! another replica adds that replica's `sessions.revocation_poll_ms` at most.
//!
//! With `--via backchannel-logout` the revocation comes as the identity
//! provider sends it instead: a logout token (`sub` only) posted to
//! `POST /backchannel-logout` on authd's port (HTTP/1.1), answered once the
//! revocation is stored.
//!
//! `cargo run --release -p authd-bench --bin revocation-delay -- --trials 1000`

use std::{
    net::SocketAddr,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use authd::{App, Config, dangerous::DevIssuer, store::embedded::EmbeddedStore};
use authd_client::{AuthClient, CacheState, ErrorReason, RetryPolicy, RevokeTarget, Secret};
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::json;

const AUDIENCE: &str = "https://api.delay.bench";

#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Revocations measured (at most 100,000).
    #[arg(long, default_value_t = 200)]
    trials: u32,
    /// authd's `watch.heartbeat_ms`.
    #[arg(long, default_value_t = 2000)]
    heartbeat_ms: u64,
    /// Runtime threads (authd, the client and the revoker share them).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// A refusal later than this fails the run.
    #[arg(long, default_value_t = 10.0)]
    max_seconds: f64,
    /// How each user is revoked.
    #[arg(long, value_enum, default_value_t = Via::RevokeSession)]
    via: Via,
    /// Instead of delays: post this many distinct logout tokens (sub only)
    /// to /backchannel-logout from 32 concurrent HTTP/1.1 connections and
    /// report logouts a second, each stored before its 200.
    #[arg(long)]
    throughput: Option<u32>,
}

/// What revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Via {
    /// RevokeSession by user id, over gRPC, with a service token.
    RevokeSession,
    /// A back-channel logout token posted to /backchannel-logout.
    BackchannelLogout,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = authd_bench::runtime(args.threads)
        .context("cannot start the runtime")
        .and_then(|runtime| runtime.block_on(run(&args)));
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("revocation-delay: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<serde_json::Value> {
    ensure!(
        (1..=100_000).contains(&args.trials),
        "--trials must be in 1..=100000"
    );
    let loopback: SocketAddr = "127.0.0.1:0".parse()?;
    let issuer = DevIssuer::start(loopback, AUDIENCE).await?;
    let config = Config::from_toml(&format!(
        "[[issuers]]\nissuer = \"{}\"\naudiences = [\"{AUDIENCE}\"]\n\
         [issuers.backchannel_logout]\nclient_ids = [\"{}\"]\nmax_per_second = 1000000\n\
         [watch]\nheartbeat_ms = {}\n[log]\nfilter = \"error\"\n",
        issuer.issuer(),
        issuer.client_id(),
        args.heartbeat_ms
    ))?;
    let dir = tempfile::tempdir()?;
    let app = App::with_store(&config, Arc::new(EmbeddedStore::open(dir.path())?)).await?;
    let listener = tokio::net::TcpListener::bind(loopback).await?;
    let uri = format!("http://{}", listener.local_addr()?);
    tokio::spawn(authd::run(
        listener,
        app,
        Duration::from_secs(1),
        std::future::pending(),
    ));

    let service = Secret::new(issuer.mint(
        "bench-delay@clients",
        &[],
        &["revocations:watch", "sessions:revoke"],
        3600,
    ));
    let client = AuthClient::builder()
        .endpoint(&uri)
        .retry(RetryPolicy::none())
        .watch_token(service.clone())
        .connect()
        .await?;
    let started = Instant::now();
    while client.cache_state() != CacheState::Answering {
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "the cache is {:?}",
            client.cache_state()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut revoker = AuthClient::builder()
        .endpoint(&uri)
        .no_cache()
        .connect()
        .await?;

    let http = reqwest::Client::builder().http1_only().build()?;
    let logout_url = format!("{uri}/backchannel-logout");
    if let Some(count) = args.throughput {
        return logout_throughput(&issuer, &http, &logout_url, count).await;
    }
    let mut after_answer = Histogram::<u64>::new(3)?;
    let mut after_request = Histogram::<u64>::new(3)?;
    let limit = Duration::from_secs_f64(args.max_seconds);
    for trial in 0..args.trials {
        let user = format!("auth0|delay-{trial}");
        let token = issuer.mint(&user, &["read:orders"], &[], 3600);
        let mut warm = client.clone();
        warm.verify_token(&token, &[]).await?;
        warm.verify_token(&token, &[]).await?;

        let mut asking = client.clone();
        let refused = tokio::spawn(async move {
            let since = Instant::now();
            loop {
                match asking.verify_token(&token, &[]).await {
                    Ok(_) if since.elapsed() < limit => tokio::task::yield_now().await,
                    Ok(_) => bail!("still answered after {limit:?}"),
                    Err(e) if e.reason() == Some(ErrorReason::SessionRevoked) => {
                        return Ok(Instant::now());
                    }
                    Err(e) => bail!("{e}"),
                }
            }
        });
        let sent = Instant::now();
        match args.via {
            Via::RevokeSession => {
                revoker
                    .revoke_session(RevokeTarget::User(user), Some(&service))
                    .await?;
            }
            Via::BackchannelLogout => {
                let form = [("logout_token", issuer.mint_logout(&user, None))];
                let answer = http.post(&logout_url).form(&form).send().await?;
                ensure!(
                    answer.status().as_u16() == 200,
                    "logout answered {}",
                    answer.status()
                );
            }
        }
        let answered = Instant::now();
        let refused_at = refused.await??;
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        after_answer.record(micros(refused_at.saturating_duration_since(answered)))?;
        after_request.record(micros(refused_at.saturating_duration_since(sent)))?;
    }
    let summary = |h: &Histogram<u64>| {
        json!({
            "p50": h.value_at_quantile(0.5),
            "p90": h.value_at_quantile(0.9),
            "p99": h.value_at_quantile(0.99),
            "max": h.max(),
        })
    };
    Ok(json!({
        "tool": "revocation-delay",
        "via": format!("{:?}", args.via),
        "trials": args.trials,
        "heartbeat_ms": args.heartbeat_ms,
        "threads": args.threads,
        "after_answer_us": summary(&after_answer),
        "after_request_us": summary(&after_request),
    }))
}

/// Posts `count` distinct logout tokens, 32 at a time; logouts a second.
async fn logout_throughput(
    issuer: &DevIssuer,
    http: &reqwest::Client,
    url: &str,
    count: u32,
) -> anyhow::Result<serde_json::Value> {
    ensure!(
        (1..=1_000_000).contains(&count),
        "--throughput must be in 1..=1000000"
    );
    let tokens: Vec<String> = (0..count)
        .map(|i| issuer.mint_logout(&format!("auth0|flood-{i}"), None))
        .collect();
    let queue = Arc::new(std::sync::Mutex::new(tokens));
    let started = Instant::now();
    let workers: Vec<_> = (0..32)
        .map(|_| {
            let (queue, http, url) = (Arc::clone(&queue), http.clone(), url.to_owned());
            tokio::spawn(async move {
                loop {
                    let Some(token) = queue.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.pop()
                    else {
                        return Ok::<_, anyhow::Error>(());
                    };
                    let answer = http
                        .post(&url)
                        .form(&[("logout_token", token)])
                        .send()
                        .await?;
                    ensure!(
                        answer.status().as_u16() == 200,
                        "logout answered {}",
                        answer.status()
                    );
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(json!({
        "tool": "revocation-delay",
        "mode": "backchannel-logout throughput",
        "logouts": count,
        "seconds": seconds,
        "per_second": f64::from(count) / seconds,
    }))
}
