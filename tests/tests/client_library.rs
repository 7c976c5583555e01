//! `authd-client` against the real issuer and authd: a typed profile (domain
//! types, not prost), a typed refusal, and balancing that survives one of two
//! authd instances going away.

use anyhow::Result;
use authd_client::{AuthClient, ErrorReason, RetryPolicy};
use authd_tests::{Authd, Issuer};
use serde_json::json;
use tonic::Code;

#[tokio::test]
async fn get_profile_answers_a_typed_profile() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&issuer.config_entry(&["RS256"])).await?;
    issuer
        .control(
            "users/rust-zoe",
            json!({"name": "Zoë Rust", "email": "zoe.rust@example.com"}),
        )
        .await?;
    let token = issuer
        .token(&[("sub", "auth0|rust-zoe"), ("scope", "openid profile email")])
        .await?;
    let mut client = authd.client().await?;
    let profile = client.get_profile(&token).await?;
    assert_eq!(profile.user_id, "auth0|rust-zoe");
    assert_eq!(profile.name.as_deref(), Some("Zoë Rust"));
    assert_eq!(profile.email.as_deref(), Some("zoe.rust@example.com"));
    assert!(profile.created_at.is_some() && profile.updated_at.is_some());

    let err = client
        .get_profile("not-a-jwt")
        .await
        .expect_err("bad token");
    assert_eq!(
        (err.code(), err.reason()),
        (Code::Unauthenticated, Some(ErrorReason::MalformedToken))
    );
    Ok(())
}

#[tokio::test]
async fn balanced_client_keeps_working_when_one_authd_stops() -> Result<()> {
    let issuer = Issuer::start().await?;
    let config = issuer.config_entry(&["RS256"]);
    let (first, second) = (Authd::start(&config).await?, Authd::start(&config).await?);
    let mut client = AuthClient::builder()
        .endpoint(first.uri())
        .endpoint(second.uri())
        .retry(RetryPolicy::attempts(3))
        .build()?;
    let token = issuer.token(&[("sub", "auth0|balanced")]).await?;
    for _ in 0..10 {
        assert_eq!(
            client.verify_token(&token, &[]).await?.subject,
            "auth0|balanced"
        );
    }
    first.stop().await?;
    for _ in 0..20 {
        assert_eq!(
            client.verify_token(&token, &[]).await?.subject,
            "auth0|balanced"
        );
    }
    Ok(())
}
