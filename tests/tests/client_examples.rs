//! The examples of `authd-client` (`client/examples/`), run as the binaries
//! cargo built, against the real issuer and authd: a good token passes, a bad
//! one is refused as unauthenticated, a missing scope as forbidden, no token
//! as unauthenticated, and with authd stopped the examples fail closed.

use std::{path::PathBuf, process::Stdio, time::Duration};

use anyhow::{Context, Result, bail};
use authd_client::{AuthError, ErrorReason};
use authd_tests::{Authd, Issuer};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use tonic::{Code, Request, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// An example binary running against `authd`, and the address it serves on.
struct Example {
    addr: String,
    _child: Child,
}

/// `target/<profile>/examples/<name>`, built by `cargo test --workspace`
/// (authd-tests turns on the features the examples need).
fn example_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("locating the target directory")?;
    let binary = profile_dir.join("examples").join(name);
    if !binary.exists() {
        bail!(
            "{} is missing: run `cargo build -p authd-client --all-features --examples` \
             (cargo test --workspace builds it)",
            binary.display()
        );
    }
    Ok(binary)
}

async fn start_example(name: &str, authd: &Authd) -> Result<Example> {
    let mut child = Command::new(example_binary(name)?)
        .env("AUTHD_URL", authd.uri())
        .env("LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting example {name}"))?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line.strip_prefix("LISTENING ") {
                return Ok(addr.trim().to_owned());
            }
        }
        bail!("example {name} exited before LISTENING")
    })
    .await
    .context("example did not print LISTENING within 20 s")??;
    Ok(Example {
        addr,
        _child: child,
    })
}

async fn setup() -> Result<(Issuer, Authd)> {
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&issuer.config_entry(&["RS256"])).await?;
    Ok((issuer, authd))
}

#[tokio::test]
async fn tonic_example_lets_good_tokens_through_and_refuses_the_rest() -> Result<()> {
    let (issuer, authd) = setup().await?;
    let example = start_example("tonic_service", &authd).await?;
    let channel = Channel::from_shared(format!("http://{}", example.addr))?
        .connect()
        .await?;
    let check = |token: Option<String>| {
        let mut health = HealthClient::new(channel.clone());
        async move {
            let mut request = Request::new(HealthCheckRequest::default());
            if let Some(token) = token {
                request
                    .metadata_mut()
                    .insert("authorization", format!("Bearer {token}").parse()?);
            }
            Ok::<_, anyhow::Error>(health.check(request).await)
        }
    };

    let good = issuer
        .token(&[("scope", "read:status"), ("sub", "auth0|carol")])
        .await?;
    let response = check(Some(good.clone())).await??;
    assert_eq!(response.get_ref().status, 1, "SERVING");
    let subject = response
        .metadata()
        .get("x-subject")
        .and_then(|v| v.to_str().ok());
    assert_eq!(subject, Some("auth0|carol"));

    let refused = |result: Result<_, tonic::Status>| {
        let status = result.expect_err("must be refused");
        let error = AuthError::from(status);
        (error.code(), error.reason())
    };
    let expired = issuer
        .token(&[("scope", "read:status"), ("expires_in", "-120")])
        .await?;
    assert_eq!(
        refused(check(Some(expired)).await?),
        (Code::Unauthenticated, Some(ErrorReason::TokenExpired))
    );
    assert_eq!(
        refused(check(Some("not-a-jwt".to_owned())).await?),
        (Code::Unauthenticated, Some(ErrorReason::MalformedToken))
    );
    assert_eq!(
        refused(check(None).await?),
        (Code::Unauthenticated, Some(ErrorReason::TokenMissing))
    );
    let no_scope = issuer.token(&[("scope", "read:orders")]).await?;
    let status = check(Some(no_scope)).await?.expect_err("scope missing");
    let error = AuthError::from(status);
    assert_eq!(error.code(), Code::PermissionDenied);
    assert_eq!(error.reason(), Some(ErrorReason::InsufficientScope));
    assert_eq!(error.metadata()["missing"], "read:status");

    authd.stop().await?;
    let status = check(Some(good)).await?.expect_err("authd is down");
    assert_eq!(status.code(), Code::Unavailable, "fails closed: {status:?}");
    Ok(())
}

#[tokio::test]
async fn axum_example_answers_401_403_and_503_as_rfc_6750_asks() -> Result<()> {
    let (issuer, authd) = setup().await?;
    let example = start_example("axum_api", &authd).await?;
    let http = reqwest::Client::new();
    let orders = format!("http://{}/orders", example.addr);
    let get = |token: Option<&str>| {
        let mut request = http.get(&orders);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let challenge = |response: &reqwest::Response| {
        response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    };

    let good = issuer
        .token(&[("scope", "read:orders"), ("sub", "auth0|dave")])
        .await?;
    let response = get(Some(&good)).await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await?, "orders of auth0|dave\n");

    let response = get(None).await?;
    assert_eq!(response.status(), 401);
    assert_eq!(challenge(&response).as_deref(), Some("Bearer"));

    let expired = issuer
        .token(&[("scope", "read:orders"), ("expires_in", "-120")])
        .await?;
    let response = get(Some(&expired)).await?;
    assert_eq!(response.status(), 401);
    let header = challenge(&response).unwrap_or_default();
    assert!(
        header.starts_with(r#"Bearer error="invalid_token", error_description=""#)
            && header.contains("expired"),
        "{header}"
    );

    let no_scope = issuer.token(&[("scope", "read:status")]).await?;
    let response = get(Some(&no_scope)).await?;
    assert_eq!(response.status(), 403);
    let header = challenge(&response).unwrap_or_default();
    assert!(
        header.starts_with(r#"Bearer error="insufficient_scope""#)
            && header.ends_with(r#"scope="read:orders""#),
        "{header}"
    );

    let health = http
        .get(format!("http://{}/healthz", example.addr))
        .send()
        .await?;
    assert_eq!(health.status(), 200, "public path needs no token");

    authd.stop().await?;
    let response = get(Some(&good)).await?;
    assert_eq!(response.status(), 503, "fails closed");
    assert_eq!(challenge(&response), None);
    Ok(())
}
