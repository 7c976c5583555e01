//! `loadgen`: a bounded gRPC (or HTTP/1.1) load generator that prints one
//! JSON line. See `bench/README.md`.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use authd_bench::{
    load::{self, MAX_DURATION, Plan, Summary, ext_authz, grpc, http, watchers},
    tokens,
};
use clap::{Parser, ValueEnum};
use serde_json::json;

/// Sends `auth.v1.AuthService/VerifyToken` (or, with `--http`, `GET` with a
/// bearer token) with a fixed number of requests in flight, and prints
/// throughput, latency percentiles and errors by code as one JSON line.
#[derive(Debug, Parser)]
// A later option wins over an earlier one, so scripts can append overrides.
#[command(version, about, args_override_self = true)]
struct Args {
    /// The gRPC server, e.g. `http://127.0.0.1:50051` (loopback only).
    #[arg(long, required_unless_present_any = ["http", "connect"], conflicts_with = "http")]
    target: Option<::http::Uri>,
    /// Instead of gRPC: an HTTP/1.1 URL to `GET` with `Authorization: Bearer
    /// <token>`, one keep-alive connection per request in flight; any answer
    /// but 200 is an error.
    #[arg(long, conflicts_with = "connect")]
    http: Option<::http::Uri>,
    /// Instead of gRPC: VerifyToken over the Connect protocol's JSON, `POST
    /// <URL>/auth.v1.AuthService/VerifyToken` (authd's own port), on one
    /// HTTP/1.1 keep-alive connection per request in flight, or with
    /// `--http2` over `--connections` HTTP/2 connections.
    #[arg(long, conflicts_with = "target")]
    connect: Option<::http::Uri>,
    /// `--connect` over HTTP/2 (prior knowledge) instead of HTTP/1.1.
    #[arg(long, requires = "connect")]
    http2: bool,
    /// `verify` needs `--tokens`; `noop` (the do-nothing service) sends the
    /// same message, with a placeholder token unless `--tokens` is given;
    /// `check` sends Envoy's `Authorization/Check` with the token in the
    /// `authorization` header and the scopes as `context_extensions`.
    #[arg(long, value_enum, default_value_t = Method::Verify)]
    method: Method,
    /// A file of tokens, one per line, sent in order and cycled.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// Use only the first K tokens of the file (1 = the repeated-token workload).
    #[arg(long, value_name = "K")]
    distinct: Option<usize>,
    /// Send every token at most once (warm-up included) and stop when they
    /// run out: the new-token workload against a server that caches results.
    #[arg(long)]
    unique: bool,
    /// Scopes every request requires (repeatable).
    #[arg(long = "required-scope", value_name = "SCOPE")]
    required_scopes: Vec<String>,
    /// Requests in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// HTTP/2 connections the gRPC requests are spread over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// gRPC over TLS: the PEM file of the CA that signed the server's
    /// certificate (which must name `localhost`).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// A new connection for every call (TCP, TLS when `--tls-ca`, HTTP/2),
    /// closed after it: measures connections per second, not calls on
    /// established connections. `verify` only.
    #[arg(long)]
    connection_per_call: bool,
    /// Stop after this many measured requests.
    #[arg(long)]
    requests: Option<u64>,
    /// Measured seconds (at most 600; default 10, or 600 with `--requests`).
    #[arg(long)]
    duration: Option<f64>,
    /// Unmeasured seconds first (at most 60).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Runtime threads; 1 is a current-thread runtime (pin it with taskset).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// A name for the run, copied into the JSON.
    #[arg(long)]
    label: Option<String>,
    /// Exit with status 3 when any measured request failed.
    #[arg(long)]
    fail_on_errors: bool,
    /// Hold this many idle WatchRevocations streams open during the run
    /// (gRPC only), on their own connections: what watchers cost authd.
    #[arg(long, default_value_t = 0, requires = "watch_token")]
    watchers: usize,
    /// A file whose first line is a token authd lets watch revocations
    /// (`watch.trusted_permission`); may be the `--tokens` file when authd
    /// is configured to trust its permission.
    #[arg(long, value_name = "FILE")]
    watch_token: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Method {
    Verify,
    Noop,
    Check,
}

/// Same length as a typical RS256 access token, so the do-nothing service
/// receives messages of the usual size.
const PLACEHOLDER_TOKEN_BYTES: usize = 800;

fn main() -> ExitCode {
    let args = Args::parse();
    let result = authd_bench::runtime(args.threads)
        .context("cannot start the runtime")
        .and_then(|runtime| runtime.block_on(run(&args)));
    match result {
        Ok((line, errors)) => {
            println!("{line}");
            if errors > 0 && args.fail_on_errors {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn plan(args: &Args, items: usize) -> anyhow::Result<Plan> {
    let duration = match (args.duration, args.requests) {
        (Some(seconds), _) => {
            anyhow::ensure!(
                seconds > 0.0 && seconds <= MAX_DURATION.as_secs_f64(),
                "--duration must be in (0, {}] seconds",
                MAX_DURATION.as_secs()
            );
            Duration::from_secs_f64(seconds)
        }
        (None, Some(_)) => MAX_DURATION,
        (None, None) => Duration::from_secs(10),
    };
    anyhow::ensure!(
        (0.0..=load::MAX_WARMUP.as_secs_f64()).contains(&args.warmup),
        "--warmup must be in [0, {}] seconds",
        load::MAX_WARMUP.as_secs()
    );
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    Ok(Plan {
        concurrency: args.concurrency,
        warmup: Duration::from_secs_f64(args.warmup),
        duration,
        requests: args.requests,
        items,
        unique: args.unique,
    })
}

async fn run(args: &Args) -> anyhow::Result<(serde_json::Value, u64)> {
    anyhow::ensure!(
        args.watchers == 0 || (args.http.is_none() && !args.connection_per_call),
        "--watchers needs gRPC on established connections"
    );
    let tokens = match (&args.tokens, args.method) {
        (Some(path), _) => tokens::read(path, args.distinct)?,
        (None, Method::Noop) => vec!["x".repeat(PLACEHOLDER_TOKEN_BYTES)],
        (None, Method::Verify | Method::Check) => {
            anyhow::bail!("--tokens FILE is needed to verify tokens")
        }
    };
    let plan = plan(args, tokens.len())?;
    let (protocol, target, connections, summary) = if let Some(url) = &args.connect {
        anyhow::ensure!(
            args.method == Method::Verify,
            "--connect sends VerifyToken only"
        );
        let bodies = load::connect::bodies(&tokens, &args.required_scopes);
        let mut callers = Vec::with_capacity(plan.concurrency);
        let connections = if args.http2 {
            let addr = load::resolve(url).await?;
            let connections = args.connections.clamp(1, plan.concurrency);
            let mut shared = Vec::with_capacity(connections);
            for _ in 0..connections {
                shared.push(load::connect::H2::connect(addr).await?);
            }
            for i in 0..plan.concurrency {
                callers.push(load::connect::JsonCaller::http2(
                    addr,
                    shared[i % connections].clone(),
                    Arc::clone(&bodies),
                )?);
            }
            connections
        } else {
            for _ in 0..plan.concurrency {
                callers.push(load::connect::JsonCaller::http1(url, Arc::clone(&bodies)).await?);
            }
            plan.concurrency
        };
        let summary = load::run(callers, &plan).await?;
        let protocol = if args.http2 {
            "connect-json-h2"
        } else {
            "connect-json-http1"
        };
        (protocol, url.to_string(), connections, summary)
    } else if let Some(url) = &args.http {
        let authorizations = http::authorizations(&tokens)?;
        let mut callers = Vec::with_capacity(plan.concurrency);
        for _ in 0..plan.concurrency {
            callers.push(http::BearerCaller::connect(url, Arc::clone(&authorizations)).await?);
        }
        let summary = load::run(callers, &plan).await?;
        ("http1", url.to_string(), plan.concurrency, summary)
    } else {
        let target = args
            .target
            .clone()
            .context("--target or --http is needed")?;
        let addr: SocketAddr = load::resolve(&target).await?;
        let tls = args
            .tls_ca
            .as_deref()
            .map(grpc::Tls::from_ca_file)
            .transpose()?;
        if args.connection_per_call {
            anyhow::ensure!(
                args.method == Method::Verify,
                "--connection-per-call sends VerifyToken only"
            );
            let requests = grpc::requests(&tokens, &args.required_scopes);
            let callers = (0..plan.concurrency)
                .map(|_| {
                    grpc::ConnectCaller::new(
                        addr,
                        tls.clone(),
                        target.clone(),
                        Arc::clone(&requests),
                    )
                })
                .collect();
            let summary = load::run(callers, &plan).await?;
            let errors = summary.error_count();
            let line = summary.to_json(json!({
                "label": args.label,
                "protocol": if tls.is_some() { "grpc+tls" } else { "grpc" },
                "target": target.to_string(),
                "method": "verify",
                "concurrency": plan.concurrency,
                // 0: a new connection for every call.
                "connections": 0,
                "threads": args.threads.max(1),
                "distinct_tokens": tokens.len(),
                "unique": plan.unique,
                "warmup_s": plan.warmup.as_secs_f64(),
            }));
            return Ok((line, errors));
        }
        let watchers = match (&args.watch_token, args.watchers) {
            (Some(path), count) if count > 0 => {
                let token = tokens::read(path, Some(1))?
                    .into_iter()
                    .next()
                    .context("--watch-token: an empty file")?;
                Some(watchers::open(addr, &target, tls.as_ref(), &token, count).await?)
            }
            _ => None,
        };
        let connections = args.connections.clamp(1, plan.concurrency);
        let mut channels = Vec::with_capacity(connections);
        for _ in 0..connections {
            channels.push(grpc::H2Connection::connect_with(addr, tls.as_ref()).await?);
        }
        let summary: Summary = if args.method == Method::Check {
            let requests = ext_authz::requests(&tokens, &args.required_scopes);
            let callers = (0..plan.concurrency)
                .map(|i| {
                    ext_authz::CheckCaller::new(
                        channels[i % connections].clone(),
                        target.clone(),
                        Arc::clone(&requests),
                    )
                })
                .collect();
            load::run(callers, &plan).await?
        } else {
            let requests = grpc::requests(&tokens, &args.required_scopes);
            let callers = (0..plan.concurrency)
                .map(|i| {
                    grpc::VerifyCaller::new(
                        channels[i % connections].clone(),
                        target.clone(),
                        Arc::clone(&requests),
                    )
                })
                .collect();
            load::run(callers, &plan).await?
        };
        if let Some(watchers) = &watchers {
            anyhow::ensure!(
                watchers.open() == args.watchers,
                "{} of {} watchers were dropped during the run",
                args.watchers - watchers.open(),
                args.watchers
            );
        }
        let protocol = if tls.is_some() { "grpc+tls" } else { "grpc" };
        (protocol, target.to_string(), connections, summary)
    };
    let errors = summary.error_count();
    let line = summary.to_json(json!({
        "label": args.label,
        "protocol": protocol,
        "target": target,
        "method": format!("{:?}", args.method).to_lowercase(),
        "concurrency": plan.concurrency,
        "connections": connections,
        "threads": args.threads.max(1),
        "distinct_tokens": tokens.len(),
        "unique": plan.unique,
        "warmup_s": plan.warmup.as_secs_f64(),
        "watchers": args.watchers,
    }));
    Ok((line, errors))
}
