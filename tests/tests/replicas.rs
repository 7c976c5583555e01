//! Two authd processes sharing one DynamoDB table (moto on loopback), as
//! replicas behind a load balancer: concurrent refreshes of one session on
//! both spend its refresh token once and lose no rotation; a revocation on
//! one replica is enforced by the other within the bound, also for the
//! re-encoded twin of an ES256/ES384 token; `authd revoke` from the command
//! line reaches both.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::Result;
use authd::dangerous::ecdsa_twin;
use authd_client::{AuthClient, ErrorReason};
use authd_proto::pb::{self, create_session_request::Grant, refresh_session_request::Credential};
use authd_tests::{Issuer, Moto, REDIRECT_URI, authd_binary, free_port, wait_for_port};
use serde_json::json;
use tokio::process::{Child, Command};

struct Replica {
    _child: Child,
    addr: SocketAddr,
}

impl Replica {
    async fn client(&self) -> AuthClient {
        AuthClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect")
    }
}

async fn replicas(
    issuer: &Issuer,
    moto: &Moto,
    dir: &tempfile::TempDir,
) -> Result<(Replica, Replica)> {
    replicas_for(issuer, &["RS256"], moto, dir).await
}

async fn replicas_for(
    issuer: &Issuer,
    algorithms: &[&str],
    moto: &Moto,
    dir: &tempfile::TempDir,
) -> Result<(Replica, Replica)> {
    moto.store("authd").await?;
    let mut started = Vec::new();
    for name in ["a", "b"] {
        let port = free_port()?;
        let config = dir.path().join(format!("{name}.toml"));
        let text = issuer.sessions_config_for(
            algorithms,
            &format!(
            "[sessions]\nreuse_access_token_seconds = 0\nrevocation_poll_ms = 500\n\
             [store]\nkind = \"dynamodb\"\ntable = \"authd\"\nendpoint_url = \"{}\"\nregion = \"us-east-1\"\n\
             [server]\nlisten = \"127.0.0.1:{port}\"\n",
                moto.endpoint
            ),
        );
        std::fs::write(&config, text)?;
        let child = Command::new(authd_binary()?)
            .args(["serve", "--config"])
            .arg(&config)
            .envs(
                moto.env()
                    .into_iter()
                    .filter(|(k, _)| k.starts_with("AWS_")),
            )
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        wait_for_port(addr, Duration::from_secs(30)).await?;
        started.push(Replica {
            _child: child,
            addr,
        });
    }
    let b = started.pop().expect("b");
    let a = started.pop().expect("a");
    Ok((a, b))
}

async fn login(issuer: &Issuer, replica: &Replica) -> Result<pb::NewSession> {
    login_as(issuer, replica, "alice").await
}

async fn login_as(issuer: &Issuer, replica: &Replica, user: &str) -> Result<pb::NewSession> {
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
    let mut client = replica.client().await;
    Ok(client
        .raw()
        .create_session(request)
        .await?
        .into_inner()
        .session
        .expect("session"))
}

async fn refresh(replica: &Replica, handle: &str) -> Result<String> {
    refresh_with(replica.client().await, handle).await
}

async fn refresh_with(mut client: AuthClient, handle: &str) -> Result<String> {
    let request = pb::RefreshSessionRequest {
        credential: Some(Credential::SessionHandle(handle.to_owned())),
        issuer: String::new(),
    };
    Ok(client
        .raw()
        .refresh_session(request)
        .await?
        .into_inner()
        .access_token)
}

/// Revokes the session behind `handle` on `replica`.
async fn revoke(replica: &Replica, handle: &str) -> Result<()> {
    let revoked = replica
        .client()
        .await
        .raw()
        .revoke_session(pb::RevokeSessionRequest {
            target: Some(pb::revoke_session_request::Target::SessionHandle(
                handle.to_owned(),
            )),
        })
        .await?
        .into_inner();
    assert_eq!(revoked.revoked_sessions, 1);
    Ok(())
}

/// Waits until `replica` refuses `token` as revoked; panics naming `what`
/// when it still accepts it 5 s after `since`.
async fn refused_within_the_bound(replica: &Replica, token: &str, what: &str, since: Instant) {
    let mut client = replica.client().await;
    loop {
        match client.verify_token(token, &[]).await {
            Err(err) if err.reason() == Some(ErrorReason::SessionRevoked) => return,
            Ok(_) if since.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!(
                "{what} is still accepted after {:?}: {other:?}",
                since.elapsed()
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_on_two_replicas_spend_the_refresh_token_once() -> Result<()> {
    let (issuer, moto, dir) = (
        Issuer::start().await?,
        Moto::start().await?,
        tempfile::tempdir()?,
    );
    let (a, b) = replicas(&issuer, &moto, &dir).await?;
    let session = login(&issuer, &a).await?;

    // A slow token endpoint makes every refresh overlap. With no reuse
    // window, the replica that loses the lease shares the token only
    // because it waited for the other replica's refresh.
    issuer
        .control(
            "fail",
            json!({"endpoint": "token", "status": 0, "delay_ms": 800}),
        )
        .await?;
    let mut clients = Vec::new();
    for i in 0..40 {
        clients.push(if i % 2 == 0 { &a } else { &b }.client().await);
    }
    let calls = clients.into_iter().map(|client| {
        let handle = session.session_handle.clone();
        async move { refresh_with(client, &handle).await }
    });
    let tokens = futures_util::future::join_all(calls).await;
    issuer.heal().await?;
    for token in tokens {
        let token = token?;
        a.client().await.verify_token(&token, &[]).await?;
    }
    let stats = issuer.stats().await?;
    assert_eq!(
        stats["refresh"], 1,
        "one upstream refresh for both replicas"
    );
    assert_eq!(stats["refresh_reuse_detected"], 0);

    // Each replica refreshes in turn with the rotation the other stored.
    for replica in [&b, &a, &b] {
        let token = refresh(replica, &session.session_handle).await?;
        replica.client().await.verify_token(&token, &[]).await?;
    }
    let stats = issuer.stats().await?;
    assert_eq!(stats["refresh"], 4);
    assert_eq!(stats["refresh_reuse_detected"], 0, "no rotation was lost");
    assert_eq!(stats["family_revocations"], 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_on_one_replica_is_enforced_by_the_other_within_the_bound() -> Result<()> {
    let (issuer, moto, dir) = (
        Issuer::start().await?,
        Moto::start().await?,
        tempfile::tempdir()?,
    );
    let (a, b) = replicas(&issuer, &moto, &dir).await?;
    let session = login(&issuer, &a).await?;
    let mut on_b = b.client().await;
    on_b.verify_token(&session.access_token, &[]).await?;

    revoke(&a, &session.session_handle).await?;
    let started = Instant::now();
    let err = a
        .client()
        .await
        .verify_token(&session.access_token, &[])
        .await
        .expect_err("refused at once on A");
    assert_eq!(err.reason(), Some(ErrorReason::SessionRevoked));
    refused_within_the_bound(&b, &session.access_token, "B: the revoked token", started).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // And B refuses to refresh it.
    let err = refresh(&b, &session.session_handle)
        .await
        .expect_err("revoked");
    assert!(err.to_string().contains("revoked"), "{err}");
    Ok(())
}

/// ECDSA signatures are malleable: (r, s) and (r, n − s) both verify. A
/// revoked session's token, re-encoded that way, must stay refused on every
/// replica, also when the token carries no `sid` (Auth0's access tokens
/// carry none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_ecdsa_token_re_encoded_is_refused_on_every_replica() -> Result<()> {
    let (issuer, moto, dir) = (
        Issuer::start().await?,
        Moto::start().await?,
        tempfile::tempdir()?,
    );
    issuer
        .control("access-token-sid", json!({"include": false}))
        .await?;
    let (a, b) = replicas_for(&issuer, &["RS256", "ES256", "ES384"], &moto, &dir).await?;
    for alg in ["ES256", "ES384"] {
        issuer.rotate(alg).await?;
        let session = login(&issuer, &a).await?;
        let token = session.access_token.clone();
        let twin = ecdsa_twin(&token).expect("an ECDSA token");
        assert_ne!(twin, token);
        for replica in [&a, &b] {
            for t in [&token, &twin] {
                let verified = replica.client().await.verify_token(t, &[]).await?;
                assert!(verified.session_id.is_none(), "{alg}: no sid in the token");
            }
        }
        revoke(&a, &session.session_handle).await?;
        let started = Instant::now();
        for replica in [&a, &b] {
            for (what, t) in [("token", &token), ("twin", &twin)] {
                let what = format!("{alg}: the revoked {what}");
                refused_within_the_bound(replica, t, &what, started).await;
            }
        }
    }
    Ok(())
}

/// A WatchRevocations stream on `replica` for a service token allowed it,
/// read until its first heartbeat (caught up).
async fn watcher(
    replica: &Replica,
    token: &str,
) -> Result<tonic::Streaming<pb::WatchRevocationsResponse>> {
    let mut request = tonic::Request::new(pb::WatchRevocationsRequest::default());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let mut stream = replica
        .client()
        .await
        .raw()
        .watch_revocations(request)
        .await?
        .into_inner();
    loop {
        let message = stream.message().await?.expect("open");
        if matches!(
            message.event,
            Some(pb::watch_revocations_response::Event::Heartbeat(_))
        ) {
            return Ok(stream);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_replica_reaches_the_watchers_of_both() -> Result<()> {
    let (issuer, moto, dir) = (
        Issuer::start().await?,
        Moto::start().await?,
        tempfile::tempdir()?,
    );
    let (a, b) = replicas(&issuer, &moto, &dir).await?;
    let token = issuer
        .token(&[("permissions", "revocations:watch sessions:revoke")])
        .await?;
    let mut watchers = [watcher(&a, &token).await?, watcher(&b, &token).await?];

    let mut request = tonic::Request::new(pb::RevokeSessionRequest {
        target: Some(pb::revoke_session_request::Target::UserId(
            "auth0|mallory".to_owned(),
        )),
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    a.client().await.raw().revoke_session(request).await?;

    // b learns it from the table (poll every 500 ms): a generous bound.
    for (name, stream) in ["a", "b"].into_iter().zip(&mut watchers) {
        let revocation = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match stream.message().await?.map(|m| m.event) {
                    Some(Some(pb::watch_revocations_response::Event::Revocation(r))) => {
                        return anyhow::Ok(r);
                    }
                    Some(_) => {}
                    None => anyhow::bail!("the stream ended"),
                }
            }
        })
        .await
        .map_err(|_| anyhow::anyhow!("the watcher on {name} heard nothing in 10 s"))??;
        assert_eq!(
            (revocation.kind(), revocation.value.as_str()),
            (pb::RevocationKind::Subject, "auth0|mallory"),
            "on {name}"
        );
        assert_eq!(revocation.issuer, issuer.url, "on {name}");
    }
    Ok(())
}

/// `authd revoke` with the replicas' configuration: exit status, output.
async fn operator_revoke(
    moto: &Moto,
    config: &std::path::Path,
    args: &[&str],
) -> Result<(bool, String)> {
    let out = Command::new(authd_binary()?)
        .arg("revoke")
        .args(args)
        .arg("--config")
        .arg(config)
        .envs(
            moto.env()
                .into_iter()
                .filter(|(k, _)| k.starts_with("AWS_")),
        )
        .output()
        .await?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// The `sid` claim of a compact token.
fn sid_of(token: &str) -> Result<String> {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    let payload = token.split('.').nth(1).unwrap_or_default();
    let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?;
    Ok(claims["sid"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_revokes_a_user_or_an_issuer_session_from_the_command_line() -> Result<()> {
    let (issuer, moto, dir) = (
        Issuer::start().await?,
        Moto::start().await?,
        tempfile::tempdir()?,
    );
    let (a, b) = replicas(&issuer, &moto, &dir).await?;
    let config = dir.path().join("a.toml");
    let alice = login_as(&issuer, &a, "alice").await?;
    let bob = login_as(&issuer, &a, "bob").await?;
    let carol_token = issuer.token(&[("sub", "auth0|carol")]).await?;

    // Refused input revokes nothing.
    for args in [
        &["--user", "auth0|alice", "--session-id", "x"][..],
        &[][..],
        &[
            "--user",
            "auth0|alice",
            "--issuer",
            "https://not-configured.example/",
        ][..],
        &["--user", ""][..],
    ] {
        let (ok, text) = operator_revoke(&moto, &config, args).await?;
        assert!(!ok, "{args:?} was accepted: {text}");
    }
    b.client()
        .await
        .verify_token(&alice.access_token, &[])
        .await?;
    // Revocation times are whole seconds; a session begun in the
    // revocation's own second counts as begun after it.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let since = Instant::now();
    let (ok, text) = operator_revoke(&moto, &config, &["--user", "auth0|alice"]).await?;
    assert!(
        ok && text.contains("revoked user \"auth0|alice\""),
        "{text}"
    );
    for replica in [&a, &b] {
        refused_within_the_bound(replica, &alice.access_token, "alice's token", since).await;
    }
    let refused = refresh(&b, &alice.session_handle)
        .await
        .expect_err("revoked");
    let status = refused.downcast::<tonic::Status>()?;
    assert_eq!(
        authd_client::AuthError::from(status).reason(),
        Some(ErrorReason::SessionRevoked)
    );

    let sid = sid_of(&bob.access_token)?;
    assert!(!sid.is_empty(), "the test issuer puts sid in access tokens");
    let since = Instant::now();
    let (ok, text) = operator_revoke(&moto, &config, &["--session-id", &sid]).await?;
    assert!(ok, "{text}");
    for replica in [&a, &b] {
        refused_within_the_bound(replica, &bob.access_token, "bob's token", since).await;
    }
    assert!(refresh(&a, &bob.session_handle).await.is_err());
    // Nobody else.
    for replica in [&a, &b] {
        replica
            .client()
            .await
            .verify_token(&carol_token, &[])
            .await?;
    }
    Ok(())
}
