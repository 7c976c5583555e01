//! The load generator's engine: a bounded schedule shared by the workers,
//! one caller and one latency histogram per worker, merged at the end into
//! one JSON summary.
//!
//! Each worker keeps exactly one request in flight, so `--concurrency N`
//! workers keep N in flight. A request that *starts* after the warm-up is
//! measured; the run ends at the deadline, after `--requests` measured
//! requests, or — with `unique` — when every token has been sent once.

pub mod connect;
pub mod ext_authz;
pub mod grpc;
pub mod http;
pub mod watchers;

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// The longest a run may measure, whatever the command line says.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// The longest warm-up.
pub const MAX_WARMUP: Duration = Duration::from_secs(60);
/// How long calls still in flight at the deadline may take to finish.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// What to run: how many in flight, for how long.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Requests in flight (one per worker).
    pub concurrency: usize,
    /// Unmeasured time first (connections warm, caches and key sets filled).
    pub warmup: Duration,
    /// Measured time, at most [`MAX_DURATION`].
    pub duration: Duration,
    /// Stop after this many measured requests.
    pub requests: Option<u64>,
    /// How many distinct request payloads (tokens) there are.
    pub items: usize,
    /// Send each payload at most once (the new-token workload against a
    /// server that caches results), instead of cycling.
    pub unique: bool,
}

/// Why one call failed: a short kind to count by (a gRPC code, an HTTP
/// status) and a detail printed once per kind.
#[derive(Debug)]
pub struct CallError {
    /// Counted by this, e.g. `Unauthenticated` or `HTTP 401`.
    pub kind: String,
    /// The message, printed to stderr the first time a kind appears.
    pub detail: String,
}

impl CallError {
    /// An HTTP call's outcome: 200 is a success, any other status is counted
    /// by its number (`who answered …`), a failure to send or read is a
    /// `Transport` error.
    pub fn of_http(sent: anyhow::Result<::http::StatusCode>, who: &str) -> Result<(), CallError> {
        match sent {
            Ok(::http::StatusCode::OK) => Ok(()),
            Ok(status) => Err(CallError {
                kind: format!("HTTP {}", status.as_u16()),
                detail: format!("{who} answered {status}"),
            }),
            Err(error) => Err(CallError {
                kind: "Transport".into(),
                detail: format!("{error:#}"),
            }),
        }
    }
}

/// One worker's connection to the subject: sends request number `index`.
pub trait Caller: Send + 'static {
    /// Sends the request built from payload `index` and waits for the answer.
    fn call(&mut self, index: usize) -> impl Future<Output = Result<(), CallError>> + Send;
}

/// The shared schedule: which payload is next and whether the run is over.
#[derive(Debug)]
struct Schedule {
    measure_from: Instant,
    deadline: Instant,
    limit: Option<u64>,
    items: usize,
    unique: bool,
    next: AtomicU64,
    measured: AtomicU64,
    exhausted: AtomicBool,
}

impl Schedule {
    /// The next request to send: (payload index, measured?), or `None` when
    /// the run is over.
    fn next(&self, now: Instant) -> Option<(usize, bool)> {
        if now >= self.deadline {
            return None;
        }
        let measured = now >= self.measure_from;
        if measured
            && let Some(limit) = self.limit
            && self.measured.fetch_add(1, Ordering::Relaxed) >= limit
        {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        if self.unique && n >= self.items {
            self.exhausted.store(true, Ordering::Relaxed);
            return None;
        }
        Some((n % self.items, measured))
    }
}

/// What one worker saw.
#[derive(Debug)]
struct Record {
    latency_ns: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    last_done: Option<Instant>,
}

impl Record {
    fn new() -> anyhow::Result<Record> {
        Ok(Record {
            // 1 ns to 10 min, 3 significant digits.
            latency_ns: Histogram::new_with_bounds(1, 600_000_000_000, 3)?,
            errors: BTreeMap::new(),
            last_done: None,
        })
    }
}

/// Prints an error's detail the first time its kind appears in this process
/// (workers each see it, the reader needs it once).
fn report_first(kind: &str, detail: &str, warmup: bool) {
    static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let mut seen = SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if seen.insert(kind.to_owned()) {
        let phase = if warmup { " (warm-up)" } else { "" };
        eprintln!("loadgen: error{phase} {kind}: {detail}");
    }
}

async fn work<C: Caller>(mut caller: C, schedule: Arc<Schedule>) -> anyhow::Result<Record> {
    let mut record = Record::new()?;
    loop {
        let start = Instant::now();
        let Some((index, measured)) = schedule.next(start) else {
            return Ok(record);
        };
        let outcome = caller.call(index).await;
        if !measured {
            if let Err(error) = outcome
                && !record.errors.contains_key(&error.kind)
            {
                // Warm-up errors are not counted, but must not go unseen.
                report_first(&error.kind, &error.detail, true);
                record.errors.insert(error.kind, 0);
            }
            continue;
        }
        let done = Instant::now();
        record.last_done = Some(done);
        match outcome {
            Ok(()) => {
                let ns = (done - start).as_nanos().min(u128::from(u64::MAX)) as u64;
                record.latency_ns.saturating_record(ns.max(1));
            }
            Err(error) => {
                let count = record.errors.entry(error.kind).or_insert_with_key(|kind| {
                    report_first(kind, &error.detail, false);
                    0
                });
                *count += 1;
            }
        }
    }
}

/// Runs `callers` (one per worker) under `plan` and summarises.
pub async fn run<C: Caller>(callers: Vec<C>, plan: &Plan) -> anyhow::Result<Summary> {
    anyhow::ensure!(plan.items > 0, "nothing to send");
    let started = Instant::now();
    let measure_from = started + plan.warmup.min(MAX_WARMUP);
    let schedule = Arc::new(Schedule {
        measure_from,
        deadline: measure_from + plan.duration.min(MAX_DURATION),
        limit: plan.requests,
        items: plan.items,
        unique: plan.unique,
        next: AtomicU64::new(0),
        measured: AtomicU64::new(0),
        exhausted: AtomicBool::new(false),
    });
    let workers: Vec<_> = callers
        .into_iter()
        .map(|caller| tokio::spawn(work(caller, Arc::clone(&schedule))))
        .collect();

    let mut summary = Summary::new()?;
    let drain_by = tokio::time::Instant::from_std(schedule.deadline + DRAIN_GRACE);
    for worker in workers {
        match tokio::time::timeout_at(drain_by, worker).await {
            Ok(joined) => summary.add(joined??)?,
            Err(_) => summary.hung += 1,
        }
    }
    summary.elapsed = summary.last_done.map_or(Duration::ZERO, |last| {
        last.saturating_duration_since(measure_from)
    });
    summary.exhausted = schedule.exhausted.load(Ordering::Relaxed);
    let next = schedule.next.load(Ordering::Relaxed);
    summary.sent = if plan.unique {
        next.min(plan.items as u64)
    } else {
        next
    };
    Ok(summary)
}

/// The merged result of a run.
#[derive(Debug)]
pub struct Summary {
    latency_ns: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    last_done: Option<Instant>,
    elapsed: Duration,
    /// Workers still waiting on a call long after the deadline (their
    /// requests are lost; the run is broken).
    hung: u64,
    exhausted: bool,
    sent: u64,
}

impl Summary {
    fn new() -> anyhow::Result<Summary> {
        Ok(Summary {
            latency_ns: Record::new()?.latency_ns,
            errors: BTreeMap::new(),
            last_done: None,
            elapsed: Duration::ZERO,
            hung: 0,
            exhausted: false,
            sent: 0,
        })
    }

    fn add(&mut self, record: Record) -> anyhow::Result<()> {
        self.latency_ns.add(&record.latency_ns)?;
        for (kind, count) in record.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        self.last_done = self.last_done.max(record.last_done);
        Ok(())
    }

    /// Measured calls that failed (any non-OK answer, or a hung worker).
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum::<u64>() + self.hung
    }

    /// Measured calls, successful or not.
    pub fn requests(&self) -> u64 {
        self.latency_ns.len() + self.errors.values().sum::<u64>()
    }

    /// The summary as one JSON object; `extra` fields (target, workload)
    /// come first.
    pub fn to_json(&self, extra: Value) -> Value {
        let us = |q: f64| self.latency_ns.value_at_quantile(q) as f64 / 1000.0;
        let seconds = self.elapsed.as_secs_f64();
        let mut errors: serde_json::Map<String, Value> = self
            .errors
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(kind, n)| (kind.clone(), json!(n)))
            .collect();
        if self.hung > 0 {
            errors.insert("HungWorkers".into(), json!(self.hung));
        }
        let mut out = match extra {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        let requests = self.requests();
        out.extend([
            ("requests".into(), json!(requests)),
            ("ok".into(), json!(self.latency_ns.len())),
            ("errors".into(), json!(self.error_count())),
            ("errors_by_code".into(), Value::Object(errors)),
            ("duration_s".into(), json!(round(seconds, 3))),
            (
                "throughput_rps".into(),
                json!(if seconds > 0.0 {
                    round(requests as f64 / seconds, 1)
                } else {
                    0.0
                }),
            ),
            (
                "latency_us".into(),
                json!({
                    "p50": round(us(0.5), 1),
                    "p90": round(us(0.9), 1),
                    "p99": round(us(0.99), 1),
                    "p999": round(us(0.999), 1),
                    "max": round(self.latency_ns.max() as f64 / 1000.0, 1),
                    "mean": round(self.latency_ns.mean() / 1000.0, 1),
                }),
            ),
            ("tokens_sent_incl_warmup".into(), json!(self.sent)),
            ("tokens_exhausted".into(), json!(self.exhausted)),
        ]);
        Value::Object(out)
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// The loopback socket address of an `http://host:port` URL.
pub async fn resolve(url: &::http::Uri) -> anyhow::Result<std::net::SocketAddr> {
    anyhow::ensure!(
        url.scheme_str() == Some("http"),
        "{url}: only plain http:// on loopback is supported"
    );
    let authority = url
        .authority()
        .ok_or_else(|| anyhow::anyhow!("{url} names no host"))?;
    let port = authority.port_u16().unwrap_or(80);
    let addr = tokio::net::lookup_host((authority.host(), port))
        .await?
        .find(|addr| addr.ip().is_loopback())
        .ok_or_else(|| anyhow::anyhow!("{url} does not resolve to a loopback address"))?;
    Ok(addr)
}
