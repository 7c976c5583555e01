//! What the soak writes: one CSV row a second (calls, latency, outcomes and
//! the server process's memory, fds, threads and CPU from `/proc`), and a
//! JSON summary of the soak phase.

use std::{fs, io::Write, path::Path};

use serde_json::{Value, json};

use super::{Tally, Window};

/// The server process as `/proc/<pid>` shows it at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// `VmRSS`, KiB.
    pub rss_kib: u64,
    /// Entries in `/proc/<pid>/fd`.
    pub fds: u64,
    /// `Threads`.
    pub threads: u64,
    /// utime + stime, clock ticks.
    pub cpu_ticks: u64,
}

/// Reads `/proc/<pid>`; fails once the process is gone.
pub fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is the
    // first, utime the 12th, stime the 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(ProcSample {
        rss_kib: field("VmRSS:"),
        fds: fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64,
        threads: field("Threads:"),
        cpu_ticks: tick(11) + tick(12),
    })
}

/// The CSV header; [`Row::line`] writes the fields in this order.
pub const CSV_HEADER: &str = "t_s,phase,dt_s,calls,calls_per_s,ok,intended,unexpected,\
session_calls,late,verify_p50_us,verify_p99_us,verify_max_us,session_p99_us,\
rss_kib,fds,threads,server_cpu_pct";

/// One second of the run.
#[derive(Debug, Clone)]
pub struct Row {
    /// Seconds since the run started (end of this window).
    pub t_s: f64,
    /// `capacity` or `soak`.
    pub phase: &'static str,
    /// The window's length, s.
    pub dt_s: f64,
    /// The server at the end of the window.
    pub proc: ProcSample,
    /// The server's CPU use over the window, % of one core.
    pub cpu_pct: f64,
    /// Calls per second in the window.
    pub rate: f64,
}

impl Row {
    /// The CSV line for this row and its window.
    pub fn line(&self, w: &Window) -> String {
        let q = |h: &hdrhistogram::Histogram<u64>, q: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        format!(
            "{:.3},{},{:.3},{},{:.1},{},{},{},{},{},{},{},{},{},{},{},{},{:.1}",
            self.t_s,
            self.phase,
            self.dt_s,
            w.calls,
            self.rate,
            w.ok,
            w.intended,
            w.unexpected,
            w.session_calls,
            w.late,
            q(&w.verify_us, 0.5),
            q(&w.verify_us, 0.99),
            w.verify_us.max(),
            q(&w.session_us, 0.99),
            self.proc.rss_kib,
            self.proc.fds,
            self.proc.threads,
            self.cpu_pct,
        )
    }
}

/// Least-squares slope of `ys` over `xs` (same units per x unit).
pub fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len().min(ys.len()) as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in xs.iter().zip(ys) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
    }
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

fn latency(h: &hdrhistogram::Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!(null);
    }
    json!({
        "p50": h.value_at_quantile(0.5),
        "p90": h.value_at_quantile(0.9),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
        "mean": round(h.mean(), 1),
    })
}

/// The soak phase's summary. `rows` are its per-second rows; the RSS slope
/// is fitted over their last two thirds (after the caches fill).
pub fn summary(
    mut head: Value,
    rows: &[Row],
    total: &Window,
    tally: &Tally,
    seconds: f64,
) -> Value {
    let tail = &rows[rows.len() / 3..];
    let xs: Vec<f64> = tail.iter().map(|r| r.t_s / 60.0).collect();
    let rss: Vec<f64> = tail.iter().map(|r| r.proc.rss_kib as f64).collect();
    let range = |f: fn(&Row) -> u64, rows: &[Row]| {
        json!({
            "min": rows.iter().map(f).min().unwrap_or(0),
            "max": rows.iter().map(f).max().unwrap_or(0),
        })
    };
    let cpu: Vec<f64> = rows.iter().map(|r| r.cpu_pct).collect();
    let body = json!({
        "soak_seconds": round(seconds, 1),
        "calls": total.calls,
        "calls_per_s": round(total.calls as f64 / seconds.max(1e-9), 1),
        "ok": total.ok,
        "intended_refusals": total.intended,
        "unexpected": total.unexpected,
        "session_calls": total.session_calls,
        "late_sends": total.late,
        "late_threshold_ms": super::LATE.as_millis() as u64,
        "by_kind": tally.by_kind,
        "intended_by_reason": tally.intended,
        "unexpected_by_kind": tally.unexpected,
        "unexpected_first_messages": tally.unexpected_messages,
        "verify_latency_us": latency(&total.verify_us),
        "session_latency_us": latency(&total.session_us),
        "rss_kib": {
            "first": rows.first().map_or(0, |r| r.proc.rss_kib),
            "last": rows.last().map_or(0, |r| r.proc.rss_kib),
            "min": rows.iter().map(|r| r.proc.rss_kib).min().unwrap_or(0),
            "max": rows.iter().map(|r| r.proc.rss_kib).max().unwrap_or(0),
            "slope_kib_per_min_last_two_thirds": round(slope(&xs, &rss), 1),
            "fit_from_s": tail.first().map_or(0.0, |r| round(r.t_s, 1)),
        },
        "fds": range(|r| r.proc.fds, rows),
        "threads": range(|r| r.proc.threads, rows),
        "fds_last_two_thirds": range(|r| r.proc.fds, tail),
        "threads_last_two_thirds": range(|r| r.proc.threads, tail),
        "server_cpu_pct_mean": round(cpu.iter().sum::<f64>() / cpu.len().max(1) as f64, 1),
    });
    if let (Value::Object(head), Value::Object(body)) = (&mut head, body) {
        head.extend(body);
    }
    head
}

/// Writes `text` to `path` (replacing it).
pub fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = fs::File::create(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}
