//! WatchRevocations against authd with the real issuer: a watcher gets the
//! revocations in force then new ones, resumes from a cursor without a gap,
//! keeps up with a burst, is ended when it reads too slowly (without authd's
//! memory growing), and only trusted callers may watch. Then authd-client's
//! cache: a revoked session's token is refused, and the cache stops
//! answering while authd is paused (SIGSTOP) and answers again after SIGCONT.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use authd_client::{AuthClient, CacheConfig, CacheState, ErrorReason, RetryPolicy, Secret};
use authd_proto::pb::{
    self, auth_service_client::AuthServiceClient, create_session_request::Grant,
    revoke_session_request::Target, watch_revocations_response::Event,
};
use authd_tests::{Authd, AuthdProcess, Issuer, REDIRECT_URI, free_port};
use tonic::{Code, Request, Streaming, metadata::MetadataValue, transport::Channel};

/// What a watcher and a revoker need: a service token allowed both.
const TRUSTED: &str = "revocations:watch sessions:revoke";

fn authorized<T>(message: T, token: &str) -> Result<Request<T>> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}"))?,
    );
    Ok(request)
}

async fn channel(uri: &str) -> Result<Channel> {
    Ok(Channel::from_shared(uri.to_owned())?.connect().await?)
}

async fn watch(
    uri: &str,
    token: &str,
    cursor: &str,
) -> Result<Streaming<pb::WatchRevocationsResponse>> {
    let mut client = AuthServiceClient::new(channel(uri).await?);
    let request = pb::WatchRevocationsRequest {
        cursor: cursor.to_owned(),
    };
    Ok(client
        .watch_revocations(authorized(request, token)?)
        .await?
        .into_inner())
}

/// Revokes every session of `user` (a subject revocation).
async fn revoke_user(
    client: &mut AuthServiceClient<Channel>,
    token: &str,
    user: &str,
) -> Result<()> {
    let request = pb::RevokeSessionRequest {
        target: Some(Target::UserId(user.to_owned())),
    };
    client.revoke_session(authorized(request, token)?).await?;
    Ok(())
}

/// What one watcher saw: the revoked values, and the last cursor.
#[derive(Debug, Default)]
struct Seen {
    values: Vec<String>,
    cursor: String,
    heartbeats: usize,
}

/// Reads until `done(seen)` or `within` passes.
async fn read_until(
    stream: &mut Streaming<pb::WatchRevocationsResponse>,
    seen: &mut Seen,
    within: Duration,
    done: impl Fn(&Seen) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + within;
    while !done(seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, stream.message())
            .await
            .with_context(|| {
                format!(
                    "after {within:?}: {} revocations, {} heartbeats",
                    seen.values.len(),
                    seen.heartbeats
                )
            })??
            .context("the stream ended")?;
        ensure!(!message.cursor.is_empty(), "every message carries a cursor");
        seen.cursor = message.cursor;
        match message.event {
            Some(Event::Revocation(r)) => {
                ensure!(r.kind() == pb::RevocationKind::Subject, "{r:?}");
                ensure!(r.revoked_at.is_some() && r.expires_at.is_some(), "{r:?}");
                seen.values.push(r.value);
            }
            Some(Event::Heartbeat(h)) => {
                ensure!(h.interval_ms > 0);
                seen.heartbeats += 1;
            }
            None => bail!("a message without an event"),
        }
    }
    Ok(())
}

fn users(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("auth0|{prefix}-{i}")).collect()
}

#[tokio::test]
async fn a_watcher_gets_the_revocations_in_force_then_new_ones() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&issuer.sessions_config("[watch]\nheartbeat_ms = 200\n")).await?;
    let token = issuer.token(&[("permissions", TRUSTED)]).await?;
    let mut client = AuthServiceClient::new(channel(&authd.uri()).await?);
    for user in users("before", 3) {
        revoke_user(&mut client, &token, &user).await?;
    }
    let mut stream = watch(&authd.uri(), &token, "").await?;
    let mut seen = Seen::default();
    read_until(&mut stream, &mut seen, Duration::from_secs(10), |s| {
        s.heartbeats > 0
    })
    .await?;
    let mut in_force = seen.values.clone();
    in_force.sort();
    assert_eq!(in_force, users("before", 3), "the revocations in force");
    for user in users("after", 2) {
        revoke_user(&mut client, &token, &user).await?;
    }
    read_until(&mut stream, &mut seen, Duration::from_secs(10), |s| {
        s.values.len() == 5
    })
    .await?;
    let mut new = seen.values[3..].to_vec();
    new.sort();
    assert_eq!(new, users("after", 2));
    // Nothing new: heartbeats keep coming.
    let before = seen.heartbeats;
    read_until(&mut stream, &mut seen, Duration::from_secs(10), |s| {
        s.heartbeats >= before + 2
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn only_trusted_callers_may_watch() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&issuer.sessions_config("")).await?;
    let user = issuer.token(&[("permissions", "read:orders")]).await?;
    let mut client = AuthServiceClient::new(channel(&authd.uri()).await?);
    let anonymous = client
        .watch_revocations(pb::WatchRevocationsRequest::default())
        .await
        .expect_err("anonymous");
    let with_token = client
        .watch_revocations(authorized(pb::WatchRevocationsRequest::default(), &user)?)
        .await
        .expect_err("not a watcher");
    for status in [anonymous, with_token] {
        let error = authd_client::AuthError::from(status);
        assert_eq!(
            (error.code(), error.reason()),
            (Code::PermissionDenied, Some(ErrorReason::CallerNotTrusted))
        );
    }
    let watcher = issuer
        .token(&[("permissions", "revocations:watch")])
        .await?;
    let bad_cursor = pb::WatchRevocationsRequest {
        cursor: "not-a-cursor".to_owned(),
    };
    let error = authd_client::AuthError::from(
        client
            .watch_revocations(authorized(bad_cursor, &watcher)?)
            .await
            .expect_err("bad cursor"),
    );
    assert_eq!(error.reason(), Some(ErrorReason::InvalidRequest));
    Ok(())
}

#[tokio::test]
async fn resuming_from_a_cursor_misses_nothing() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&issuer.sessions_config("[watch]\nheartbeat_ms = 200\n")).await?;
    let token = issuer.token(&[("permissions", TRUSTED)]).await?;
    let mut client = AuthServiceClient::new(channel(&authd.uri()).await?);
    revoke_user(&mut client, &token, "auth0|first").await?;
    let mut stream = watch(&authd.uri(), &token, "").await?;
    let mut seen = Seen::default();
    read_until(&mut stream, &mut seen, Duration::from_secs(10), |s| {
        s.heartbeats > 0
    })
    .await?;
    assert_eq!(seen.values, ["auth0|first"]);
    drop(stream);

    // Made while no one watches.
    let missed = users("while-away", 20);
    for user in &missed {
        revoke_user(&mut client, &token, user).await?;
    }
    let mut resumed = watch(&authd.uri(), &token, &seen.cursor).await?;
    let mut again = Seen::default();
    read_until(&mut resumed, &mut again, Duration::from_secs(10), |s| {
        s.heartbeats > 0
    })
    .await?;
    let got: HashSet<&String> = again.values.iter().collect();
    for user in &missed {
        assert!(got.contains(user), "{user} missed after resuming");
    }
    Ok(())
}

#[tokio::test]
async fn a_burst_of_1000_revocations_reaches_every_watcher() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&issuer.sessions_config("[log]\nfilter = \"error\"\n")).await?;
    let token = issuer.token(&[("permissions", TRUSTED)]).await?;
    let mut watchers = Vec::new();
    for _ in 0..3 {
        let mut stream = watch(&authd.uri(), &token, "").await?;
        let mut seen = Seen::default();
        read_until(&mut stream, &mut seen, Duration::from_secs(10), |s| {
            s.heartbeats > 0
        })
        .await?;
        let readers = tokio::spawn(async move {
            read_until(&mut stream, &mut seen, Duration::from_secs(120), |s| {
                s.values.len() >= 1000
            })
            .await
            .map(|()| seen.values)
        });
        watchers.push(readers);
    }
    let burst = users("burst", 1000);
    let channel = channel(&authd.uri()).await?;
    let mut revokers = Vec::new();
    for chunk in burst.chunks(125) {
        let (mut client, chunk, token) = (
            AuthServiceClient::new(channel.clone()),
            chunk.to_vec(),
            token.clone(),
        );
        revokers.push(tokio::spawn(async move {
            for user in chunk {
                revoke_user(&mut client, &token, &user).await?;
            }
            anyhow::Ok(())
        }));
    }
    for revoker in revokers {
        revoker.await??;
    }
    let expected: HashSet<String> = burst.into_iter().collect();
    for watcher in watchers {
        let values = watcher.await??;
        let got: HashSet<String> = values.into_iter().collect();
        assert_eq!(got, expected);
    }
    Ok(())
}

#[tokio::test]
async fn a_slow_watcher_is_ended_without_memory_growth() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd =
        AuthdProcess::start(&issuer.sessions_config(
            "[watch]\nbuffer = 32\nheartbeat_ms = 200\n[log]\nfilter = \"error\"\n",
        ))
        .await?;
    let token = issuer.token(&[("permissions", TRUSTED)]).await?;
    // A 1 KiB stream window: authd can send this watcher a few messages,
    // then must hold the rest or drop it.
    let slow_channel = Channel::from_shared(authd.uri())?
        .initial_stream_window_size(1024)
        .connect()
        .await?;
    let mut slow = AuthServiceClient::new(slow_channel)
        .watch_revocations(authorized(pb::WatchRevocationsRequest::default(), &token)?)
        .await?
        .into_inner();
    let mut fast = watch(&authd.uri(), &token, "").await?;
    let mut fast_seen = Seen::default();
    read_until(&mut fast, &mut fast_seen, Duration::from_secs(10), |s| {
        s.heartbeats > 0
    })
    .await?;
    let fast_reader = tokio::spawn(async move {
        read_until(&mut fast, &mut fast_seen, Duration::from_secs(60), |s| {
            s.values.len() >= 400
        })
        .await
        .map(|()| fast_seen.values.len())
    });

    let rss_before = authd.rss_kib()?;
    let mut client = AuthServiceClient::new(channel(&authd.uri()).await?);
    for user in users("slow", 400) {
        revoke_user(&mut client, &token, &user).await?;
    }
    assert_eq!(fast_reader.await??, 400, "a watcher that reads keeps up");
    let grown = authd.rss_kib()?.saturating_sub(rss_before);
    assert!(
        grown < 32 * 1024,
        "authd grew {grown} KiB with a stalled watcher"
    );

    // The slow watcher now reads: what was in flight, then its end.
    let mut received = 0;
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.message()).await? {
            Ok(Some(_)) => received += 1,
            Ok(None) => bail!("the slow watcher's stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert!(
        received < 400,
        "the slow watcher got all {received} messages"
    );
    let error = authd_client::AuthError::from(status);
    assert_eq!(
        (error.code(), error.reason()),
        (Code::ResourceExhausted, Some(ErrorReason::WatcherTooSlow)),
        "{error}"
    );
    assert_eq!(
        error.metadata().get("buffer").map(String::as_str),
        Some("32")
    );
    Ok(())
}

/// Logs `user` in with an authorization code: a session held by authd, and
/// its access token.
async fn login(issuer: &Issuer, uri: &str, user: &str) -> Result<pb::NewSession> {
    let (code, verifier) = issuer.authorize(user, "n").await?;
    let request = pb::CreateSessionRequest {
        grant: Some(Grant::AuthorizationCode(pb::AuthorizationCodeGrant {
            code,
            redirect_uri: REDIRECT_URI.to_owned(),
            code_verifier: verifier,
            nonce: "n".to_owned(),
        })),
        issuer: String::new(),
    };
    let mut client = AuthServiceClient::new(channel(uri).await?);
    client
        .create_session(request)
        .await?
        .into_inner()
        .session
        .context("no session")
}

async fn cached_client(uri: &str, token: &str, cache: CacheConfig) -> Result<AuthClient> {
    let client = AuthClient::builder()
        .endpoint(uri)
        .retry(RetryPolicy::none())
        .timeout(Duration::from_millis(500))
        .cache(cache)
        .watch_token(Secret::new(token))
        .connect()
        .await?;
    let started = Instant::now();
    while client.cache_state() != CacheState::Answering {
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "the cache is {:?}",
            client.cache_state()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(client)
}

#[tokio::test]
async fn a_revoked_sessions_token_is_refused_by_the_clients_cache() -> Result<()> {
    let issuer = Issuer::start().await?;
    let metrics = free_port()?;
    let authd = AuthdProcess::start(&issuer.sessions_config(&format!(
        "[watch]\nheartbeat_ms = 200\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"
    )))
    .await?;
    let watcher = issuer
        .token(&[("permissions", "revocations:watch")])
        .await?;
    let mut client = cached_client(&authd.uri(), &watcher, CacheConfig::default()).await?;
    let session = login(&issuer, &authd.uri(), "alice").await?;
    let token = session.access_token.clone();
    for _ in 0..3 {
        assert_eq!(
            client.verify_token(&token, &[]).await?.subject,
            "auth0|alice"
        );
    }
    assert_eq!(
        verifications(metrics).await?,
        1,
        "the 2nd and 3rd answers came from the cache"
    );

    let mut raw = AuthServiceClient::new(channel(&authd.uri()).await?);
    raw.revoke_session(pb::RevokeSessionRequest {
        target: Some(Target::SessionHandle(session.session_handle)),
    })
    .await?;
    // A generous bound: the delay itself is measured by a benchmark.
    let started = Instant::now();
    loop {
        match client.verify_token(&token, &[]).await {
            Err(error) if error.reason() == Some(ErrorReason::SessionRevoked) => break,
            Err(error) => bail!("{error}"),
            Ok(_) => ensure!(
                started.elapsed() < Duration::from_secs(10),
                "still answered 10 s after the revocation"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(client.cache_state(), CacheState::Answering);
    Ok(())
}

/// How many VerifyToken calls authd answered OK, from its `/metrics`.
async fn verifications(metrics_port: u16) -> Result<u64> {
    let text = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| {
            l.starts_with("grpc_server_handled_total{")
                && l.contains("grpc_method=\"VerifyToken\"")
                && l.contains("grpc_code=\"OK\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// Sends `signal` to `pid` with kill(1).
fn signal(pid: u32, signal: &str) -> Result<()> {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill -{signal} {pid}: {status}");
    Ok(())
}

/// Continues a stopped process, even when the test fails.
struct Continue(u32);

impl Drop for Continue {
    fn drop(&mut self) {
        let _ = signal(self.0, "CONT");
    }
}

#[tokio::test]
async fn the_cache_stops_answering_while_authd_is_paused_and_recovers() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd =
        AuthdProcess::start(&issuer.sessions_config("[watch]\nheartbeat_ms = 200\n")).await?;
    let watcher = issuer
        .token(&[("permissions", "revocations:watch")])
        .await?;
    let token = issuer.token(&[("scope", "read:orders")]).await?;
    let silence = Duration::from_secs(3);
    let mut client = cached_client(
        &authd.uri(),
        &watcher,
        CacheConfig::default().max_silence(silence),
    )
    .await?;
    client.verify_token(&token, &[]).await?;

    signal(authd.pid, "STOP")?;
    let resume = Continue(authd.pid);
    tokio::time::sleep(silence + Duration::from_millis(500)).await;
    assert_eq!(client.cache_state(), CacheState::Silent);
    let error = client
        .verify_token(&token, &[])
        .await
        .expect_err("the cache must not answer past its bound, and authd is paused");
    assert_eq!(error.code(), Code::DeadlineExceeded, "{error}");

    drop(resume);
    let started = Instant::now();
    while client.cache_state() != CacheState::Answering {
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            client.cache_state()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.verify_token(&token, &[]).await?;
    // Live again: with authd paused once more, the cache answers (until its
    // bound).
    signal(authd.pid, "STOP")?;
    let _resume = Continue(authd.pid);
    assert!(
        client.verify_token(&token, &[]).await.is_ok(),
        "answered from the cache"
    );
    Ok(())
}

#[tokio::test]
async fn a_watch_outlives_the_request_timeout() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = Authd::start(
        &issuer
            .sessions_config("[watch]\nheartbeat_ms = 100\n[limits]\nrequest_timeout_ms = 300\n"),
    )
    .await?;
    let token = issuer
        .token(&[("permissions", "revocations:watch")])
        .await?;
    let mut stream = watch(&authd.uri(), &token, "").await?;
    let mut seen = Seen::default();
    let started = Instant::now();
    read_until(&mut stream, &mut seen, Duration::from_secs(10), |_| {
        started.elapsed() > Duration::from_secs(2)
    })
    .await?;
    assert!(
        seen.heartbeats >= 10,
        "{} heartbeats in 2 s",
        seen.heartbeats
    );
    Ok(())
}

/// A DPoP-bound token through authd-client's HTTP layer with its cache on:
/// the first request asks authd, later ones are answered from the cache only
/// after the layer checked each request's own proof, replays included (of
/// proofs authd saw and of proofs only the layer saw).
#[tokio::test]
async fn a_cached_dpop_bound_verdict_still_needs_a_fresh_proof_per_request() -> Result<()> {
    use authd_client::middleware::{ScopeRules, http::HttpAuthLayer};
    use authd_tests::dpop::DpopKey;

    const ORIGIN: &str = "https://orders.example.test";
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&format!(
        "{}[watch]\nheartbeat_ms = 200\n",
        issuer.config_entry(&["RS256"])
    ))
    .await?;
    let watcher = issuer
        .token(&[("permissions", "revocations:watch")])
        .await?;
    let client = cached_client(&authd.uri(), &watcher, CacheConfig::default()).await?;
    let app = |origin: Option<&str>| {
        let layer = HttpAuthLayer::new(client.clone(), ScopeRules::new());
        let layer = match origin {
            Some(origin) => layer.dpop_origin(origin),
            None => layer,
        };
        axum::Router::new()
            .route(
                "/orders",
                axum::routing::get(
                    |token: authd_client::VerifiedToken| async move { token.subject },
                ),
            )
            .layer(layer)
    };
    let serve = |router: axum::Router| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        anyhow::Ok(addr)
    };
    let addr = serve(app(Some(ORIGIN))).await?;
    let unconfigured = serve(app(None)).await?;

    let key = DpopKey::generate()?;
    let token = issuer
        .token(&[("sub", "auth0|dora"), ("claims", &key.cnf_claims()?)])
        .await?;
    let htu = format!("{ORIGIN}/orders");
    let http = reqwest::Client::new();
    let call = |addr: std::net::SocketAddr, authorization: String, proof: Option<String>| {
        let mut request = http
            .get(format!("http://{addr}/orders?x=1"))
            .header("authorization", authorization);
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        async move {
            let response = request.send().await?;
            let challenge = response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            anyhow::Ok((response.status().as_u16(), challenge))
        }
    };
    let dpop = format!("DPoP {token}");

    let first = key.proof("GET", &htu, &token);
    assert_eq!(call(addr, dpop.clone(), Some(first.clone())).await?.0, 200);
    assert_eq!(authd.verifier().dpop().remembered_proofs(), 1);
    for _ in 0..3 {
        let fresh = key.proof("GET", &htu, &token);
        assert_eq!(call(addr, dpop.clone(), Some(fresh)).await?.0, 200);
    }
    assert_eq!(
        authd.verifier().dpop().remembered_proofs(),
        1,
        "fresh proofs on a cached verdict are checked by the layer"
    );
    let second = key.proof("GET", &htu, &token);
    assert_eq!(call(addr, dpop.clone(), Some(second.clone())).await?.0, 200);
    for replayed in [first, second] {
        let (status, challenge) = call(addr, dpop.clone(), Some(replayed)).await?;
        assert_eq!(status, 401);
        assert!(
            challenge.starts_with("DPoP error=\"invalid_dpop_proof\""),
            "{challenge}"
        );
    }
    // Stolen: as a bearer token, with a proof by another key, for another URI.
    let (status, challenge) = call(addr, format!("Bearer {token}"), None).await?;
    assert_eq!(status, 401);
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );
    let thief = DpopKey::generate()?;
    let (status, _) = call(addr, dpop.clone(), Some(thief.proof("GET", &htu, &token))).await?;
    assert_eq!(status, 401);
    let elsewhere = key.proof("GET", "https://orders.example.test/admin", &token);
    assert_eq!(call(addr, dpop.clone(), Some(elsewhere)).await?.0, 401);
    // A layer that does not know its origin refuses DPoP rather than guess.
    let proof = key.proof("GET", &htu, &token);
    assert_eq!(call(unconfigured, dpop, Some(proof)).await?.0, 400);
    Ok(())
}
