//! Hostile traffic against the real `authd` binary on loopback, each case
//! while a legitimate client keeps verifying a token: a stream flood that
//! never reads, rapid reset, idle and slow-loris connections, more
//! connections than allowed, oversized, malformed, doubled and truncated
//! messages, deadlines, overload, oversized headers, junk kids and issuers.
//!
//! Each passes when the legitimate calls all succeed within their budget,
//! authd's memory and file descriptors stay under their bounds (and come
//! back), and authd answers (and logs) what it refused. Loops are bounded;
//! everything stays on loopback.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use authd_tests::{AuthdProcess, Issuer, h2raw};
use bytes::Bytes;
use tokio::{io::AsyncWriteExt, net::TcpStream, task::JoinHandle};
use tonic::Code;
use tonic_types::StatusExt;

/// The longest a legitimate call may take while authd is under attack. Loose
/// on purpose: the machine has two shared cores, and the attack runs on them.
const BUDGET: Duration = Duration::from_secs(2);

/// A client verifying `token` every 20 ms until stopped.
struct Legit {
    started: Instant,
    stop: Arc<AtomicBool>,
    task: JoinHandle<Vec<Result<Duration, String>>>,
}

impl Legit {
    async fn start(authd: &AuthdProcess, token: &str) -> Result<Legit> {
        let mut client = authd.client().await?;
        client.verify_token(token, &[]).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, token) = (Arc::clone(&stop), token.to_owned());
        let task = tokio::spawn(async move {
            let mut results = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                let call = tokio::time::timeout(BUDGET * 2, client.verify_token(&token, &[]));
                results.push(match call.await {
                    Ok(Ok(_)) => Ok(started.elapsed()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("no answer".to_owned()),
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            results
        });
        Ok(Legit {
            started: Instant::now(),
            stop,
            task,
        })
    }

    /// Stops and checks every call succeeded within the budget.
    async fn check(self, case: &str) -> Result<()> {
        // At least a second of calls, however short the attack was.
        tokio::time::sleep_until((self.started + Duration::from_secs(1)).into()).await;
        self.stop.store(true, Ordering::Relaxed);
        let results = self.task.await?;
        let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        let mut latencies: Vec<Duration> = results.iter().filter_map(|r| r.clone().ok()).collect();
        latencies.sort();
        let max = latencies.last().copied().unwrap_or_default();
        let p50 = latencies
            .get(latencies.len() / 2)
            .copied()
            .unwrap_or_default();
        eprintln!(
            "{case}: {} legitimate calls, p50 {p50:?}, max {max:?}, {} failed",
            results.len(),
            failed.len()
        );
        assert!(
            failed.is_empty(),
            "{case}: legitimate calls failed: {failed:?}"
        );
        assert!(results.len() >= 5, "{case}: too few legitimate calls ran");
        assert!(max <= BUDGET, "{case}: a legitimate call took {max:?}");
        Ok(())
    }
}

/// The issuer, authd verifying its RS256 tokens with `[limits]` set to
/// `limits` (and `extra` sections), and a valid token.
async fn setup_with(limits: &str, extra: &str) -> Result<(Issuer, AuthdProcess, String)> {
    let issuer = Issuer::start().await?;
    let authd = AuthdProcess::start(&format!(
        "{}[limits]\n{limits}{extra}",
        issuer.config_entry(&["RS256"])
    ))
    .await?;
    let token = issuer.token(&[("scope", "read:orders")]).await?;
    Ok((issuer, authd, token))
}

async fn setup(limits: &str) -> Result<(Issuer, AuthdProcess, String)> {
    setup_with(limits, "").await
}

/// Samples authd's resident memory every 50 ms while `during` runs; the peak.
async fn peak_rss_kib<F: std::future::Future>(
    authd: &AuthdProcess,
    during: F,
) -> Result<(u64, F::Output)> {
    let mut during = std::pin::pin!(during);
    let mut peak = authd.rss_kib()?;
    let mut every = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            out = &mut during => return Ok((peak.max(authd.rss_kib()?), out)),
            _ = every.tick() => peak = peak.max(authd.rss_kib()?),
        }
    }
}

async fn wait_until(within: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<bool> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done()? {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done()
}

/// What authd's first SETTINGS frame says, by identifier.
async fn server_settings(authd: &AuthdProcess) -> Result<Vec<(u16, u32)>> {
    let mut tcp = h2raw::connect(authd.addr).await?;
    let mut header = [0u8; 9];
    use tokio::io::AsyncReadExt;
    tcp.read_exact(&mut header).await?;
    assert_eq!(
        header[3],
        h2raw::kind::SETTINGS,
        "the server speaks first with SETTINGS"
    );
    let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await?;
    Ok(payload
        .chunks_exact(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_flood_that_never_reads_stays_within_tens_of_megabytes() -> Result<()> {
    let (_issuer, authd, token) = setup("").await?;
    let settings = server_settings(&authd).await?;
    assert!(
        settings.contains(&(0x3, 100)),
        "MAX_CONCURRENT_STREAMS advertised: {settings:?}"
    );
    assert!(
        settings.contains(&(0x6, 16384)),
        "MAX_HEADER_LIST_SIZE advertised: {settings:?}"
    );

    let baseline = authd.rss_kib()?;
    let legit = Legit::start(&authd, &token).await?;
    // 4 connections, each opening 50,000 streams (HEADERS only, no body),
    // never reading what authd answers.
    let flood = async {
        let mut connections = Vec::new();
        for _ in 0..4 {
            connections.push(tokio::spawn({
                let addr = authd.addr;
                async move {
                    let mut tcp = h2raw::connect(addr).await?;
                    tcp.write_all(&h2raw::settings_ack()).await?;
                    let mut sent = 0u32;
                    let write = async {
                        for batch in 0..500u32 {
                            let mut frames = Vec::new();
                            for i in 0..100u32 {
                                let stream = 2 * (batch * 100 + i) + 1;
                                frames.extend(h2raw::headers(
                                    stream,
                                    "/auth.v1.AuthService/VerifyToken",
                                    false,
                                ));
                            }
                            tcp.write_all(&frames).await?;
                            sent += 100;
                        }
                        Ok::<_, std::io::Error>(())
                    };
                    // authd may stop reading (or close): what was sent was sent.
                    let _ = tokio::time::timeout(Duration::from_secs(8), write).await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    Ok::<_, anyhow::Error>((sent, tcp))
                }
            }));
        }
        let mut held = Vec::new();
        for c in connections {
            held.push(c.await??);
        }
        Ok::<_, anyhow::Error>(held)
    };
    let (peak, held) = peak_rss_kib(&authd, flood).await?;
    let held = held?;
    let sent: u32 = held.iter().map(|(s, _)| s).sum();
    drop(held);
    legit.check("stream flood").await?;
    let grown = peak.saturating_sub(baseline);
    eprintln!(
        "stream flood: {sent} streams sent, RSS {baseline} KiB -> peak {peak} KiB (+{grown} KiB)"
    );
    assert!(
        grown < 48 * 1024,
        "RSS grew by {grown} KiB under the stream flood"
    );
    // And it is given back once the connections are gone.
    let back = wait_until(Duration::from_secs(10), || {
        Ok(authd.rss_kib()? < baseline + 16 * 1024)
    })
    .await?;
    assert!(
        back,
        "RSS stayed at {} KiB after the flood (baseline {baseline} KiB)",
        authd.rss_kib()?
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_ends_in_goaway() -> Result<()> {
    let (_issuer, authd, token) = setup("").await?;
    let legit = Legit::start(&authd, &token).await?;
    let tcp = h2raw::connect(authd.addr).await?;
    let (read, mut write) = tcp.into_split();
    let reader = tokio::spawn(h2raw::read_frames(read, Duration::from_secs(10)));
    write.write_all(&h2raw::settings_ack()).await?;
    // Open and cancel streams as fast as possible (CVE-2023-44487).
    let attack = async {
        for batch in 0..100u32 {
            let mut frames = Vec::new();
            for i in 0..100u32 {
                let stream = 2 * (batch * 100 + i) + 1;
                frames.extend(h2raw::headers(
                    stream,
                    "/auth.v1.AuthService/VerifyToken",
                    false,
                ));
                frames.extend(h2raw::cancel(stream));
            }
            write.write_all(&frames).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), attack).await;
    let seen = reader.await?;
    legit.check("rapid reset").await?;
    eprintln!("rapid reset: {seen:?}");
    assert_eq!(seen.goaway, Some(0xb), "GOAWAY ENHANCE_YOUR_CALM: {seen:?}");
    assert!(seen.closed, "the connection is closed: {seen:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_are_closed_and_their_descriptors_freed() -> Result<()> {
    rlimit::increase_nofile_limit(40_000)?;
    let (_issuer, authd, token) =
        setup("handshake_timeout_ms = 15000\nidle_timeout_seconds = 2\nmax_connections = 15000\n")
            .await?;
    let fds_before = authd.fds()?;
    let rss_before = authd.rss_kib()?;
    let legit = Legit::start(&authd, &token).await?;
    let (peak_fds, peak_rss) = (
        Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        Arc::new(std::sync::atomic::AtomicU64::new(0)),
    );
    let sampler = {
        let (fds, rss, pid) = (Arc::clone(&peak_fds), Arc::clone(&peak_rss), authd.pid);
        tokio::spawn(async move {
            loop {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let kib = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|r| r.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0);
                rss.fetch_max(kib, Ordering::Relaxed);
                let open = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
                fds.fetch_max(open, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // 10,000 connections that send nothing, 2,000 that send the preface a
    // byte every 1.2 s (slow loris: 29 s for the 24 bytes, so that one
    // accepted late from the flooded backlog is still cut off by the 15 s
    // handshake timeout first), and one that completes the handshake and
    // then makes no call.
    let mut idle = Vec::new();
    for _ in 0..20 {
        let batch: Vec<_> = (0..500).map(|_| TcpStream::connect(authd.addr)).collect();
        for tcp in futures_util::future::join_all(batch).await {
            idle.push(tcp?);
        }
    }
    let slow: Vec<JoinHandle<bool>> = (0..2000)
        .map(|_| {
            let addr = authd.addr;
            tokio::spawn(async move {
                let Ok(mut tcp) = TcpStream::connect(addr).await else {
                    return false;
                };
                for byte in h2raw::PREFACE {
                    if tcp.write_all(&[*byte]).await.is_err() {
                        return true; // closed by authd
                    }
                    tokio::time::sleep(Duration::from_millis(1200)).await;
                }
                false
            })
        })
        .collect();
    let quiet = h2raw::connect(authd.addr).await?;
    let (quiet_read, mut quiet_write) = quiet.into_split();
    quiet_write.write_all(&h2raw::settings_ack()).await?;
    let quiet = tokio::spawn(h2raw::read_frames(quiet_read, Duration::from_secs(20)));

    // authd accepts from its backlog at its own pace (slower when other
    // tests share the cores), and closes the first idle connections 15 s
    // after it accepted them while it may still be accepting the last: how
    // many it holds at once depends on that pace (8,000 to 12,000 here,
    // 6,300 with two busy loops on the two cores and tokio's default accept
    // queue). Thousands at once give the bounds below their meaning; that
    // authd accepted and closed every one is checked from its own count.
    let flood_in = wait_until(Duration::from_secs(10), || {
        Ok(peak_fds.load(Ordering::Relaxed) > fds_before + 5000)
    })
    .await?;
    let peak_fds = peak_fds.load(Ordering::Relaxed);
    let peak_rss = peak_rss.load(Ordering::Relaxed);
    eprintln!(
        "idle flood: fds {fds_before} -> peak {peak_fds}, RSS {rss_before} -> peak {peak_rss} KiB"
    );
    assert!(flood_in, "the flood reached authd: {peak_fds} fds");
    // The slow connections are closed long before their preface is done.
    let mut closed = 0;
    for s in slow {
        closed += usize::from(s.await?);
    }
    assert!(
        closed >= 1900,
        "only {closed} of 2000 slow-loris connections were closed"
    );
    let freed = wait_until(Duration::from_secs(10), || {
        Ok(authd.fds()? <= fds_before + 20)
    })
    .await?;
    sampler.abort();
    assert!(
        freed,
        "authd still holds {} fds (before: {fds_before})",
        authd.fds()?
    );
    let seen = quiet.await?;
    assert!(
        seen.goaway == Some(0) && seen.closed,
        "an idle connection gets GOAWAY(NO_ERROR) and is closed: {seen:?}"
    );
    legit.check("idle and slow connections").await?;
    assert!(
        peak_rss.saturating_sub(rss_before) < 64 * 1024,
        "RSS grew from {rss_before} to {peak_rss} KiB"
    );
    drop(idle);
    // Every idle connection, and every slow one closed, was closed by the
    // handshake timeout: authd's summaries (every 10 s, so the last may
    // reach the file after the connections are gone) add up to them all.
    let flood = 10_000 + closed;
    let logged = wait_until(Duration::from_secs(25), || {
        Ok(logged_total(&authd.log(), "no_handshake_in_time=") >= flood)
    })
    .await?;
    assert!(
        logged,
        "authd logs the {flood} connections it closed without a handshake:\n{}",
        authd.log()
    );
    Ok(())
}

/// The sum of `field` (written `name=`) over every summary line of `log`.
fn logged_total(log: &str, field: &str) -> usize {
    log.match_indices(field)
        .filter_map(|(at, _)| {
            let digits = &log[at + field.len()..];
            let end = digits
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(digits.len());
            digits[..end].parse::<usize>().ok()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed_at_once() -> Result<()> {
    let (_issuer, authd, token) = setup("max_connections = 40\n").await?;
    let legit = Legit::start(&authd, &token).await?;
    let mut held = Vec::new();
    for _ in 0..39 {
        held.push(h2raw::connect(authd.addr).await?);
    }
    // One more than the limit (the legitimate client holds one): closed.
    let extra = h2raw::connect(authd.addr).await?;
    let (read, _write) = extra.into_split();
    let seen = h2raw::read_frames(read, Duration::from_secs(3)).await;
    assert!(
        seen.closed && seen.frames[usize::from(h2raw::kind::SETTINGS)] == 0,
        "{seen:?}"
    );
    legit.check("connection limit").await?;
    drop(held);
    // Places come back when connections close.
    let mut fresh = None;
    for _ in 0..50 {
        if let Ok(mut c) = authd.client().await
            && c.verify_token(&token, &[]).await.is_ok()
        {
            fresh = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        fresh.is_some(),
        "a new client is served once places are free"
    );
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(
        authd.log().contains("over_max_connections"),
        "authd logs what it refused:\n{}",
        authd.log()
    );
    Ok(())
}

// === bad messages: raw HTTP/2 calls through the h2 crate ===

type H2 = h2::client::SendRequest<Bytes>;

async fn h2_client(authd: &AuthdProcess) -> Result<H2> {
    let tcp = TcpStream::connect(authd.addr).await?;
    let (client, connection) = h2::client::handshake(tcp).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn call_request(path: &str, extra: &[(&str, &str)]) -> Result<http::Request<()>> {
    let mut request = http::Request::post(format!("http://authd{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    Ok(request.body(())?)
}

/// Sends `body` (ending the stream when `end`) and returns the gRPC status
/// authd answered.
async fn raw_call(
    client: &H2,
    path: &str,
    body: &[u8],
    end: bool,
    extra: &[(&str, &str)],
) -> Result<tonic::Status> {
    let mut client = client.clone().ready().await?;
    let (response, mut stream) = client.send_request(call_request(path, extra)?, false)?;
    if !body.is_empty() {
        stream.reserve_capacity(body.len());
        stream.send_data(Bytes::copy_from_slice(body), end)?;
    } else if end {
        stream.send_data(Bytes::new(), true)?;
    }
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .context("no answer within 10 s")??;
    let (parts, mut body) = response.into_parts();
    let mut headers = parts.headers;
    if !headers.contains_key("grpc-status") {
        while let Some(data) = body.data().await {
            data?;
        }
        if let Some(trailers) = body.trailers().await? {
            headers.extend(trailers);
        }
    }
    tonic::Status::from_header_map(&headers).context("no grpc-status in the answer")
}

fn reason(status: &tonic::Status) -> (Code, String) {
    let info = status.get_error_details().error_info().cloned();
    (
        status.code(),
        info.map(|i| {
            assert_eq!(i.domain, "authd");
            i.reason
        })
        .unwrap_or_default(),
    )
}

fn verify_message(token: &str) -> Vec<u8> {
    use prost::Message;
    let request = authd_proto::pb::VerifyTokenRequest {
        token: token.to_owned(),
        ..Default::default()
    };
    request.encode_to_vec()
}

const VERIFY: &str = "/auth.v1.AuthService/VerifyToken";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_malformed_doubled_and_truncated_messages_are_invalid_argument() -> Result<()> {
    // Unknown kids refetch at once, so a hanging key-set fetch can be waited on.
    let (issuer, authd, token) = setup_with(
        "request_body_timeout_ms = 1000\n",
        "[jwks]\nmin_refetch_interval_seconds = 0\n",
    )
    .await?;
    let legit = Legit::start(&authd, &token).await?;
    let client = h2_client(&authd).await?;
    let invalid = |reason: &str| (Code::InvalidArgument, reason.to_owned());

    // A 4 MiB token: refused on the message's declared length.
    let huge = h2raw::grpc_message(&verify_message(&"a".repeat(4 << 20)));
    let status = raw_call(&client, VERIFY, &huge, true, &[]).await?;
    assert_eq!(reason(&status), invalid("REQUEST_TOO_LARGE"), "{status:?}");
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .context("info")?;
    assert_eq!(info.metadata["max_bytes"], "32768");
    // A token just over verify.max_token_bytes still gets its own reason.
    let big = h2raw::grpc_message(&verify_message(&"a".repeat(9000)));
    assert_eq!(
        reason(&raw_call(&client, VERIFY, &big, true, &[]).await?),
        invalid("TOKEN_TOO_LARGE")
    );
    // Not protobuf.
    let garbage = h2raw::grpc_message(&[0xff; 32]);
    assert_eq!(
        reason(&raw_call(&client, VERIFY, &garbage, true, &[]).await?),
        invalid("MALFORMED_REQUEST")
    );
    // No message at all, half a prefix, two messages, a compressed one.
    let one = h2raw::grpc_message(&verify_message(&token));
    let mut two = one.clone();
    two.extend_from_slice(&one);
    let mut compressed = one.clone();
    compressed[0] = 1;
    for (case, body) in [
        ("empty", &b""[..]),
        ("half a prefix", &one[..3]),
        ("two messages", &two[..]),
        ("compressed", &compressed[..]),
    ] {
        let status = raw_call(&client, VERIFY, body, true, &[]).await?;
        assert_eq!(
            reason(&status),
            invalid("MALFORMED_REQUEST"),
            "{case}: {status:?}"
        );
    }
    // A truncated message whose stream never ends: answered, not held.
    let started = Instant::now();
    let status = raw_call(&client, VERIFY, &one[..one.len() - 10], false, &[]).await?;
    assert_eq!(
        reason(&status),
        (Code::DeadlineExceeded, "DEADLINE_EXCEEDED".to_owned())
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // The same rules hold for the other RPCs.
    let status = raw_call(
        &client,
        "/auth.v1.AuthService/GetProfile",
        &garbage,
        true,
        &[],
    )
    .await?;
    assert_eq!(reason(&status), invalid("MALFORMED_REQUEST"));
    let status = raw_call(
        &client,
        "/auth.v1.AuthService/CreateSession",
        &h2raw::grpc_message(&vec![0x0a; 70_000]),
        true,
        &[],
    )
    .await?;
    assert_eq!(reason(&status), invalid("REQUEST_TOO_LARGE"));
    // And a well-formed one still verifies.
    assert_eq!(
        raw_call(&client, VERIFY, &one, true, &[]).await?.code(),
        Code::Ok
    );

    // The caller's grpc-timeout is honoured: a token with an unknown kid
    // waits on a key-set fetch that hangs.
    issuer
        .control(
            "fail",
            serde_json::json!({"endpoint": "jwks", "status": 0, "delay_ms": 4000}),
        )
        .await?;
    // A key authd has not fetched yet.
    let kid = issuer.rotate("RS256").await?;
    let stranger = issuer.token(&[("kid", &kid)]).await?;
    let status = raw_call(
        &client,
        VERIFY,
        &h2raw::grpc_message(&verify_message(&stranger)),
        true,
        &[("grpc-timeout", "300m")],
    )
    .await?;
    assert_eq!(
        reason(&status),
        (Code::DeadlineExceeded, "DEADLINE_EXCEEDED".to_owned()),
        "{status:?}"
    );
    issuer.heal().await?;
    legit.check("bad messages").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_bound_of_calls_in_flight_calls_are_shed_at_once() -> Result<()> {
    let (_issuer, authd, token) =
        setup("max_calls_in_flight = 8\nrequest_body_timeout_ms = 8000\n").await?;
    let mut legit = authd.client().await?;
    legit.verify_token(&token, &[]).await?;
    // Eight calls whose message never completes hold every place. A holder
    // that arrives while a probe below holds the eighth place is shed at
    // once (as it should be) and tries again, so that all eight end up
    // holding a place.
    let client = h2_client(&authd).await?;
    let one = h2raw::grpc_message(&verify_message(&token));
    let mut holders = Vec::new();
    for _ in 0..8 {
        let client = client.clone();
        let part = one[..one.len() - 1].to_vec();
        holders.push(tokio::spawn(async move {
            loop {
                let status = raw_call(&client, VERIFY, &part, false, &[]).await?;
                if status.code() != Code::ResourceExhausted {
                    return Ok::<_, anyhow::Error>(status);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    // The holders reach authd at the machine's pace (seconds apart on a
    // loaded CI machine: each holds its place for the 8 s body timeout, so
    // that all eight overlap): once all eight hold their places, the next
    // call is shed, and at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (err, took) = loop {
        let started = Instant::now();
        match legit.verify_token(&token, &[]).await {
            Err(err) => break (err, started.elapsed()),
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(_) => anyhow::bail!("no call was shed with eight calls holding every place"),
        }
    };
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert_eq!(
        err.reason().map(|r| r.as_str().to_owned()).as_deref(),
        Some("OVERLOADED")
    );
    assert!(took < Duration::from_secs(1), "shed at once, not queued");
    for h in holders {
        assert_eq!(h.await??.code(), Code::DeadlineExceeded);
    }
    legit.verify_token(&token, &[]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_list_over_the_limit_is_refused() -> Result<()> {
    let (_issuer, authd, token) = setup("").await?;
    let legit = Legit::start(&authd, &token).await?;
    let client = h2_client(&authd).await?;
    let big = "x".repeat(20_000);
    let one = h2raw::grpc_message(&verify_message(&token));
    let refused = match raw_call(&client, VERIFY, &one, true, &[("x-padding", &big)]).await {
        Ok(status) => status.code() != Code::Ok,
        Err(_) => true, // reset, or answered 431 without grpc-status
    };
    assert!(refused, "a 20 KB header list was accepted");
    legit.check("header list").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_kids_and_issuers_cost_no_fetch_storm() -> Result<()> {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    let (issuer, authd, token) = setup("").await?;
    let legit = Legit::start(&authd, &token).await?;
    let before = issuer.stats().await?["jwks"].as_u64().unwrap_or_default();
    let mut client = authd.client().await?;
    for i in 0..2000 {
        let iss = if i % 2 == 0 {
            issuer.url.clone()
        } else {
            format!("https://junk-{i}.example/")
        };
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"RS256","kid":"junk-{i}"}}"#));
        let claims = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"iss":"{iss}","sub":"x","aud":"a","exp":4000000000}}"#
        ));
        let junk = format!("{header}.{claims}.c2ln");
        let err = client.verify_token(&junk, &[]).await.expect_err("refused");
        assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    }
    let after = issuer.stats().await?["jwks"].as_u64().unwrap_or_default();
    assert!(
        after - before <= 2,
        "{} key-set fetches for 1,000 junk kids",
        after - before
    );
    legit.check("junk kids and issuers").await?;
    Ok(())
}

/// Connections that never spoke do not hold up a shutdown: authd stops
/// within its grace period (1 s here), not after their handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_connections_that_never_spoke() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = authd_tests::Authd::start(&issuer.config_entry(&["RS256"])).await?;
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(authd.addr).await?);
    }
    // Accepted and handed to the workers before the stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    authd.stop().await?;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopping took {:?} (handshake timeout: 10 s)",
        started.elapsed()
    );
    Ok(())
}
