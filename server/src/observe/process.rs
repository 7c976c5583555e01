//! Process metrics read from /proc at scrape time, under the names the
//! Prometheus client libraries use: `process_resident_memory_bytes`,
//! `process_cpu_seconds_total`, `process_open_fds`, `process_max_fds`,
//! `process_threads`, `process_start_time_seconds`. On systems without
//! /proc nothing is reported.

use std::sync::OnceLock;

/// Clock ticks per second for /proc's CPU times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;
const PAGE_SIZE: f64 = 4096.0;

/// When this process started (unix seconds), taken at the first scrape's
/// setup.
static STARTED: OnceLock<f64> = OnceLock::new();

/// Notes the start time; call once at start-up.
pub(super) fn started() {
    STARTED.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default()
    });
}

/// Sets the process gauges from /proc/self.
pub(super) fn record() {
    if let Some(start) = STARTED.get() {
        metrics::gauge!("process_start_time_seconds").set(*start);
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        && let Some((cpu, threads, rss_pages)) = parse_stat(&stat)
    {
        // A gauge: the facade's counters are integers, CPU time is not.
        metrics::gauge!("process_cpu_seconds_total").set(cpu);
        metrics::gauge!("process_threads").set(threads);
        metrics::gauge!("process_resident_memory_bytes").set(rss_pages * PAGE_SIZE);
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("process_open_fds").set(entries.count() as f64);
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits")
        && let Some(max) = max_fds(&limits)
    {
        metrics::gauge!("process_max_fds").set(max);
    }
}

/// CPU seconds (user + system), threads and resident pages from
/// /proc/self/stat. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
fn parse_stat(stat: &str) -> Option<(f64, f64, f64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so field N is fields[N - 3].
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    let cpu = (field(14)? + field(15)?) / TICKS_PER_SECOND;
    Some((cpu, field(20)?, field(24)?))
}

/// The soft limit on open files from /proc/self/limits.
fn max_fds(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 123 1000000 300 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((3.0, 7.0, 300.0)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn the_open_files_limit_is_read() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_fds(limits), Some(1024.0));
    }

    #[test]
    fn this_process_can_be_read() {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc");
        let (_, threads, rss) = parse_stat(&stat).expect("parsed");
        assert!(threads >= 1.0 && rss > 0.0);
    }
}
