//! Metrics, health and traces of the real authd binary: /metrics scraped and
//! parsed with Python's `prometheus_client` parser, counters checked to move
//! by exactly what known calls cause, labels bounded under 10,000 junk
//! tokens, /readyz explaining itself, store retries and throttles counted,
//! the alert rules' metrics present, and spans received by an OTLP/gRPC
//! receiver (opentelemetry-proto + grpcio) in the caller's trace.

use std::{collections::BTreeSet, net::SocketAddr, process::Stdio, time::Duration};

use anyhow::{Context, Result, bail};
use authd_proto::pb::{VerifyTokenRequest, auth_service_client::AuthServiceClient};
use authd_tests::{Issuer, free_port, wait_for_port, workspace};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

type Client = AuthServiceClient<tonic::transport::Channel>;

/// `authd serve` with `[metrics]` on, killed when dropped.
struct Served {
    addr: SocketAddr,
    metrics: SocketAddr,
    _child: Child,
    _dir: tempfile::TempDir,
}

impl Served {
    async fn start(toml: &str, env: &[(&str, String)]) -> Result<Served> {
        let dir = tempfile::tempdir()?;
        let (port, metrics_port) = (free_port()?, free_port()?);
        let config = dir.path().join("authd.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n{toml}"
            ),
        )?;
        let child = Command::new(authd_tests::authd_binary()?)
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .env("AUTHD_STORE__PATH", dir.path().join("data"))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let metrics: SocketAddr = format!("127.0.0.1:{metrics_port}").parse()?;
        wait_for_port(addr, Duration::from_secs(60)).await?;
        wait_for_port(metrics, Duration::from_secs(10)).await?;
        Ok(Served {
            addr,
            metrics,
            _child: child,
            _dir: dir,
        })
    }

    async fn client(&self) -> Result<Client> {
        Ok(Client::connect(format!("http://{}", self.addr)).await?)
    }

    async fn scrape(&self) -> Result<Scrape> {
        scrape(self.metrics).await
    }

    async fn get(&self, path: &str) -> Result<(u16, String)> {
        let answer = reqwest::get(format!("http://{}{path}", self.metrics)).await?;
        Ok((answer.status().as_u16(), answer.text().await?))
    }
}

/// One parsed exposition.
struct Scrape {
    families: serde_json::Map<String, Value>,
    samples: Vec<Value>,
}

impl Scrape {
    /// The value of the one sample `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s["name"] == name)
            .filter(|s| labels.iter().all(|(k, v)| s["labels"][*k] == *v))
            .map(|s| s["value"].as_f64().unwrap_or_default())
            .sum()
    }

    fn series(&self) -> usize {
        self.samples.len()
    }

    fn names(&self) -> BTreeSet<String> {
        self.families.keys().cloned().collect()
    }
}

async fn python(args: &[&str]) -> Result<String> {
    let python = workspace().join(".venv/bin/python");
    if !python.exists() {
        bail!("no .venv: run `tests/run` (it installs tests/requirements.txt)");
    }
    let out = Command::new(python).args(args).output().await?;
    if !out.status.success() {
        bail!(
            "python {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

async fn scrape(metrics: SocketAddr) -> Result<Scrape> {
    let tool = workspace().join("tests/metrics_tool.py");
    let text = python(&[
        tool.to_str().context("path")?,
        "scrape",
        &format!("http://{metrics}/metrics"),
    ])
    .await?;
    let parsed: Value = serde_json::from_str(&text)?;
    Ok(Scrape {
        families: parsed["families"].as_object().cloned().unwrap_or_default(),
        samples: parsed["samples"].as_array().cloned().unwrap_or_default(),
    })
}

async fn verify(client: &mut Client, token: &str, audience: Option<&str>) -> tonic::Code {
    let request = VerifyTokenRequest {
        token: token.to_owned(),
        required_scopes: vec![],
        audience: audience.map(str::to_owned),
        ..VerifyTokenRequest::default()
    };
    match client.verify_token(request).await {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

/// A well-formed JWT with the given issuer and kid and a junk signature.
fn junk_token(iss: &str, kid: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": kid}).to_string());
    let claims = URL_SAFE_NO_PAD
        .encode(json!({"iss": iss, "sub": "x", "aud": "y", "exp": 4_000_000_000u64}).to_string());
    format!("{header}.{claims}.c2lnbmF0dXJl")
}

/// Calls a method authd does not serve (HTTP/2, gRPC framing, an empty
/// message); it answers UNIMPLEMENTED.
async fn unknown_method(addr: SocketAddr, path: &str) -> Result<()> {
    let http = reqwest::Client::builder().http2_prior_knowledge().build()?;
    let answer = http
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(vec![0u8; 5])
        .send()
        .await?;
    assert_eq!(
        answer.headers().get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"12"[..]),
        "{path}"
    );
    Ok(())
}

fn issuer_toml(issuer: &Issuer, extra: &str) -> String {
    format!("{}{extra}", issuer.config_entry(&["RS256"]))
}

#[tokio::test]
async fn verify_outcomes_move_by_exactly_one_and_labels_stay_bounded() -> Result<()> {
    let issuer = Issuer::start().await?;
    // Cached at the first verification, so that the second is a hit.
    let authd = Served::start(
        &issuer_toml(&issuer, "[verify]\ncache_admit_after = 1\n"),
        &[],
    )
    .await?;
    let mut client = authd.client().await?;
    let iss = issuer.url.as_str();

    let expired = issuer.token(&[("expires_in", "-120")]).await?;
    let valid = issuer.token(&[]).await?;
    let before = authd.scrape().await?;
    let expired_labels = [
        ("issuer", iss),
        ("outcome", "refused"),
        ("reason", "TOKEN_EXPIRED"),
    ];
    let valid_labels = [("issuer", iss), ("outcome", "valid"), ("reason", "OK")];
    let unauthenticated = [
        ("grpc_service", "auth.v1.AuthService"),
        ("grpc_method", "VerifyToken"),
        ("grpc_code", "Unauthenticated"),
    ];
    let ok = [
        ("grpc_service", "auth.v1.AuthService"),
        ("grpc_method", "VerifyToken"),
        ("grpc_code", "OK"),
    ];

    assert_eq!(
        verify(&mut client, &expired, None).await,
        tonic::Code::Unauthenticated
    );
    assert_eq!(verify(&mut client, &valid, None).await, tonic::Code::Ok);
    assert_eq!(verify(&mut client, &valid, None).await, tonic::Code::Ok);
    let after = authd.scrape().await?;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    assert_eq!(moved("authd_verify_total", &expired_labels), 1.0);
    assert_eq!(moved("authd_verify_total", &valid_labels), 2.0);
    assert_eq!(moved("grpc_server_handled_total", &unauthenticated), 1.0);
    assert_eq!(moved("grpc_server_handled_total", &ok), 2.0);
    let verify_method = [("grpc_method", "VerifyToken")];
    assert_eq!(moved("grpc_server_started_total", &verify_method), 3.0);
    assert_eq!(
        moved("grpc_server_handling_seconds_count", &verify_method),
        3.0
    );
    // The second valid call was a cache hit; the first was a miss.
    assert_eq!(moved("authd_verify_cache_hits_total", &[]), 1.0);
    assert!(after.value("authd_verify_cache_entries", &[]) >= 1.0);
    assert_eq!(after.value("authd_jwks_keys", &[("issuer", iss)]), 1.0);
    assert_eq!(
        after.value("authd_jwks_serving_stale", &[("issuer", iss)]),
        0.0
    );
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_threads",
        "process_cpu_seconds_total",
    ] {
        assert!(after.value(name, &[]) > 0.0, "{name}");
    }

    // Junk: unknown issuers, unknown kids of the real issuer, odd audiences
    // and methods. A first round registers every series these can make...
    let junk_round = |client: &mut Client, from: usize, to: usize| {
        let mut client = client.clone();
        let iss = iss.to_owned();
        async move {
            for i in from..to {
                let token = match i % 3 {
                    0 => junk_token(&format!("https://junk-{i}.example/"), "k"),
                    1 => junk_token(&iss, &format!("kid-{i}")),
                    _ => junk_token(&iss, "k"),
                };
                let audience = format!("https://aud-{i}.example");
                let code = verify(&mut client, &token, (i % 3 == 2).then_some(&audience)).await;
                assert_ne!(code, tonic::Code::Ok);
            }
        }
    };
    junk_round(&mut client, 0, 30).await;
    unknown_method(authd.addr, "/junk.v0.Nope/Call").await?;
    let settled = authd.scrape().await?;
    // ...then 10,000 more make none.
    let mut rounds = Vec::new();
    for part in 0..4 {
        rounds.push(tokio::spawn(junk_round(
            &mut client,
            30 + part * 2500,
            30 + (part + 1) * 2500,
        )));
    }
    for round in rounds {
        round.await?;
    }
    for i in 0..20 {
        unknown_method(authd.addr, &format!("/junk.v{i}.Other/Thing{i}")).await?;
    }
    let flooded = authd.scrape().await?;
    let labels_of = |s: &Scrape| -> BTreeSet<String> {
        s.samples
            .iter()
            .map(|s| format!("{}{}", s["name"], s["labels"]))
            .collect()
    };
    let (settled_set, flooded_set) = (labels_of(&settled), labels_of(&flooded));
    assert!(
        settled_set == flooded_set,
        "10,000 junk tokens changed the series: new {:?}, gone {:?}",
        flooded_set.difference(&settled_set).collect::<Vec<_>>(),
        settled_set.difference(&flooded_set).collect::<Vec<_>>()
    );
    assert_eq!(settled.series(), flooded.series());
    let text = reqwest::get(format!("http://{}/metrics", authd.metrics))
        .await?
        .text()
        .await?;
    for leaked in ["junk-4", "kid-4", "aud-4", "junk.v1", "c2lnbmF0dXJl"] {
        assert!(!text.contains(leaked), "{leaked} appears in /metrics");
    }
    assert!(
        flooded.value(
            "authd_verify_total",
            &[("issuer", "unknown"), ("reason", "WRONG_ISSUER")]
        ) >= 3_000.0
    );
    assert_eq!(
        flooded.value(
            "grpc_server_started_total",
            &[("grpc_service", "unknown"), ("grpc_method", "unknown")]
        ) - settled.value(
            "grpc_server_started_total",
            &[("grpc_service", "unknown"), ("grpc_method", "unknown")]
        ),
        20.0
    );
    // A kid proven unknown by a fresh key set fetch is refused from the
    // unknown-kid memory, with no fetch. Fetches are rate-limited
    // (`min_refetch_interval_seconds`), and the flood may end before one
    // is due: ask again until one was fresh and the kid is remembered.
    let refused = ("authd_jwks_unknown_kid_refused_total", [("issuer", iss)]);
    let refetches = ("authd_jwks_unknown_kid_refetches_total", [("issuer", iss)]);
    let remembered = junk_token(iss, "kid-remembered");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        assert_ne!(
            verify(&mut client, &remembered, None).await,
            tonic::Code::Ok
        );
        let now = authd.scrape().await?;
        if now.value(refused.0, &refused.1) > flooded.value(refused.0, &refused.1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a kid refused after a fresh fetch was never refused from memory"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let before = authd.scrape().await?;
    verify(&mut client, &remembered, None).await;
    let after = authd.scrape().await?;
    assert_eq!(
        after.value(refused.0, &refused.1) - before.value(refused.0, &refused.1),
        1.0
    );
    assert_eq!(
        after.value(refetches.0, &refetches.1) - before.value(refetches.0, &refetches.1),
        0.0,
        "a remembered kid costs no fetch"
    );

    let (status, body) = authd.get("/healthz").await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = authd.get("/readyz").await?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("store: answers"), "{body}");
    Ok(())
}

#[tokio::test]
async fn a_stopped_issuer_sets_the_stale_gauge_and_readyz_says_why() -> Result<()> {
    let issuer = Issuer::start().await?;
    let extra = "[jwks]\nrefresh_interval_seconds = 1\nmin_refetch_interval_seconds = 1\nfetch_timeout_ms = 500\n";
    let authd = Served::start(&issuer_toml(&issuer, extra), &[]).await?;
    let iss = issuer.url.clone();
    let before = authd.scrape().await?;
    assert_eq!(
        before.value("authd_jwks_serving_stale", &[("issuer", &iss)]),
        0.0
    );
    assert_eq!(before.value("authd_jwks_keys", &[("issuer", &iss)]), 1.0);
    issuer.stop().await?;
    // The refresher retries every second; wait for a failed fetch.
    let mut stale = None;
    for _ in 0..120 {
        let now = authd.scrape().await?;
        if now.value("authd_jwks_serving_stale", &[("issuer", &iss)]) == 1.0 {
            stale = Some(now);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stale = stale.context("authd_jwks_serving_stale never became 1")?;
    assert!(stale.value("authd_jwks_stale_seconds", &[("issuer", &iss)]) > 0.0);
    assert_eq!(stale.value("authd_jwks_keys", &[("issuer", &iss)]), 1.0);
    assert!(
        stale.value(
            "authd_jwks_fetches_total",
            &[("issuer", &iss), ("outcome", "error")]
        ) >= 1.0
    );
    assert!(
        stale.value(
            "authd_issuer_requests_total",
            &[
                ("issuer", &iss),
                ("endpoint", "jwks"),
                ("outcome", "unreachable")
            ]
        ) >= 1.0
    );
    let (status, body) = authd.get("/readyz").await?;
    assert_eq!(status, 200, "stale keys still serve: {body}");
    assert!(body.contains("the last fetch failed"), "{body}");
    Ok(())
}

/// A DynamoDB endpoint that answers every request with a throttling error.
async fn always_throttling() -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                loop {
                    let Ok(n) = tcp.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    // One request: headers, then content-length bytes.
                    let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if seen.len() < end + 4 + length {
                        continue;
                    }
                    seen.drain(..end + 4 + length);
                    let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#;
                    let answer = format!(
                        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\nx-amzn-errortype: ThrottlingException\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if tcp.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(endpoint)
}

fn dynamodb_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("AUTHD_STORE__KIND", "dynamodb".to_owned()),
        ("AUTHD_STORE__ENDPOINT_URL", endpoint.to_owned()),
    ]
}

#[tokio::test]
async fn store_throttling_is_counted_and_every_alert_rule_metric_exists() -> Result<()> {
    let issuer = Issuer::start().await?;
    // A healthy DynamoDB (moto): revocations poll, the store answers.
    let moto = authd_tests::Moto::start().await?;
    moto.store("authd").await?;
    // Sealing under moto's KMS: the KMS series exist.
    let mut env = dynamodb_env(&moto.endpoint);
    env.extend(moto.kms_env(&moto.kms_key().await?));
    // Receiving back-channel logouts: their series exist too.
    let healthy = Served::start(
        &issuer_toml(
            &issuer,
            "[issuers.backchannel_logout]\nclient_ids = [\"app\"]\n",
        ),
        &env,
    )
    .await?;
    // One that throttles every call: 3 attempts each (the default).
    let endpoint = always_throttling().await?;
    let throttled = Served::start(
        &issuer_toml(
            &issuer,
            "[store]\nmax_attempts = 3\nhealth_interval_seconds = 1\n",
        ),
        &dynamodb_env(&endpoint),
    )
    .await?;

    // Start-up pings twice (building, then the first health probe) and
    // reads revocations twice (building, then the poller, which keeps
    // polling every `revocation_poll_ms`). Once those four are counted,
    // every later call is counted against its own retries and throttles.
    let polls = [
        ("operation", "revocations_since"),
        ("outcome", "unavailable"),
    ];
    let ping = [("operation", "ping"), ("outcome", "unavailable")];
    let settled = |s: &Scrape| {
        s.value("authd_store_operations_total", &polls) >= 2.0
            && s.value("authd_store_operations_total", &ping) >= 2.0
    };
    let mut before = throttled.scrape().await?;
    while !settled(&before) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        before = throttled.scrape().await?;
    }
    let (status, body) = throttled.get("/readyz").await?;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("store: NOT READY"), "{body}");
    let after = throttled.scrape().await?;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    // Every ping (a DescribeTable) makes 3 attempts, 2 of them retries,
    // all 3 throttled; /readyz added at least one.
    let pings = after.value("authd_store_operations_total", &ping);
    assert!(moved("authd_store_operations_total", &ping) >= 1.0);
    let describe = [("store", "dynamodb"), ("operation", "DescribeTable")];
    assert!(after.value("authd_store_retries_total", &describe) >= 2.0 * pings);
    assert!(after.value("authd_store_throttles_total", &describe) >= 3.0 * pings);
    // Each revocation read (a Query) was retried and throttled as well.
    let reads = after.value("authd_store_operations_total", &polls);
    let query = [("store", "dynamodb"), ("operation", "Query")];
    assert!(after.value("authd_store_retries_total", &query) >= 2.0 * reads);
    assert!(after.value("authd_store_throttles_total", &query) >= 3.0 * reads);
    assert_eq!(after.value("authd_store_up", &[]), 0.0);

    let (status, body) = healthy.get("/readyz").await?;
    assert_eq!(status, 200, "{body}");
    let healthy_scrape = healthy.scrape().await?;
    assert_eq!(healthy_scrape.value("authd_store_up", &[]), 1.0);
    assert!(
        healthy_scrape.value(
            "authd_store_operations_total",
            &[
                ("store", "dynamodb"),
                ("operation", "revocations_since"),
                ("outcome", "ok")
            ]
        ) >= 1.0
    );
    let lag = healthy_scrape.value("authd_revocation_poll_lag_seconds", &[]);
    assert!((0.0..60.0).contains(&lag), "lag {lag}");

    // Every metric the alert rules use is exposed.
    let mut names = healthy_scrape.names();
    names.extend(after.names());
    let tool = workspace().join("tests/metrics_tool.py");
    let rules = workspace().join("deploy/prometheus/alerts.yml");
    let rules: Value = serde_json::from_str(
        &python(&[
            tool.to_str().context("path")?,
            "alerts",
            rules.to_str().context("path")?,
        ])
        .await?,
    )?;
    let rules = rules.as_array().context("rules")?;
    assert!(rules.len() >= 4);
    for rule in rules {
        let metrics = rule["metrics"].as_array().context("metrics")?;
        assert!(!metrics.is_empty(), "{rule}");
        for metric in metrics {
            let metric = metric.as_str().context("name")?;
            // The parser names counter families without `_total`.
            let family = metric.strip_suffix("_total").unwrap_or(metric);
            assert!(
                names.contains(family),
                "alert {} uses {metric}, which /metrics does not expose",
                rule["alert"]
            );
        }
        assert!(
            rule["summary"].is_string() && rule["severity"].is_string(),
            "{rule}"
        );
    }
    Ok(())
}

/// Verifies `token` as part of the caller's trace `trace_id` (sampled or
/// not), from span `parent`.
async fn verify_in_trace(
    authd: &Served,
    token: &str,
    trace_id: &str,
    parent: &str,
    sampled: bool,
) -> Result<()> {
    let mut request = tonic::Request::new(VerifyTokenRequest {
        token: token.to_owned(),
        required_scopes: vec![],
        audience: None,
        ..VerifyTokenRequest::default()
    });
    let flags = if sampled { "01" } else { "00" };
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent}-{flags}").parse()?,
    );
    authd.client().await?.verify_token(request).await?;
    Ok(())
}

#[tokio::test]
async fn spans_reach_an_otlp_receiver_in_the_callers_trace() -> Result<()> {
    let receiver_script = workspace().join("tests/otlp_receiver.py");
    let mut receiver = Command::new(workspace().join(".venv/bin/python"))
        .arg(receiver_script)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting tests/otlp_receiver.py")?;
    let mut lines = BufReader::new(receiver.stdout.take().context("stdout")?).lines();
    let port = loop {
        let line = lines.next_line().await?.context("receiver exited")?;
        if let Some(port) = line.strip_prefix("READY ") {
            break port.trim().to_owned();
        }
    };
    let issuer = Issuer::start().await?;
    // The default sample ratio (1 %): the callers' flags decide below. No
    // pause between key refetches, so a new kid is fetched at once.
    let authd = Served::start(
        &issuer_toml(
            &issuer,
            "[jwks]\nmin_refetch_interval_seconds = 0\n[tracing]\nenabled = true\n",
        ),
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ],
    )
    .await?;
    let token = issuer.token(&[]).await?;
    let trace = |_: ()| format!("{:032x}", u128::from_le_bytes(rand_bytes()));
    let (unsampled, sampled, refetch) = (trace(()), trace(()), trace(()));
    let parent = "00f067aa0ba902b7";
    // A caller that did not sample its trace gets no span from authd.
    verify_in_trace(&authd, &token, &unsampled, parent, false).await?;
    verify_in_trace(&authd, &token, &sampled, parent, true).await?;
    // A token under a new key: the call fetches the key set again, an
    // issuer request in the call's trace.
    issuer.rotate("RS256").await?;
    let rotated = issuer.token(&[]).await?;
    verify_in_trace(&authd, &rotated, &refetch, parent, true).await?;

    // The server span of a call is named after its method and names the
    // caller; what the call does is below it.
    const SERVER_SPAN: &str = "auth.v1.AuthService/VerifyToken";
    let mut spans: Vec<Value> = Vec::new();
    let found = |spans: &[Value], trace: &str, name: &str| {
        spans
            .iter()
            .find(|s| s["trace_id"] == trace && s["name"] == name)
            .cloned()
    };
    while found(&spans, &refetch, "issuer request").is_none()
        || found(&spans, &refetch, SERVER_SPAN).is_none()
        || found(&spans, &sampled, SERVER_SPAN).is_none()
    {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .with_context(|| format!("not every span within 60 s: {spans:#?}"))??
            .context("receiver exited")?;
        assert!(
            !line.contains(&token) && !line.contains(&rotated),
            "a span holds a token: {line}"
        );
        spans.push(serde_json::from_str(&line)?);
    }
    let call = found(&spans, &sampled, SERVER_SPAN).context("server span")?;
    assert_eq!(call["parent_span_id"], parent, "{call}");
    assert_eq!(call["kind"], 2, "a server span: {call}");
    assert_eq!(call["service"], "authd");
    assert_eq!(call["attributes"]["rpc.service"], "auth.v1.AuthService");
    assert_eq!(call["attributes"]["rpc.method"], "VerifyToken");
    let server = found(&spans, &refetch, SERVER_SPAN).context("server span")?;
    let request = found(&spans, &refetch, "issuer request").context("issuer span")?;
    assert_eq!(
        server["attributes"]["authd.caller"], "anonymous",
        "{server}"
    );
    assert_eq!(
        request["parent_span_id"], server["span_id"],
        "the key fetch is in the call that asked for it: {spans:#?}"
    );
    assert_eq!(request["kind"], 3, "a client span: {request}");
    assert_eq!(request["attributes"]["endpoint"], "jwks", "{request}");
    assert_eq!(request["attributes"]["outcome"], "ok", "{request}");
    // The unsampled call ended before the others began; the exporter sends
    // spans in the order they end, so its span would be here by now.
    assert!(
        spans.iter().all(|s| s["trace_id"] != unsampled.as_str()),
        "an unsampled call was exported: {spans:#?}"
    );
    Ok(())
}

fn rand_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("random");
    bytes[0] |= 1;
    bytes
}

#[tokio::test]
async fn authd_dev_serves_metrics_on_loopback_and_says_where() -> Result<()> {
    let port = free_port()?;
    let data = tempfile::tempdir()?;
    let mut child = authd_tests::authd_dev(port, data.path())?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let url = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("authd dev printed nothing for 60 s")??
            .context("authd dev printed no metrics line")?;
        if let Some(rest) = line.strip_prefix("authd dev: metrics at ") {
            break rest
                .split_whitespace()
                .next()
                .context("url")?
                .trim_end_matches(',')
                .to_owned();
        }
    };
    let metrics: SocketAddr = url
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix("/metrics"))
        .context("metrics url")?
        .parse()?;
    assert!(metrics.ip().is_loopback());
    let families = scrape(metrics).await?;
    assert!(
        families.names().contains("authd_verify"),
        "{:?}",
        families.names()
    );
    let ready = reqwest::get(format!("http://{metrics}/readyz")).await?;
    assert_eq!(ready.status().as_u16(), 200);
    Ok(())
}
