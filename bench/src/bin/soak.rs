//! `soak`: measures what a running authd sustains of a mixed workload, then
//! holds it at a fraction of that for a long time, checking every answer and
//! sampling the server process every second. See `bench/README.md`.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use authd_bench::{
    load::{self, grpc::H2Connection},
    soak::{
        Recorder,
        mix::{self, Mix, Pace, Tokens},
        report::{self, CSV_HEADER, Row},
        sessions::{DevIssuer, Sessions},
    },
    tokens,
};
use authd_proto::pb::{VerifyTokenRequest, auth_service_client::AuthServiceClient};
use clap::Parser;
use serde_json::json;

/// Runs the soak mix against authd at `--target`: `--capacity-seconds`
/// closed-loop (the capacity), then `--duration` seconds open-loop at
/// `--fraction` of it. Writes a CSV row a second to `--csv` and a JSON
/// summary to `--summary` (also printed). Exit status 3 when any answer was
/// unexpected.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// authd's gRPC address, e.g. `http://127.0.0.1:50051` (loopback only).
    #[arg(long)]
    target: http::Uri,
    /// authd's process id, sampled in `/proc` every second.
    #[arg(long)]
    authd_pid: u32,
    /// Valid tokens (bench-issuer `--tokens-out`); at least 3,100.
    #[arg(long)]
    tokens: PathBuf,
    /// Expired tokens (bench-issuer `--expired-out`).
    #[arg(long)]
    expired: PathBuf,
    /// Tokens for another audience (bench-issuer `--wrong-audience-out`).
    #[arg(long)]
    wrong_audience: PathBuf,
    /// The development issuer (dev-issuer's READY line), for sessions.
    #[arg(long)]
    dev_issuer: String,
    /// authd's OAuth client at the development issuer.
    #[arg(long, default_value = authd::dangerous::DEV_CLIENT_ID)]
    client_id: String,
    /// The file holding that client's secret (dev-issuer `--secret-out`).
    #[arg(long)]
    client_secret_file: PathBuf,
    /// Closed-loop seconds that measure the capacity.
    #[arg(long, default_value_t = 10.0)]
    capacity_seconds: f64,
    /// Requests in flight while measuring the capacity.
    #[arg(long, default_value_t = 32)]
    capacity_concurrency: usize,
    /// The soak's rate as a fraction of the capacity.
    #[arg(long, default_value_t = 0.8)]
    fraction: f64,
    /// Soak seconds (at most 3600).
    #[arg(long, default_value_t = 600.0)]
    duration: f64,
    /// Paced workers (the most calls in flight during the soak).
    #[arg(long, default_value_t = 256)]
    workers: usize,
    /// HTTP/2 connections for the VerifyToken mix (sessions have one more).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Session lifecycles started per second (each makes 10 calls).
    #[arg(long, default_value_t = 5.0)]
    session_rate: f64,
    /// Seconds after creation that a session is refreshed at the issuer;
    /// above authd's `sessions.reuse_access_token_seconds` (10).
    #[arg(long, default_value_t = 12.0)]
    refresh_after: f64,
    /// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clk_tck: u64,
    /// The per-second CSV.
    #[arg(long)]
    csv: PathBuf,
    /// The JSON summary.
    #[arg(long)]
    summary: PathBuf,
    /// A name for the run (e.g. the store), copied into the summary.
    #[arg(long, default_value = "")]
    label: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = authd_bench::runtime(1)
        .context("cannot start the runtime")
        .and_then(|runtime| runtime.block_on(run(&args)));
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(3),
        Err(error) => {
            eprintln!("soak: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Samples the server every second into CSV rows until `stop`.
async fn sampler(
    args: &Args,
    recorder: Arc<Recorder>,
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    rows: Arc<Mutex<Vec<Row>>>,
    started: Instant,
) -> anyhow::Result<()> {
    let mut csv = format!("{CSV_HEADER}\n");
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut last = (Instant::now(), report::sample(args.authd_pid)?);
    while !stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        let window = recorder.take_window();
        let now = Instant::now();
        let proc = report::sample(args.authd_pid).context("authd is gone")?;
        let dt = (now - last.0).as_secs_f64();
        let cpu = proc.cpu_ticks.saturating_sub(last.1.cpu_ticks) as f64 / args.clk_tck as f64;
        let row = Row {
            t_s: (now - started).as_secs_f64(),
            phase: ["capacity", "soak", "drain"][usize::from(phase.load(Ordering::Relaxed)).min(2)],
            dt_s: dt,
            proc,
            cpu_pct: 100.0 * cpu / dt,
            rate: window.calls as f64 / dt,
        };
        csv.push_str(&row.line(&window));
        csv.push('\n');
        report::write(&args.csv, &csv)?;
        rows.lock().unwrap_or_else(|e| e.into_inner()).push(row);
        last = (now, proc);
    }
    Ok(())
}

async fn run(args: &Args) -> anyhow::Result<u64> {
    anyhow::ensure!(
        args.duration > 0.0 && args.duration <= 3600.0,
        "--duration in (0, 3600]"
    );
    anyhow::ensure!(
        args.fraction > 0.0 && args.fraction <= 1.0,
        "--fraction in (0, 1]"
    );
    anyhow::ensure!(args.session_rate > 0.0 && args.capacity_seconds >= 3.0);
    let mix = Arc::new(Mix::new(Tokens {
        valid: tokens::read(&args.tokens, None)?,
        expired: tokens::read(&args.expired, None)?,
        wrong_audience: tokens::read(&args.wrong_audience, None)?,
    })?);
    let addr: SocketAddr = load::resolve(&args.target).await?;
    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) + 1 {
        let connection = H2Connection::connect(addr).await?;
        clients.push(AuthServiceClient::with_origin(
            connection,
            args.target.clone(),
        ));
    }
    let session_client = clients.pop().context("no connection")?;
    // A broken setup fails here, not as a run full of errors.
    let check = VerifyTokenRequest {
        token: tokens::read(&args.tokens, Some(1))?.remove(0),
        required_scopes: vec![mix::SCOPE.to_owned()],
        audience: None,
        ..VerifyTokenRequest::default()
    };
    let answer = clients[0].clone().verify_token(check).await;
    if let Err(status) = &answer {
        anyhow::bail!("the check call failed: {status:?}");
    }
    let secret = std::fs::read_to_string(&args.client_secret_file)?;
    let dev = DevIssuer {
        issuer: args.dev_issuer.clone(),
        client_id: args.client_id.clone(),
        client_secret: secret.trim().to_owned(),
    };

    let recorder = Arc::new(Recorder::default());
    let refresh_after = Duration::from_secs_f64(args.refresh_after);
    let sessions = Arc::new(Sessions::new(
        session_client,
        dev,
        Arc::clone(&recorder),
        refresh_after,
    )?);
    let started = Instant::now();
    let capacity_time = Duration::from_secs_f64(args.capacity_seconds);
    let soak_time = Duration::from_secs_f64(args.duration);
    // 0: capacity, 1: soak, 2: drain (the soak is over, lifecycles end).
    let (phase, stop) = (Arc::new(AtomicU8::new(0)), Arc::new(AtomicBool::new(false)));
    let rows = Arc::new(Mutex::new(Vec::new()));

    // Lifecycles start at a fixed rate through both phases, the last ones
    // early enough to end before the soak does.
    let last_start = started + capacity_time + soak_time.saturating_sub(sessions.lifetime() * 2);
    let pacer = {
        let sessions = Arc::clone(&sessions);
        let period = Duration::from_secs_f64(1.0 / args.session_rate);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            let mut lifecycles = Vec::new();
            let mut n = 0u64;
            loop {
                ticks.tick().await;
                if Instant::now() >= last_start {
                    break;
                }
                lifecycles.push(tokio::spawn(Arc::clone(&sessions).lifecycle(n)));
                n += 1;
            }
            for lifecycle in lifecycles {
                let _ = lifecycle.await;
            }
            n
        })
    };
    let sample = {
        let (recorder, phase, stop, rows) = (
            Arc::clone(&recorder),
            Arc::clone(&phase),
            Arc::clone(&stop),
            Arc::clone(&rows),
        );
        async move { sampler(args, recorder, phase, stop, rows, started).await }
    };
    let phases = async {
        // Capacity: closed-loop, as fast as answers come back.
        let pace = Arc::new(Pace::closed(capacity_time));
        let workers: Vec<_> = (0..args.capacity_concurrency)
            .map(|i| {
                let client = clients[i % clients.len()].clone();
                tokio::spawn(mix::worker(
                    client,
                    Arc::clone(&mix),
                    Arc::clone(&pace),
                    Arc::clone(&recorder),
                ))
            })
            .collect();
        for worker in workers {
            worker.await?;
        }
        // The first two seconds warm the connections and the key sets.
        let (capacity_rows, capacity_cpu): (Vec<f64>, Vec<f64>) = {
            let rows = rows.lock().unwrap_or_else(|e| e.into_inner());
            rows.iter().skip(2).map(|r| (r.rate, r.cpu_pct)).unzip()
        };
        let server_cpu = capacity_cpu.iter().sum::<f64>() / capacity_cpu.len().max(1) as f64;
        let (capacity_total, capacity_tally) = recorder.totals();
        let mut sorted = capacity_rows.clone();
        sorted.sort_by(f64::total_cmp);
        let capacity = sorted
            .get(sorted.len() / 2)
            .copied()
            .context("no capacity samples")?;
        let target = capacity * args.fraction;
        eprintln!(
            "soak: capacity {capacity:.0} calls/s (median of {} s), soak at {target:.0}/s for {} s",
            sorted.len(),
            args.duration
        );

        phase.store(1, Ordering::Relaxed);
        let soak_started = Instant::now();
        let pace = Arc::new(Pace::open(target, soak_time));
        let workers: Vec<_> = (0..args.workers)
            .map(|i| {
                let client = clients[i % clients.len()].clone();
                tokio::spawn(mix::worker(
                    client,
                    Arc::clone(&mix),
                    Arc::clone(&pace),
                    Arc::clone(&recorder),
                ))
            })
            .collect();
        for worker in workers {
            worker.await?;
        }
        let soak_seconds = soak_started.elapsed().as_secs_f64();
        phase.store(2, Ordering::Relaxed);
        let issued = pace.issued();
        anyhow::Ok((
            capacity,
            server_cpu,
            target,
            capacity_total,
            capacity_tally,
            soak_seconds,
            issued,
        ))
    };
    let ended = async {
        let result = phases.await;
        let lifecycles = pacer.await;
        stop.store(true, Ordering::Relaxed);
        (result, lifecycles)
    };
    let (sampled, (phases, lifecycles)) = tokio::join!(sample, ended);
    sampled?;
    let (capacity, capacity_cpu, target, cap_total, cap_tally, soak_seconds, _) = phases?;
    let lifecycles = lifecycles?;
    let (total, tally) = recorder.totals();
    let rows: Vec<Row> = rows
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|r| r.phase == "soak")
        .cloned()
        .collect();
    let head = json!({
        "label": args.label,
        "target": args.target.to_string(),
        "mix": "VerifyToken: 70% repeated (100 tokens), 20% fresh (pool cycled), 3% expired, 3% wrong audience, 2% garbage, 1% bad signature, 1% missing scope; plus session lifecycles",
        "fresh_pool": mix.fresh_pool(),
        "session_rate_per_s": args.session_rate,
        "session_lifecycles": lifecycles,
        "capacity": {
            "seconds": args.capacity_seconds,
            "concurrency": args.capacity_concurrency,
            "calls_per_s_median": capacity.round(),
            "server_cpu_pct_mean": (capacity_cpu * 10.0).round() / 10.0,
            "calls": cap_total.calls,
            "unexpected": cap_total.unexpected,
            "unexpected_by_kind": cap_tally.unexpected,
        },
        "fraction": args.fraction,
        "target_calls_per_s": target.round(),
        "paced_calls_due": (target * args.duration).floor(),
        "workers": args.workers,
        "connections": args.connections,
    });
    let summary = report::summary(head, &rows, &total, &tally, soak_seconds);
    let text = serde_json::to_string_pretty(&summary)?;
    report::write(&args.summary, &format!("{text}\n"))?;
    println!("{text}");
    Ok(total.unexpected + cap_total.unexpected)
}
