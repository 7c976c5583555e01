//! VerifyToken against a real OpenID Connect issuer on loopback, shaped like
//! Auth0: valid tokens, rejections with readable reasons, key rotation, and
//! the issuer going away.

use std::time::Duration;

use authd_client::ErrorReason;
use authd_tests::{AUDIENCE, Authd, Issuer};
use tonic::Code;

/// Fast refetches so rotation tests do not wait ten seconds.
const JWKS: &str = "[jwks]\nmin_refetch_interval_seconds = 0\nrequest_wait_ms = 3000\n";

async fn setup(algorithms: &[&str]) -> anyhow::Result<(Issuer, Authd)> {
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&format!("{}{JWKS}", issuer.config_entry(algorithms))).await?;
    Ok((issuer, authd))
}

#[tokio::test]
async fn auth0_shaped_token_verifies_with_its_claims() -> anyhow::Result<()> {
    let (issuer, authd) = setup(&["RS256"]).await?;
    let token = issuer
        .token(&[
            ("scope", "read:orders write:orders"),
            ("permissions", "read:orders admin"),
            ("sub", "auth0|alice"),
            ("sid", "sess-1"),
            ("claims", r#"{"https://authd.test/org":"acme"}"#),
        ])
        .await?;
    let verified = authd
        .client()
        .await?
        .verify_token(&token, &["read:orders", "admin"])
        .await?;
    assert_eq!(verified.subject, "auth0|alice");
    assert_eq!(verified.issuer, issuer.url);
    assert!(verified.audiences.iter().any(|a| a == AUDIENCE));
    assert_eq!(verified.scopes, vec!["read:orders", "write:orders"]);
    assert_eq!(verified.permissions, vec!["read:orders", "admin"]);
    assert_eq!(verified.session_id.as_deref(), Some("sess-1"));
    assert!(
        verified
            .claims
            .fields
            .contains_key("https://authd.test/org")
    );
    assert!(verified.expires_at > std::time::SystemTime::now());
    Ok(())
}

#[tokio::test]
async fn rejections_carry_code_and_reason() -> anyhow::Result<()> {
    let (issuer, authd) = setup(&["RS256"]).await?;
    let mut client = authd.client().await?;
    let cases = [
        (
            vec![("expires_in", "-120")],
            Code::Unauthenticated,
            ErrorReason::TokenExpired,
        ),
        (
            vec![("audience", "https://someone-else")],
            Code::Unauthenticated,
            ErrorReason::WrongAudience,
        ),
        (
            vec![("nbf_offset", "600")],
            Code::Unauthenticated,
            ErrorReason::TokenNotYetValid,
        ),
        (
            vec![("claims", r#"{"iss":"https://evil.example/"}"#)],
            Code::Unauthenticated,
            ErrorReason::WrongIssuer,
        ),
        (
            vec![("claims", r#"{"exp":"soon"}"#)],
            Code::Unauthenticated,
            ErrorReason::MalformedToken,
        ),
    ];
    for (knobs, code, reason) in cases {
        let token = issuer.token(&knobs).await?;
        let err = client
            .verify_token(&token, &[])
            .await
            .expect_err("must be refused");
        assert_eq!(
            (err.code(), err.reason()),
            (code, Some(reason)),
            "{knobs:?}: {err}"
        );
    }

    let token = issuer.token(&[("scope", "read:orders")]).await?;
    let err = client
        .verify_token(&token, &["delete:orders"])
        .await
        .expect_err("scope");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.reason(), Some(ErrorReason::InsufficientScope));
    assert_eq!(err.metadata()["missing"], "delete:orders");

    let err = client.verify_token("", &[]).await.expect_err("empty");
    assert_eq!(
        (err.code(), err.reason()),
        (Code::InvalidArgument, Some(ErrorReason::TokenMissing))
    );
    let err = client
        .verify_token(&"a".repeat(9000), &[])
        .await
        .expect_err("too big");
    assert_eq!(
        (err.code(), err.reason()),
        (Code::InvalidArgument, Some(ErrorReason::TokenTooLarge))
    );
    Ok(())
}

#[tokio::test]
async fn rotated_key_verifies_without_restart_after_one_refetch() -> anyhow::Result<()> {
    let (issuer, authd) = setup(&["RS256"]).await?;
    let mut client = authd.client().await?;
    let before = issuer.token(&[]).await?;
    client.verify_token(&before, &[]).await?;
    let fetches = issuer.stats().await?["jwks"].as_u64().unwrap_or_default();

    issuer.rotate("RS256").await?;
    let after = issuer.token(&[]).await?;
    for _ in 0..20 {
        client.verify_token(&after, &[]).await?;
    }
    client.verify_token(&before, &[]).await?;
    let refetches = issuer.stats().await?["jwks"].as_u64().unwrap_or_default() - fetches;
    assert_eq!(refetches, 1, "one refetch for the new kid");
    Ok(())
}

#[tokio::test]
async fn es256_issuer_key_verifies_when_configured() -> anyhow::Result<()> {
    let (issuer, authd) = setup(&["RS256", "ES256"]).await?;
    issuer.rotate("ES256").await?;
    let token = issuer.token(&[]).await?;
    authd.client().await?.verify_token(&token, &[]).await?;

    // The same ES256 token is refused by an authd configured for RS256 only.
    let strict = Authd::start(&format!("{}{JWKS}", issuer.config_entry(&["RS256"]))).await?;
    let err = strict
        .client()
        .await?
        .verify_token(&token, &[])
        .await
        .expect_err("not configured");
    assert_eq!(err.reason(), Some(ErrorReason::AlgorithmNotAllowed));
    Ok(())
}

#[tokio::test]
async fn issuer_down_cached_keys_serve_and_new_kids_are_unavailable() -> anyhow::Result<()> {
    let (issuer, authd) = setup(&["RS256"]).await?;
    let mut client = authd.client().await?;
    let known = issuer.token(&[]).await?;
    client.verify_token(&known, &[]).await?;

    // A key authd never saw, published only after the key set stops answering.
    issuer.fail("jwks", 503).await?;
    issuer.fail("discovery", 503).await?;
    issuer.rotate("RS256").await?;
    let unseen = issuer.token(&[]).await?;
    let err = client
        .verify_token(&unseen, &[])
        .await
        .expect_err("cannot know the key");
    assert_eq!(
        (err.code(), err.reason()),
        (Code::Unavailable, Some(ErrorReason::KeysUnavailable))
    );

    // The issuer process goes away entirely: the cached key keeps verifying.
    issuer.stop().await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..5 {
        client.verify_token(&known, &[]).await?;
    }
    let err = client
        .verify_token(&unseen, &[])
        .await
        .expect_err("still unknown");
    assert_eq!(err.code(), Code::Unavailable);
    Ok(())
}

#[tokio::test]
async fn authd_started_while_issuer_is_down_recovers_when_it_returns() -> anyhow::Result<()> {
    let port = authd_tests::free_port()?;
    let url = format!("http://127.0.0.1:{port}/");
    let toml = format!(
        "[[issuers]]\nissuer = \"{url}\"\naudiences = [\"{AUDIENCE}\"]\n[jwks]\nmin_refetch_interval_seconds = 0\nfetch_timeout_ms = 500\n"
    );
    let authd = Authd::start(&toml).await?;
    let issuer = Issuer::start_on(port).await?;
    assert_eq!(issuer.url, url);
    let token = issuer.token(&[]).await?;
    authd.client().await?.verify_token(&token, &[]).await?;
    Ok(())
}
