//! GetProfile end to end: the real issuer's userinfo, the embedded store and
//! the DynamoDB server, trusted callers, rate limits and issuer failures.

use std::sync::Arc;

use anyhow::Result;
use authd_client::{AuthError, ErrorReason};
use authd_proto::pb::{self, get_profile_request::Subject};
use authd_tests::{Authd, Issuer, Moto};
use serde_json::json;
use tonic::{Code, Request};

const JWKS: &str = "[jwks]\nmin_refetch_interval_seconds = 0\n";

async fn get_profile(
    authd: &Authd,
    subject: Subject,
    service_token: Option<&str>,
) -> Result<pb::Profile, AuthError> {
    let mut client = authd.client().await.expect("connect");
    let mut request = Request::new(pb::GetProfileRequest {
        subject: Some(subject),
    });
    if let Some(token) = service_token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
    }
    Ok(client
        .raw()
        .get_profile(request)
        .await?
        .into_inner()
        .profile
        .expect("profile"))
}

async fn user_token(issuer: &Issuer, user: &str) -> Result<String> {
    issuer
        .token(&[
            ("sub", &format!("auth0|{user}")),
            ("scope", "openid profile email"),
        ])
        .await
}

async fn userinfo_calls(issuer: &Issuer) -> Result<u64> {
    Ok(issuer.stats().await?["userinfo"]
        .as_u64()
        .unwrap_or_default())
}

async fn own_profile_is_filled_from_userinfo_then_served_from_the_store(
    issuer: &Issuer,
    authd: &Authd,
) -> Result<()> {
    issuer
        .control("users/zoe", json!({"name": "Zoë Ünïcødé", "email": "zoe@example.com", "email_verified": true, "locale": "fr-FR"}))
        .await?;
    let token = user_token(issuer, "zoe").await?;
    let before = userinfo_calls(issuer).await?;
    let profile = get_profile(authd, Subject::AccessToken(token.clone()), None).await?;
    assert_eq!(profile.user_id, "auth0|zoe");
    assert_eq!(profile.name, "Zoë Ünïcødé");
    assert_eq!(profile.email, "zoe@example.com");
    assert!(profile.email_verified);
    assert!(
        profile
            .attributes
            .expect("attributes")
            .fields
            .contains_key("locale")
    );
    assert!(profile.created_at.is_some() && profile.updated_at.is_some());
    for _ in 0..5 {
        let again = get_profile(authd, Subject::AccessToken(token.clone()), None).await?;
        assert_eq!(again.name, "Zoë Ünïcødé");
    }
    assert_eq!(
        userinfo_calls(issuer).await? - before,
        1,
        "fresh profiles come from the store"
    );
    Ok(())
}

#[tokio::test]
async fn embedded_store_serves_profiles_from_userinfo() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&format!("{}{JWKS}", issuer.config_entry(&["RS256"]))).await?;
    own_profile_is_filled_from_userinfo_then_served_from_the_store(&issuer, &authd).await
}

#[tokio::test]
async fn dynamodb_store_serves_profiles_from_userinfo() -> Result<()> {
    let (issuer, moto) = (Issuer::start().await?, Moto::start().await?);
    let store = moto.store("authd-profiles").await?;
    let authd = Authd::start_with_store(
        &format!("{}{JWKS}", issuer.config_entry(&["RS256"])),
        Arc::new(store.clone()),
    )
    .await?;
    own_profile_is_filled_from_userinfo_then_served_from_the_store(&issuer, &authd).await?;
    // The profile really is in the table, sealed.
    use authd::store::{Store, StoredProfile};
    let stored = store.get_profile("auth0|zoe").await?.expect("stored");
    let StoredProfile::Sealed(sealed) = stored else {
        panic!("a profile in clear: {stored:?}");
    };
    // A sealed value is base64url, where neither a non-ASCII letter nor an
    // `@` can appear (two ASCII letters could, by chance).
    assert!(
        sealed.0.is_ascii() && !sealed.0.contains('@'),
        "{}",
        sealed.0
    );
    Ok(())
}

#[tokio::test]
async fn concurrent_requests_for_one_user_make_one_userinfo_call() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&format!("{}{JWKS}", issuer.config_entry(&["RS256"]))).await?;
    issuer
        .control(
            "fail",
            json!({"endpoint": "userinfo", "status": 0, "delay_ms": 300}),
        )
        .await?;
    let token = user_token(&issuer, "alice").await?;
    let calls = (0..20).map(|_| get_profile(&authd, Subject::AccessToken(token.clone()), None));
    for result in futures_util::future::join_all(calls).await {
        assert_eq!(result?.user_id, "auth0|alice");
    }
    assert_eq!(userinfo_calls(&issuer).await?, 1);
    Ok(())
}

#[tokio::test]
async fn rate_limited_userinfo_serves_the_stored_profile_or_resource_exhausted() -> Result<()> {
    let issuer = Issuer::start().await?;
    // Profiles are always stale, so every call wants userinfo.
    let toml = format!(
        "{}{JWKS}[profiles]\nmax_age_seconds = 0\n",
        issuer.config_entry(&["RS256"])
    );
    let authd = Authd::start(&toml).await?;
    issuer
        .control("userinfo-limit", json!({"limit": 1}))
        .await?;

    let bob = user_token(&issuer, "bob").await?;
    let first = get_profile(&authd, Subject::AccessToken(bob.clone()), None).await?;
    for _ in 0..5 {
        let stored = get_profile(&authd, Subject::AccessToken(bob.clone()), None).await?;
        assert_eq!(stored, first, "the stored profile answers, unchanged");
    }
    // authd remembers the 429 and stops asking until Retry-After.
    assert_eq!(
        issuer.stats().await?["userinfo_rate_limited"].as_u64(),
        Some(1)
    );

    let erin = user_token(&issuer, "erin").await?;
    issuer
        .control(
            "fail",
            json!({"endpoint": "userinfo", "status": 429, "retry_after": 30}),
        )
        .await?;
    let err = get_profile(&authd, Subject::AccessToken(erin), None)
        .await
        .expect_err("nothing stored");
    assert_eq!(
        (err.code(), err.reason()),
        (Code::ResourceExhausted, Some(ErrorReason::RateLimited))
    );
    assert_eq!(err.metadata()["retry_after_seconds"], "30");
    Ok(())
}

#[tokio::test]
async fn issuer_down_serves_the_stored_profile_or_unavailable() -> Result<()> {
    let issuer = Issuer::start().await?;
    let toml = format!(
        "{}{JWKS}[profiles]\nmax_age_seconds = 0\nuserinfo_timeout_ms = 500\n",
        issuer.config_entry(&["RS256"])
    );
    let authd = Authd::start(&toml).await?;
    let alice = user_token(&issuer, "alice").await?;
    let stored = get_profile(&authd, Subject::AccessToken(alice.clone()), None).await?;

    issuer.fail("userinfo", 503).await?;
    assert_eq!(
        get_profile(&authd, Subject::AccessToken(alice.clone()), None).await?,
        stored
    );
    let bob = user_token(&issuer, "bob").await?;
    let err = get_profile(&authd, Subject::AccessToken(bob.clone()), None)
        .await
        .expect_err("nothing stored");
    assert_eq!(
        (err.code(), err.reason()),
        (Code::Unavailable, Some(ErrorReason::IssuerUnavailable))
    );

    issuer
        .control(
            "fail",
            json!({"endpoint": "userinfo", "status": 0, "delay_ms": 2000}),
        )
        .await?;
    assert_eq!(
        get_profile(&authd, Subject::AccessToken(alice), None).await?,
        stored,
        "slow issuer"
    );
    let err = get_profile(&authd, Subject::AccessToken(bob.clone()), None)
        .await
        .expect_err("slow, nothing stored");
    assert_eq!(err.code(), Code::Unavailable);

    issuer.heal().await?;
    assert_eq!(
        get_profile(&authd, Subject::AccessToken(bob), None)
            .await?
            .user_id,
        "auth0|bob"
    );
    Ok(())
}

#[tokio::test]
async fn profile_by_id_is_for_trusted_services_only() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&format!("{}{JWKS}", issuer.config_entry(&["RS256"]))).await?;
    let alice = user_token(&issuer, "alice").await?;
    get_profile(&authd, Subject::AccessToken(alice.clone()), None).await?;
    let by_id = || Subject::UserId("auth0|alice".to_owned());

    let service = issuer.token(&[("permissions", "profiles:read")]).await?;
    assert_eq!(
        get_profile(&authd, by_id(), Some(&service)).await?.user_id,
        "auth0|alice"
    );

    for caller in [None, Some(alice.as_str()), Some("not-a-token")] {
        let err = get_profile(&authd, by_id(), caller)
            .await
            .expect_err("not trusted");
        assert_eq!(
            (err.code(), err.reason()),
            (Code::PermissionDenied, Some(ErrorReason::CallerNotTrusted)),
            "{caller:?}"
        );
    }
    let other = issuer.token(&[("permissions", "profiles:write")]).await?;
    let err = get_profile(&authd, by_id(), Some(&other))
        .await
        .expect_err("wrong permission");
    assert_eq!(err.code(), Code::PermissionDenied);

    let err = get_profile(
        &authd,
        Subject::UserId("auth0|nobody".to_owned()),
        Some(&service),
    )
    .await
    .expect_err("unknown");
    assert_eq!(
        (err.code(), err.reason()),
        (Code::NotFound, Some(ErrorReason::UserNotFound))
    );
    let err = get_profile(&authd, Subject::UserId(String::new()), Some(&service))
        .await
        .expect_err("empty");
    assert_eq!(err.code(), Code::InvalidArgument);

    let err = get_profile(
        &authd,
        Subject::AccessToken(issuer.token(&[("expires_in", "-120")]).await?),
        None,
    )
    .await
    .expect_err("expired");
    assert_eq!(err.reason(), Some(ErrorReason::TokenExpired));
    let mut client = authd.client().await?;
    let status = client
        .raw()
        .get_profile(pb::GetProfileRequest { subject: None })
        .await
        .expect_err("empty request");
    assert_eq!(status.code(), Code::InvalidArgument);
    Ok(())
}
