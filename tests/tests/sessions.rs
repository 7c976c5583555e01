//! Sessions end to end against the Auth0-shaped issuer (rotation with reuse
//! detection, invalid_grant, offline_access, device grant) on the embedded
//! store (and DynamoDB where a rule lives in the store): create, refresh
//! under concurrency, revoke, bad input, a device code spent once.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Result;
use authd_client::{AuthError, ErrorReason};
use authd_proto::pb::{
    self, create_session_request::Grant, refresh_session_request::Credential,
    revoke_session_request::Target,
};
use authd_tests::{Authd, Issuer, Moto, REDIRECT_URI};
use serde_json::json;
use tonic::{Code, Request};

type Client = pb::auth_service_client::AuthServiceClient<tonic::transport::Channel>;

async fn client(authd: &Authd) -> Client {
    authd.client().await.expect("connect").raw().clone()
}

async fn by_code(
    issuer: &Issuer,
    client: &mut Client,
    user: &str,
) -> Result<pb::NewSession, AuthError> {
    let (code, verifier) = issuer.authorize(user, "n-0S6").await.expect("authorize");
    create(
        client,
        Grant::AuthorizationCode(pb::AuthorizationCodeGrant {
            code,
            redirect_uri: REDIRECT_URI.to_owned(),
            code_verifier: verifier,
            nonce: "n-0S6".to_owned(),
        }),
    )
    .await
}

async fn create(client: &mut Client, grant: Grant) -> Result<pb::NewSession, AuthError> {
    let request = pb::CreateSessionRequest {
        grant: Some(grant),
        issuer: String::new(),
    };
    Ok(client
        .create_session(request)
        .await?
        .into_inner()
        .session
        .expect("session"))
}

async fn refresh(
    client: &mut Client,
    credential: Credential,
) -> Result<pb::RefreshSessionResponse, AuthError> {
    let request = pb::RefreshSessionRequest {
        credential: Some(credential),
        issuer: String::new(),
    };
    Ok(client.refresh_session(request).await?.into_inner())
}

async fn revoke(
    client: &mut Client,
    target: Target,
    service_token: Option<&str>,
) -> Result<u32, AuthError> {
    let mut request = Request::new(pb::RevokeSessionRequest {
        target: Some(target),
    });
    if let Some(token) = service_token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
    }
    Ok(client
        .revoke_session(request)
        .await?
        .into_inner()
        .revoked_sessions)
}

async fn verify(authd: &Authd, token: &str) -> Result<authd_client::VerifiedToken, AuthError> {
    authd
        .client()
        .await
        .expect("connect")
        .verify_token(token, &[])
        .await
}

fn reason(result: Result<impl std::fmt::Debug, AuthError>) -> (Code, Option<ErrorReason>) {
    let err = result.expect_err("must fail");
    (err.code(), err.reason())
}

#[tokio::test]
async fn code_login_refresh_and_revoke() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&issuer.sessions_config("")).await?;
    let mut c = client(&authd).await;

    let session = by_code(&issuer, &mut c, "alice").await?;
    assert_eq!(session.session_handle.len(), 43, "256 bits, base64url");
    let described = session.session.clone().expect("session");
    assert_eq!(described.user_id, "auth0|alice");
    assert_ne!(
        described.session_id, session.session_handle,
        "the id is not the handle"
    );
    assert_eq!(
        session.profile.as_ref().expect("profile").name,
        "Alice Example"
    );
    assert!(!session.id_token.is_empty());
    let first = session.access_token.clone();
    assert_eq!(verify(&authd, &first).await?.subject, "auth0|alice");

    // A fresh session answers with its stored token without spending the
    // refresh token (within reuse_access_token_seconds).
    let again = refresh(
        &mut c,
        Credential::SessionHandle(session.session_handle.clone()),
    )
    .await?;
    assert_eq!(again.access_token, first);
    assert_eq!(issuer.stats().await?["refresh"], 0);

    let authd_now =
        Authd::start(&issuer.sessions_config("[sessions]\nreuse_access_token_seconds = 0\n"))
            .await?;
    let mut c2 = client(&authd_now).await;
    let s2 = by_code(&issuer, &mut c2, "alice").await?;
    let refreshed = refresh(
        &mut c2,
        Credential::SessionHandle(s2.session_handle.clone()),
    )
    .await?;
    assert_eq!(
        issuer.stats().await?["refresh"],
        1,
        "the refresh token was spent"
    );
    assert!(
        refreshed.refresh_token.is_empty(),
        "authd keeps the rotated refresh token"
    );
    verify(&authd_now, &refreshed.access_token).await?;
    let again = refresh(
        &mut c2,
        Credential::SessionHandle(s2.session_handle.clone()),
    )
    .await?;
    verify(&authd_now, &again.access_token).await?;
    let stats = issuer.stats().await?;
    assert_eq!(stats["refresh"], 2);
    assert_eq!(
        stats["refresh_reuse_detected"], 0,
        "every rotation was stored"
    );

    assert_eq!(
        revoke(
            &mut c2,
            Target::SessionHandle(s2.session_handle.clone()),
            None
        )
        .await?,
        1
    );
    assert_eq!(
        issuer.stats().await?["revoke"],
        1,
        "revoked at the issuer too"
    );
    for token in [
        &s2.access_token,
        &refreshed.access_token,
        &again.access_token,
    ] {
        assert_eq!(
            reason(verify(&authd_now, token).await),
            (Code::Unauthenticated, Some(ErrorReason::SessionRevoked))
        );
    }
    assert_eq!(
        reason(
            refresh(
                &mut c2,
                Credential::SessionHandle(s2.session_handle.clone())
            )
            .await
        ),
        (Code::Unauthenticated, Some(ErrorReason::SessionRevoked))
    );
    assert_eq!(
        revoke(&mut c2, Target::SessionHandle(s2.session_handle), None).await?,
        0,
        "idempotent"
    );
    // The other session, on the other authd, is untouched.
    verify(&authd, &first).await?;
    Ok(())
}

#[tokio::test]
async fn fifty_concurrent_refreshes_make_one_upstream_call() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd =
        Authd::start(&issuer.sessions_config("[sessions]\nreuse_access_token_seconds = 0\n"))
            .await?;
    let mut c = client(&authd).await;
    let session = by_code(&issuer, &mut c, "alice").await?;
    issuer
        .control(
            "fail",
            json!({"endpoint": "token", "status": 0, "delay_ms": 1000}),
        )
        .await?;
    let calls = (0..50).map(|_| {
        let mut c = c.clone();
        let handle = session.session_handle.clone();
        async move { refresh(&mut c, Credential::SessionHandle(handle)).await }
    });
    let answers = futures_util::future::join_all(calls).await;
    issuer.heal().await?;
    let mut tokens = std::collections::HashSet::new();
    for answer in answers {
        let token = answer?.access_token;
        verify(&authd, &token).await?;
        tokens.insert(token);
    }
    assert_eq!(tokens.len(), 1, "everyone shares the one refresh");
    let stats = issuer.stats().await?;
    assert_eq!(stats["refresh"], 1);
    assert_eq!(stats["refresh_reuse_detected"], 0);
    Ok(())
}

#[tokio::test]
async fn issuer_down_or_slow_mid_refresh_leaves_the_session_intact() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd =
        Authd::start(&issuer.sessions_config("[sessions]\nreuse_access_token_seconds = 0\n"))
            .await?;
    let mut c = client(&authd).await;
    let session = by_code(&issuer, &mut c, "alice").await?;
    let handle = || Credential::SessionHandle(session.session_handle.clone());

    issuer.fail("token", 503).await?;
    assert_eq!(
        reason(refresh(&mut c, handle()).await),
        (Code::Unavailable, Some(ErrorReason::IssuerUnavailable))
    );
    // Slower than authd's timeout (1.5 s), then failing, as a gateway would.
    issuer
        .control(
            "fail",
            json!({"endpoint": "token", "status": 504, "delay_ms": 2500}),
        )
        .await?;
    let started = Instant::now();
    assert_eq!(reason(refresh(&mut c, handle()).await).0, Code::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(2500 / 1000 + 1));
    issuer.heal().await?;

    // The stored refresh token is the one the issuer expects: no reuse.
    let refreshed = refresh(&mut c, handle()).await?;
    verify(&authd, &refreshed.access_token).await?;
    let stats = issuer.stats().await?;
    assert_eq!(stats["refresh_reuse_detected"], 0);
    assert_eq!(stats["family_revocations"], 0);
    Ok(())
}

#[tokio::test]
async fn invalid_grant_marks_the_session_revoked() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd =
        Authd::start(&issuer.sessions_config("[sessions]\nreuse_access_token_seconds = 0\n"))
            .await?;
    let mut c = client(&authd).await;
    let login = issuer.password_login("alice").await?;
    let refresh_token = login["refresh_token"].as_str().expect("rt").to_owned();
    let session = create(
        &mut c,
        Grant::ExistingTokens(pb::ExistingTokens {
            refresh_token: refresh_token.clone(),
            id_token: login["id_token"].as_str().expect("idt").to_owned(),
            access_token: String::new(),
            nonce: String::new(),
        }),
    )
    .await?;
    verify(&authd, &session.access_token).await?;
    // The caller (wrongly) spends its own copy of the old token: the issuer
    // sees reuse and revokes the family, so authd's next refresh fails.
    let _ = issuer.control("heal", json!({})).await;
    let reused = refresh(&mut c, Credential::RefreshToken(refresh_token)).await;
    assert_eq!(
        reason(reused),
        (Code::Unauthenticated, Some(ErrorReason::GrantRejected))
    );
    assert_eq!(
        reason(
            refresh(
                &mut c,
                Credential::SessionHandle(session.session_handle.clone())
            )
            .await
        ),
        (Code::Unauthenticated, Some(ErrorReason::SessionRevoked))
    );
    assert_eq!(
        reason(verify(&authd, &session.access_token).await).1,
        Some(ErrorReason::SessionRevoked)
    );
    Ok(())
}

#[tokio::test]
async fn raw_refresh_tokens_are_forwarded_and_rotated() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&issuer.sessions_config("")).await?;
    let mut c = client(&authd).await;
    let login = issuer.password_login("bob").await?;
    let first = login["refresh_token"].as_str().expect("rt").to_owned();
    let answer = refresh(&mut c, Credential::RefreshToken(first.clone())).await?;
    assert!(
        !answer.refresh_token.is_empty() && answer.refresh_token != first,
        "rotated"
    );
    assert!(answer.expires_at.is_some());
    verify(&authd, &answer.access_token).await?;
    let next = refresh(&mut c, Credential::RefreshToken(answer.refresh_token)).await?;
    verify(&authd, &next.access_token).await?;
    assert_eq!(
        reason(refresh(&mut c, Credential::RefreshToken(first)).await).1,
        Some(ErrorReason::GrantRejected)
    );
    Ok(())
}

#[tokio::test]
async fn revoking_a_user_refuses_all_sessions_and_older_tokens() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&issuer.sessions_config("")).await?;
    let mut c = client(&authd).await;
    let a = by_code(&issuer, &mut c, "alice").await?;
    let b = by_code(&issuer, &mut c, "alice").await?;
    let bob = by_code(&issuer, &mut c, "bob").await?;
    // A token of alice's that authd never handed out, issued before.
    let elsewhere = issuer.token(&[("sub", "auth0|alice")]).await?;
    verify(&authd, &elsewhere).await?;

    let user = || Target::UserId("auth0|alice".to_owned());
    assert_eq!(
        reason(revoke(&mut c, user(), None).await),
        (Code::PermissionDenied, Some(ErrorReason::CallerNotTrusted))
    );
    assert_eq!(
        reason(revoke(&mut c, user(), Some(&a.access_token)).await).0,
        Code::PermissionDenied
    );
    let service = issuer.token(&[("permissions", "sessions:revoke")]).await?;
    assert_eq!(revoke(&mut c, user(), Some(&service)).await?, 2);

    for token in [&a.access_token, &b.access_token, &elsewhere] {
        assert_eq!(
            reason(verify(&authd, token).await).1,
            Some(ErrorReason::SessionRevoked)
        );
    }
    verify(&authd, &bob.access_token).await?;
    // Tokens issued after the revocation pass.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    verify(&authd, &issuer.token(&[("sub", "auth0|alice")]).await?).await?;
    let fresh = by_code(&issuer, &mut c, "alice").await?;
    verify(&authd, &fresh.access_token).await?;
    Ok(())
}

#[tokio::test]
async fn device_login_end_to_end() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&issuer.sessions_config("")).await?;
    let mut c = client(&authd).await;
    issuer
        .control("device-config", json!({"interval": 1}))
        .await?;
    let start = || pb::StartDeviceLoginRequest {
        scopes: vec!["read:orders".to_owned()],
        audience: String::new(),
        issuer: String::new(),
    };
    let poll = |device_code: String, interval: u32| pb::PollDeviceLoginRequest {
        device_code,
        issuer: String::new(),
        interval,
    };
    use pb::DeviceLoginState as S;

    let started = c.start_device_login(start()).await?.into_inner();
    assert!(!started.user_code.is_empty() && started.verification_uri.starts_with(&issuer.url));
    assert!(
        started
            .verification_uri_complete
            .contains(&started.user_code.replace('-', ""))
            || !started.verification_uri_complete.is_empty()
    );
    assert_eq!(started.interval, 1);
    assert!(started.expires_in > 0);
    // authd asks for what fills the profile it keeps, besides the caller's scopes.
    let view = issuer
        .control(
            &format!("device/{}", started.user_code),
            json!({"interval": 1}),
        )
        .await?;
    let asked: Vec<&str> = view["scope"]
        .as_str()
        .unwrap_or_default()
        .split(' ')
        .collect();
    for scope in [
        "openid",
        "offline_access",
        "profile",
        "email",
        "read:orders",
    ] {
        assert!(asked.contains(&scope), "{scope} not asked for: {asked:?}");
    }
    let pending = c
        .poll_device_login(poll(started.device_code.clone(), started.interval))
        .await?
        .into_inner();
    assert_eq!(pending.state(), S::Pending);
    // The issuer's interval is kept while pending.
    assert_eq!(pending.interval, started.interval);
    issuer
        .control(
            &format!("device/{}", started.user_code),
            json!({"action": "approve", "user": "alice"}),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let approved = c
        .poll_device_login(poll(started.device_code.clone(), pending.interval))
        .await?
        .into_inner();
    assert_eq!(approved.state(), S::Approved);
    let session = approved.session.expect("session");
    assert_eq!(session.session.as_ref().expect("s").user_id, "auth0|alice");
    let verified = verify(&authd, &session.access_token).await?;
    assert!(verified.scopes.iter().any(|s| s == "read:orders"));
    // The app lost that answer and polls again: the issuer will not hand the
    // tokens out twice, so authd answers with the same session.
    let exchanges = issuer.stats().await?["token"]["device_code"].clone();
    let again = c
        .poll_device_login(poll(started.device_code.clone(), pending.interval))
        .await?
        .into_inner();
    assert_eq!(again.state(), S::Approved);
    let again = again.session.expect("session");
    assert_eq!(again.session_handle, session.session_handle);
    assert_eq!(
        again.session.as_ref().map(|s| &s.session_id),
        session.session.as_ref().map(|s| &s.session_id)
    );
    assert_eq!(again.profile.expect("profile").name, "Alice Example");
    assert_eq!(issuer.stats().await?["token"]["device_code"], exchanges);
    refresh(&mut c, Credential::SessionHandle(session.session_handle)).await?;

    let denied = c.start_device_login(start()).await?.into_inner();
    issuer
        .control(
            &format!("device/{}", denied.user_code),
            json!({"action": "deny"}),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        c.poll_device_login(poll(denied.device_code, 0))
            .await?
            .into_inner()
            .state(),
        S::Denied
    );

    let expired = c.start_device_login(start()).await?.into_inner();
    issuer
        .control(
            &format!("device/{}", expired.user_code),
            json!({"action": "expire"}),
        )
        .await?;
    assert_eq!(
        c.poll_device_login(poll(expired.device_code, 0))
            .await?
            .into_inner()
            .state(),
        S::Expired
    );

    // Polling too fast: each slow down adds five seconds to the interval
    // the app says it uses (RFC 8628 §3.5); 0 stands for the default 5.
    let fast = c.start_device_login(start()).await?.into_inner();
    c.poll_device_login(poll(fast.device_code.clone(), fast.interval))
        .await?;
    let slowed = c
        .poll_device_login(poll(fast.device_code.clone(), fast.interval))
        .await?
        .into_inner();
    assert_eq!(slowed.state(), S::SlowDown);
    assert_eq!(slowed.interval, fast.interval + 5);
    let again = c
        .poll_device_login(poll(fast.device_code.clone(), 0))
        .await?
        .into_inner();
    assert_eq!((again.state(), again.interval), (S::SlowDown, 10));
    let refused = c
        .poll_device_login(poll(fast.device_code, 3601))
        .await
        .expect_err("an interval over an hour is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    Ok(())
}

/// Approves a device login for `user` and polls once: the APPROVED answer.
async fn device_session(
    issuer: &Issuer,
    c: &mut Client,
    user: &str,
) -> Result<(String, pb::NewSession)> {
    let started = c
        .start_device_login(pb::StartDeviceLoginRequest::default())
        .await?
        .into_inner();
    issuer
        .control(
            &format!("device/{}", started.user_code),
            json!({"action": "approve", "user": user}),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let approved = c
        .poll_device_login(poll_once(&started.device_code))
        .await?
        .into_inner();
    assert_eq!(approved.state(), pb::DeviceLoginState::Approved);
    Ok((started.device_code, approved.session.expect("session")))
}

fn poll_once(device_code: &str) -> pb::PollDeviceLoginRequest {
    pb::PollDeviceLoginRequest {
        device_code: device_code.to_owned(),
        issuer: String::new(),
        interval: 1,
    }
}

/// A device code answers APPROVED again only until its session is used:
/// after a refresh or a revoke, polling with it is DEVICE_CODE_SPENT and
/// the answer carries nothing of the session.
async fn device_code_is_spent_once_its_session_is_used(
    issuer: &Issuer,
    authd: &Authd,
) -> Result<()> {
    let mut c = client(authd).await;
    issuer
        .control("device-config", json!({"interval": 1}))
        .await?;

    let (code, session) = device_session(issuer, &mut c, "alice").await?;
    // The lost-answer window: the same session again, before any use.
    let again = c.poll_device_login(poll_once(&code)).await?.into_inner();
    assert_eq!(
        again.session.expect("session").session_handle,
        session.session_handle
    );
    refresh(
        &mut c,
        Credential::SessionHandle(session.session_handle.clone()),
    )
    .await?;
    for _ in 0..2 {
        let spent = AuthError::from(
            c.poll_device_login(poll_once(&code))
                .await
                .expect_err("a spent device code answers nothing"),
        );
        assert_eq!(spent.code(), Code::Unauthenticated);
        assert_eq!(spent.reason(), Some(ErrorReason::DeviceCodeSpent));
        assert!(!format!("{spent:?}").contains(&session.session_handle));
    }
    // The session itself is untouched by the refused poll.
    refresh(&mut c, Credential::SessionHandle(session.session_handle)).await?;

    let (code, session) = device_session(issuer, &mut c, "bob").await?;
    revoke(&mut c, Target::SessionHandle(session.session_handle), None).await?;
    assert_eq!(
        reason(
            c.poll_device_login(poll_once(&code))
                .await
                .map_err(AuthError::from)
        ),
        (Code::Unauthenticated, Some(ErrorReason::DeviceCodeSpent))
    );
    Ok(())
}

#[tokio::test]
async fn device_code_is_spent_once_on_the_embedded_store() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&issuer.sessions_config("")).await?;
    device_code_is_spent_once_its_session_is_used(&issuer, &authd).await
}

#[tokio::test]
async fn device_code_is_spent_once_on_dynamodb() -> Result<()> {
    let (issuer, moto) = (Issuer::start().await?, Moto::start().await?);
    let store = moto.store("authd-device").await?;
    let authd = Authd::start_with_store(&issuer.sessions_config(""), Arc::new(store)).await?;
    device_code_is_spent_once_its_session_is_used(&issuer, &authd).await
}

#[tokio::test]
async fn bad_input_gets_precise_errors_and_changes_nothing() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&issuer.sessions_config("[sessions]\nlifetime_seconds = 2\n")).await?;
    let mut c = client(&authd).await;
    let handle = |h: &str| Credential::SessionHandle(h.to_owned());

    let unknown = authd::secrets::random_handle();
    assert_eq!(
        reason(refresh(&mut c, handle(&unknown)).await),
        (Code::Unauthenticated, Some(ErrorReason::SessionNotFound))
    );
    assert_eq!(
        reason(revoke(&mut c, Target::SessionHandle(unknown), None).await).1,
        Some(ErrorReason::SessionNotFound)
    );
    for malformed in [
        "",
        "short",
        "../../etc/passwd",
        &"x".repeat(5000),
        "ééééééééééééééééééééééééééééééééééééééééééé",
    ] {
        assert_eq!(
            reason(refresh(&mut c, handle(malformed)).await).0,
            Code::InvalidArgument,
            "{malformed:?}"
        );
    }
    // No string is forwarded to the issuer unbounded.
    let calls_before = issuer.stats().await?["token"]["total"].clone();
    let (code, verifier) = issuer.authorize("alice", "n").await?;
    for (field, grant) in [
        (
            "authorization_code.code",
            Grant::AuthorizationCode(pb::AuthorizationCodeGrant {
                code: "c".repeat(10_000),
                redirect_uri: REDIRECT_URI.to_owned(),
                code_verifier: verifier.clone(),
                nonce: "n".to_owned(),
            }),
        ),
        (
            "authorization_code.code_verifier",
            Grant::AuthorizationCode(pb::AuthorizationCodeGrant {
                code: code.clone(),
                redirect_uri: REDIRECT_URI.to_owned(),
                code_verifier: "v".repeat(129),
                nonce: "n".to_owned(),
            }),
        ),
        (
            "existing_tokens.refresh_token",
            Grant::ExistingTokens(pb::ExistingTokens {
                refresh_token: "r".repeat(5000),
                id_token: "x".to_owned(),
                ..Default::default()
            }),
        ),
    ] {
        let err = create(&mut c, grant).await.expect_err("bounded");
        assert_eq!(
            (err.code(), err.reason()),
            (Code::InvalidArgument, Some(ErrorReason::InvalidRequest)),
            "{field}"
        );
        assert_eq!(err.metadata()["field"], field);
    }
    assert_eq!(issuer.stats().await?["token"]["total"], calls_before);
    let status = c
        .refresh_session(pb::RefreshSessionRequest {
            credential: None,
            issuer: String::new(),
        })
        .await
        .expect_err("no credential");
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = c
        .create_session(pb::CreateSessionRequest {
            grant: None,
            issuer: String::new(),
        })
        .await
        .expect_err("no grant");
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = c
        .create_session(pb::CreateSessionRequest {
            grant: Some(Grant::ExistingTokens(pb::ExistingTokens::default())),
            issuer: "https://unknown.example/".to_owned(),
        })
        .await
        .expect_err("unknown issuer");
    assert_eq!(status.code(), Code::InvalidArgument);

    // A code used twice: the second exchange is refused, one session exists.
    let (code, verifier) = issuer.authorize("alice", "n").await?;
    let grant = || {
        Grant::AuthorizationCode(pb::AuthorizationCodeGrant {
            code: code.clone(),
            redirect_uri: REDIRECT_URI.to_owned(),
            code_verifier: verifier.clone(),
            nonce: "n".to_owned(),
        })
    };
    let session = create(&mut c, grant()).await?;
    assert_eq!(
        reason(create(&mut c, grant()).await),
        (Code::Unauthenticated, Some(ErrorReason::GrantRejected))
    );
    // A wrong nonce: the id token does not match the login.
    let (code2, verifier2) = issuer.authorize("alice", "nonce-a").await?;
    let wrong_nonce = create(
        &mut c,
        Grant::AuthorizationCode(pb::AuthorizationCodeGrant {
            code: code2,
            redirect_uri: REDIRECT_URI.to_owned(),
            code_verifier: verifier2,
            nonce: "nonce-b".to_owned(),
        }),
    )
    .await;
    assert_eq!(
        reason(wrong_nonce),
        (Code::Unauthenticated, Some(ErrorReason::MalformedToken))
    );
    let sessions = authd_store_sessions(&authd, "auth0|alice").await?;
    assert_eq!(sessions, 1, "failed attempts stored nothing");

    // A forged id token in existing tokens.
    let login = issuer.password_login("alice").await?;
    let forged = create(
        &mut c,
        Grant::ExistingTokens(pb::ExistingTokens {
            refresh_token: login["refresh_token"].as_str().expect("rt").to_owned(),
            id_token: issuer.token(&[("sub", "auth0|mallory")]).await?,
            access_token: String::new(),
            nonce: String::new(),
        }),
    )
    .await;
    assert_eq!(
        reason(forged),
        (Code::Unauthenticated, Some(ErrorReason::WrongAudience))
    );

    // Expired: the session lived 2 s.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        reason(refresh(&mut c, handle(&session.session_handle)).await),
        (Code::Unauthenticated, Some(ErrorReason::SessionExpired))
    );
    Ok(())
}

/// How many live sessions the store holds for `user`.
async fn authd_store_sessions(authd: &Authd, user: &str) -> Result<usize> {
    Ok(authd
        .store()
        .list_sessions(user, authd::store::conformance::now())
        .await?
        .len())
}

#[tokio::test]
async fn wrong_client_secret_is_a_precise_error() -> Result<()> {
    let issuer = Issuer::start().await?;
    let config = issuer
        .sessions_config("")
        .replace("authd-test-secret", "not-the-secret");
    let authd = Authd::start(&config).await?;
    let mut c = client(&authd).await;
    let result = by_code(&issuer, &mut c, "alice").await;
    let err = result.expect_err("refused");
    assert_eq!(
        (err.code(), err.reason()),
        (Code::Unauthenticated, Some(ErrorReason::GrantRejected))
    );
    assert_eq!(err.metadata()["error"], "access_denied");
    assert_eq!(authd_store_sessions(&authd, "auth0|alice").await?, 0);
    Ok(())
}

/// A session stored before tokens were named by what the issuer signed
/// holds whole-token hashes. Revoked after the upgrade, its token is still
/// refused, and so is the re-encoded twin of its newest token (kept sealed
/// in the record).
#[tokio::test]
async fn a_session_stored_before_the_upgrade_revokes_its_token_and_twin() -> Result<()> {
    let issuer = Issuer::start().await?;
    issuer
        .control("access-token-sid", json!({"include": false}))
        .await?;
    issuer.rotate("ES256").await?;
    let authd = Authd::start(&issuer.sessions_config_for(&["RS256", "ES256"], "")).await?;
    let mut c = client(&authd).await;
    let session = by_code(&issuer, &mut c, "alice").await?;
    let token = session.access_token.clone();
    let twin = authd::dangerous::ecdsa_twin(&token).expect("an ES256 token");
    verify(&authd, &twin).await?;

    // Rewrite the record as an older authd stored it.
    let store = authd.store();
    let now = authd::store::conformance::now();
    let mut record = store
        .list_sessions("auth0|alice", now)
        .await?
        .pop()
        .expect("the session");
    let mut legacy = record.clone();
    legacy.version += 1;
    for issued in &mut legacy.issued_tokens {
        issued.signed_digest = None;
        issued.hash = Some(authd::secrets::hash_handle(&token));
    }
    store.update_session(&legacy, record.version, now).await?;
    record = legacy;
    assert!(
        record
            .issued_tokens
            .iter()
            .all(|t| t.signed_digest.is_none())
    );

    assert_eq!(
        revoke(&mut c, Target::SessionHandle(session.session_handle), None).await?,
        1
    );
    for t in [&token, &twin] {
        assert_eq!(
            reason(verify(&authd, t).await),
            (Code::Unauthenticated, Some(ErrorReason::SessionRevoked))
        );
    }
    Ok(())
}
