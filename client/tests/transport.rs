//! The client's transport behaviour against a scripted authd: retries (only
//! `UNAVAILABLE`, only idempotent calls, bounded), per-call deadlines, the
//! verification cache, balancing over several endpoints, and mutual TLS.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use authd_client::{
    AuthClient, AuthClientBuilder, CacheConfig, CacheState, ErrorReason, RetryPolicy, SessionGrant,
    tls::{Certificate, ClientTlsConfig, Identity},
};
use authd_proto::pb::{self, auth_service_server::AuthService};
use tonic::{
    Code, Request, Response, Status,
    codegen::tokio_stream::wrappers::ReceiverStream,
    transport::{Server, ServerTlsConfig, server::TcpIncoming},
};
use tonic_types::{ErrorDetails, StatusExt};

/// Answers VerifyToken by the token's text: `unavailable`, `expired`, `slow`
/// (3 s), `short` (expires in 1 s); any other token is valid for an hour with
/// itself as subject. WatchRevocations sends a heartbeat every 100 ms (or
/// is refused PERMISSION_DENIED when `refuse_watch`; with `short_watches`
/// each stream ends after one heartbeat whose cursor counts the streams).
/// Every other method answers UNAVAILABLE. Counts calls but the watch, and
/// records the cursor each watch asked for.
#[derive(Debug, Clone, Default)]
struct Scripted {
    calls: Arc<AtomicUsize>,
    refuse_watch: bool,
    short_watches: bool,
    cursors: Arc<std::sync::Mutex<Vec<String>>>,
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl AuthService for Scripted {
    async fn verify_token(
        &self,
        request: Request<pb::VerifyTokenRequest>,
    ) -> Answer<pb::VerifyTokenResponse> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let token = request.into_inner().token;
        let lifetime = match token.as_str() {
            "unavailable" => return Err(Status::unavailable("keys unavailable")),
            "expired" => {
                return Err(Status::with_error_details(
                    Code::Unauthenticated,
                    "expired",
                    ErrorDetails::with_error_info("TOKEN_EXPIRED", "authd", []),
                ));
            }
            "slow" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                3600
            }
            "short" => 1,
            _ => 3600,
        };
        let exp = SystemTime::now() + Duration::from_secs(lifetime);
        Ok(Response::new(pb::VerifyTokenResponse {
            subject: token,
            expires_at: Some(exp.into()),
            ..Default::default()
        }))
    }

    async fn create_session(
        &self,
        _: Request<pb::CreateSessionRequest>,
    ) -> Answer<pb::CreateSessionResponse> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(Status::unavailable("issuer unreachable"))
    }

    async fn refresh_session(
        &self,
        _: Request<pb::RefreshSessionRequest>,
    ) -> Answer<pb::RefreshSessionResponse> {
        Err(Status::unavailable("unscripted"))
    }

    async fn revoke_session(
        &self,
        _: Request<pb::RevokeSessionRequest>,
    ) -> Answer<pb::RevokeSessionResponse> {
        Err(Status::unavailable("unscripted"))
    }

    async fn get_profile(
        &self,
        _: Request<pb::GetProfileRequest>,
    ) -> Answer<pb::GetProfileResponse> {
        Err(Status::unavailable("unscripted"))
    }

    async fn start_device_login(
        &self,
        _: Request<pb::StartDeviceLoginRequest>,
    ) -> Answer<pb::StartDeviceLoginResponse> {
        Err(Status::unavailable("unscripted"))
    }

    async fn poll_device_login(
        &self,
        _: Request<pb::PollDeviceLoginRequest>,
    ) -> Answer<pb::PollDeviceLoginResponse> {
        Err(Status::unavailable("unscripted"))
    }

    type WatchRevocationsStream = ReceiverStream<Result<pb::WatchRevocationsResponse, Status>>;

    async fn watch_revocations(
        &self,
        request: Request<pb::WatchRevocationsRequest>,
    ) -> Answer<Self::WatchRevocationsStream> {
        if self.refuse_watch {
            return Err(Status::permission_denied("not for you"));
        }
        let streams = {
            let mut cursors = self.cursors.lock().expect("cursors");
            cursors.push(request.into_inner().cursor);
            cursors.len()
        };
        let short = self.short_watches;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let heartbeat = pb::WatchRevocationsResponse {
                event: Some(pb::watch_revocations_response::Event::Heartbeat(
                    pb::Heartbeat { interval_ms: 100 },
                )),
                cursor: streams.to_string(),
            };
            while tx.send(Ok(heartbeat.clone())).await.is_ok() && !short {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

impl Scripted {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// Serves `fake` on loopback, with TLS when given.
async fn serve(fake: Scripted, tls: Option<ServerTlsConfig>) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let router = builder.add_service(pb::auth_service_server::AuthServiceServer::new(fake));
    tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));
    Ok(addr)
}

async fn scripted() -> anyhow::Result<(Scripted, AuthClientBuilder)> {
    serve_scripted(Scripted::default()).await
}

async fn serve_scripted(fake: Scripted) -> anyhow::Result<(Scripted, AuthClientBuilder)> {
    let addr = serve(fake.clone(), None).await?;
    let builder = AuthClient::builder().endpoint(format!("http://{addr}"));
    Ok((fake, builder))
}

/// Waits (up to 5 s) for the cache's revocation stream to be live.
async fn answering(client: &AuthClient) -> anyhow::Result<()> {
    let started = Instant::now();
    while client.cache_state() != CacheState::Answering {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(5),
            "cache state {:?}",
            client.cache_state()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

fn fast_retries(attempts: u32) -> RetryPolicy {
    let mut policy = RetryPolicy::attempts(attempts);
    policy.initial_backoff = Duration::from_millis(5);
    policy
}

#[tokio::test]
async fn unavailable_is_retried_until_the_attempts_run_out() -> anyhow::Result<()> {
    let (fake, builder) = scripted().await?;
    let mut client = builder.retry(fast_retries(3)).build()?;
    let err = client
        .verify_token("unavailable", &[])
        .await
        .expect_err("down");
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(fake.calls(), 3);
    Ok(())
}

#[tokio::test]
async fn unauthenticated_is_never_retried() -> anyhow::Result<()> {
    let (fake, builder) = scripted().await?;
    let mut client = builder.retry(fast_retries(5)).build()?;
    let err = client.verify_token("expired", &[]).await.expect_err("bad");
    assert_eq!(err.reason(), Some(ErrorReason::TokenExpired));
    assert_eq!(fake.calls(), 1);
    Ok(())
}

#[tokio::test]
async fn create_session_is_not_retried() -> anyhow::Result<()> {
    let (fake, builder) = scripted().await?;
    let mut client = builder.retry(fast_retries(5)).build()?;
    let grant = SessionGrant::AuthorizationCode {
        code: "code".into(),
        redirect_uri: "https://app.test/cb".to_owned(),
        code_verifier: None,
        nonce: None,
    };
    let err = client.create_session(grant, None).await.expect_err("down");
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(fake.calls(), 1, "a lost answer must not start two sessions");
    Ok(())
}

#[tokio::test]
async fn a_call_past_its_deadline_fails_with_deadline_exceeded() -> anyhow::Result<()> {
    let (_, builder) = scripted().await?;
    let mut client = builder.timeout(Duration::from_millis(200)).build()?;
    let started = Instant::now();
    let err = client
        .verify_token("slow", &[])
        .await
        .expect_err("too slow");
    assert_eq!(err.code(), Code::DeadlineExceeded);
    assert!(err.is_unavailable());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn cache_is_on_by_default_once_the_revocation_stream_is_live() -> anyhow::Result<()> {
    let (fake, builder) = scripted().await?;
    let mut client = builder.build()?;
    answering(&client).await?;
    client.verify_token("alice", &[]).await?;
    client.verify_token("alice", &[]).await?;
    assert_eq!(fake.calls(), 1);
    Ok(())
}

#[tokio::test]
async fn the_watch_reconnects_and_resumes_from_its_last_cursor() -> anyhow::Result<()> {
    let (fake, builder) = serve_scripted(Scripted {
        short_watches: true,
        ..Scripted::default()
    })
    .await?;
    let _client = builder.build()?;
    let started = Instant::now();
    while fake.cursors.lock().expect("cursors").len() < 3 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "no reconnection"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cursors = fake.cursors.lock().expect("cursors").clone();
    assert_eq!(cursors[..3], ["", "1", "2"]);
    Ok(())
}

#[tokio::test]
async fn no_cache_asks_every_time() -> anyhow::Result<()> {
    let (fake, builder) = scripted().await?;
    let mut client = builder.no_cache().build()?;
    assert_eq!(client.cache_state(), CacheState::Off);
    client.verify_token("alice", &[]).await?;
    client.verify_token("alice", &[]).await?;
    assert_eq!(fake.calls(), 2);
    Ok(())
}

#[tokio::test]
async fn a_caller_refused_the_watch_runs_without_cache_and_without_failing() -> anyhow::Result<()> {
    let (fake, builder) = serve_scripted(Scripted {
        refuse_watch: true,
        ..Scripted::default()
    })
    .await?;
    let mut client = builder.build()?;
    let started = Instant::now();
    while client.cache_state() != CacheState::Off {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(5),
            "still {:?}",
            client.cache_state()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..3 {
        assert_eq!(client.verify_token("alice", &[]).await?.subject, "alice");
    }
    assert_eq!(fake.calls(), 3);
    Ok(())
}

#[tokio::test]
async fn cache_answers_the_same_token_and_scopes_without_asking() -> anyhow::Result<()> {
    let (fake, builder) = scripted().await?;
    let mut client = builder.cache(CacheConfig::default()).build()?;
    answering(&client).await?;
    let first = client.verify_token("alice", &["read", "write"]).await?;
    // A clone shares the cache.
    let again = client
        .clone()
        .verify_token("alice", &["write", "read"])
        .await?;
    assert_eq!((first.subject.as_str(), again), ("alice", first.clone()));
    assert_eq!(fake.calls(), 1);
    client.verify_token("alice", &["read"]).await?;
    assert_eq!(fake.calls(), 2, "other scopes are another question");
    // Refusals are never cached.
    for _ in 0..2 {
        client.verify_token("expired", &[]).await.expect_err("bad");
    }
    assert_eq!(fake.calls(), 4);
    Ok(())
}

#[tokio::test]
async fn cached_entry_ends_with_the_token() -> anyhow::Result<()> {
    let (fake, builder) = scripted().await?;
    let mut client = builder.cache(CacheConfig::default()).build()?;
    answering(&client).await?;
    client.verify_token("short", &[]).await?;
    client.verify_token("short", &[]).await?;
    assert_eq!(fake.calls(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.verify_token("short", &[]).await?;
    assert_eq!(fake.calls(), 2, "the token's exp bounds the entry");
    Ok(())
}

#[tokio::test]
async fn calls_are_balanced_over_every_endpoint() -> anyhow::Result<()> {
    let (a, b) = (Scripted::default(), Scripted::default());
    let addr_a = serve(a.clone(), None).await?;
    let addr_b = serve(b.clone(), None).await?;
    let mut client = AuthClient::builder()
        .endpoint(format!("http://{addr_a}"))
        .endpoint(format!("http://{addr_b}"))
        .no_cache()
        .build()?;
    for _ in 0..40 {
        client.verify_token("alice", &[]).await?;
    }
    assert_eq!(a.calls() + b.calls(), 40);
    assert!(
        a.calls() > 0 && b.calls() > 0,
        "{} / {}",
        a.calls(),
        b.calls()
    );
    Ok(())
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() -> anyhow::Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let leaf = |name: &str| -> anyhow::Result<Identity> {
        let key = KeyPair::generate()?;
        let cert = CertificateParams::new(vec![name.to_owned()])?.signed_by(&key, &ca)?;
        Ok(Identity::from_pem(cert.pem(), key.serialize_pem()))
    };
    let ca_cert = Certificate::from_pem(ca.pem());
    let server_tls = ServerTlsConfig::new()
        .identity(leaf("localhost")?)
        .client_ca_root(ca_cert.clone());
    let fake = Scripted::default();
    let addr = serve(fake.clone(), Some(server_tls)).await?;

    let client_tls = ClientTlsConfig::new()
        .ca_certificate(ca_cert)
        .domain_name("localhost");
    let builder = AuthClient::builder()
        .endpoint(format!("https://{addr}"))
        .retry(RetryPolicy::none());
    let mut with_cert = builder
        .clone()
        .tls(client_tls.clone().identity(leaf("billing-service")?))
        .build()?;
    assert_eq!(with_cert.verify_token("alice", &[]).await?.subject, "alice");

    let mut without_cert = builder.tls(client_tls).build()?;
    let err = without_cert
        .verify_token("alice", &[])
        .await
        .expect_err("no cert");
    // TLS 1.3 reports the refused certificate after the handshake, as a
    // transport error (UNKNOWN); the call never reaches the service.
    assert_eq!((err.code(), err.reason()), (Code::Unknown, None), "{err}");
    assert_eq!(fake.calls(), 1);
    Ok(())
}
