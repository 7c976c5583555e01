//! The real `authd` binary, poked with grpcurl 1.8 as an engineer would:
//! reflection (`list`, `describe`), health, a valid call, an expired token
//! whose reason is visible, config errors that name the key, `authd dev`,
//! and a clean exit on SIGTERM.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, Result};
use authd_tests::{Issuer, authd_binary, free_port, run_grpcurl, wait_for_port};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

struct Running {
    child: Child,
    addr: SocketAddr,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// Writes `authd.toml` in `dir`: listening on `listen`, the embedded store
/// in `dir/data`, `issuer` with RS256.
fn write_config(
    dir: &tempfile::TempDir,
    listen: &str,
    issuer: &Issuer,
) -> Result<std::path::PathBuf> {
    let config = dir.path().join("authd.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{listen}\"\n[store]\npath = \"{}\"\n{}",
            dir.path().join("data").display(),
            issuer.config_entry(&["RS256"])
        ),
    )?;
    Ok(config)
}

async fn serve(issuer: &Issuer) -> Result<Running> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = write_config(&dir, &format!("127.0.0.1:{port}"), issuer)?;
    let child = Command::new(authd_binary()?)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    wait_for_port(addr, Duration::from_secs(20)).await?;
    Ok(Running {
        child,
        addr,
        config,
        _dir: dir,
    })
}

#[tokio::test]
async fn grpcurl_lists_describes_and_calls() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = serve(&issuer).await?;
    let addr = authd.addr.to_string();

    let list = run_grpcurl(&["-plaintext", &addr, "list"]).await?;
    assert_eq!(list.code, Some(0), "{list:?}");
    for service in [
        "auth.v1.AuthService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            list.stdout.contains(service),
            "{service} in {}",
            list.stdout
        );
    }

    let describe = run_grpcurl(&["-plaintext", &addr, "describe", "auth.v1.AuthService"]).await?;
    assert_eq!(describe.code, Some(0), "{describe:?}");
    assert!(
        describe
            .stdout
            .contains("rpc VerifyToken ( .auth.v1.VerifyTokenRequest )"),
        "{}",
        describe.stdout
    );
    let message = run_grpcurl(&[
        "-plaintext",
        &addr,
        "describe",
        "auth.v1.VerifyTokenResponse",
    ])
    .await?;
    assert!(
        message
            .stdout
            .contains(".google.protobuf.Timestamp expires_at"),
        "{}",
        message.stdout
    );

    let health = run_grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"service":"auth.v1.AuthService"}"#,
        &addr,
        "grpc.health.v1.Health/Check",
    ])
    .await?;
    assert!(health.stdout.contains("SERVING"), "{health:?}");

    let token = issuer
        .token(&[("scope", "read:orders"), ("sub", "auth0|grpcurl")])
        .await?;
    let body = format!(r#"{{"token":"Bearer {token}","required_scopes":["read:orders"]}}"#);
    let ok = run_grpcurl(&[
        "-plaintext",
        "-d",
        &body,
        &addr,
        "auth.v1.AuthService/VerifyToken",
    ])
    .await?;
    assert_eq!(ok.code, Some(0), "{ok:?}");
    let answer: serde_json::Value = serde_json::from_str(&ok.stdout)?;
    assert_eq!(answer["subject"], "auth0|grpcurl");

    let expired = issuer.token(&[("expires_in", "-300")]).await?;
    let body = format!(r#"{{"token":"{expired}"}}"#);
    let refused = run_grpcurl(&[
        "-plaintext",
        "-d",
        &body,
        &addr,
        "auth.v1.AuthService/VerifyToken",
    ])
    .await?;
    // grpcurl exits with 64 + the gRPC code: UNAUTHENTICATED (16) → 80.
    assert_eq!(refused.code, Some(80), "{refused:?}");
    assert!(
        refused.stderr.contains("Unauthenticated"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains(r#""reason":"TOKEN_EXPIRED""#),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains(r#""domain":"authd""#),
        "{}",
        refused.stderr
    );
    Ok(())
}

/// `authd verify` beside a running `authd serve` on the same configuration:
/// the server holds the embedded store's lock, so the command checks the
/// token without the revocations, and says so.
#[tokio::test]
async fn authd_verify_works_beside_a_running_server() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = serve(&issuer).await?;
    let verify = |token: String, scope: &'static str| {
        let config = authd.config.clone();
        async move {
            let binary = authd_binary()?;
            let output = Command::new(binary)
                .arg("verify")
                .arg("--config")
                .arg(&config)
                .args(["--scope", scope])
                .arg(token)
                .env("RUST_LOG", "warn")
                .output()
                .await?;
            Ok::<_, anyhow::Error>((
                output.status.code(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            ))
        }
    };
    let token = issuer
        .token(&[("scope", "read:orders"), ("sub", "auth0|cli")])
        .await?;
    let (code, stdout, stderr) = verify(token.clone(), "read:orders").await?;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("auth0|cli"), "{stdout}");
    assert!(stderr.contains("revocations not checked"), "{stderr}");

    let (code, _, stderr) = verify(token, "write:orders").await?;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("INSUFFICIENT_SCOPE"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() -> Result<()> {
    let issuer = Issuer::start().await?;
    let mut authd = serve(&issuer).await?;
    let pid = authd.child.id().context("pid")?;
    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await?;
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(15), authd.child.wait()).await??;
    assert!(status.success(), "exit status {status:?}");
    Ok(())
}

async fn config_error(toml: &str, env: &[(&str, &str)]) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("authd.toml");
    std::fs::write(&config, toml)?;
    let output = Command::new(authd_binary()?)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .envs(env.iter().copied())
        .output()
        .await?;
    assert!(!output.status.success(), "a bad config must stop start-up");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ok(stderr)
}

#[tokio::test]
async fn bad_configuration_stops_start_up_naming_the_key() -> Result<()> {
    let good = "[[issuers]]\nissuer = \"https://t.example/\"\naudiences = [\"a\"]\n";
    let stderr = config_error(
        &format!("{good}[server]\nlisten = \"127.0.0.1:1\"\nport = 3\n"),
        &[],
    )
    .await?;
    assert!(stderr.contains("port"), "{stderr}");
    let stderr = config_error(
        "[[issuers]]\nissuer = \"::nope\"\naudiences = [\"a\"]\n",
        &[],
    )
    .await?;
    assert!(stderr.contains("issuers[0].issuer"), "{stderr}");
    let stderr = config_error("[[issuers]]\naudiences = [\"a\"]\n", &[]).await?;
    assert!(stderr.contains("issuer"), "{stderr}");
    let stderr = config_error("", &[]).await?;
    assert!(stderr.contains("no [[issuers]]"), "{stderr}");
    let stderr = config_error(good, &[("AUTHD_SERVER__LISTEN", "not-an-address")]).await?;
    assert!(
        stderr.contains("SERVER.LISTEN") && stderr.contains("AUTHD_"),
        "{stderr}"
    );
    // Every section is reachable from the environment, [sessions] too.
    let stderr = config_error(
        good,
        &[("AUTHD_SESSIONS__LIFETIME_SECONDS", "not-a-number")],
    )
    .await?;
    assert!(stderr.contains("SESSIONS.LIFETIME_SECONDS"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn environment_overrides_the_file() -> Result<()> {
    let issuer = Issuer::start().await?;
    let dir = tempfile::tempdir()?;
    let config = write_config(&dir, "127.0.0.1:1", &issuer)?;
    let port = free_port()?;
    let _child = Command::new(authd_binary()?)
        .args(["serve", "--config"])
        .arg(&config)
        .env("AUTHD_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    wait_for_port(
        format!("127.0.0.1:{port}").parse()?,
        Duration::from_secs(20),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn dev_prints_a_grpcurl_line_that_verifies() -> Result<()> {
    let port = free_port()?;
    let data = tempfile::tempdir()?;
    let mut child = authd_tests::authd_dev(port, data.path())?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if line.starts_with("grpcurl ") {
                return Ok::<_, anyhow::Error>(line);
            }
        }
        anyhow::bail!("authd dev printed no grpcurl line")
    })
    .await??;
    wait_for_port(
        format!("127.0.0.1:{port}").parse()?,
        Duration::from_secs(20),
    )
    .await?;
    // Run the printed line exactly as a newcomer would paste it into a shell.
    let venv_bin = authd_tests::workspace().join(".venv/bin");
    let path = format!(
        "{}:{}",
        venv_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("sh")
        .arg("-c")
        .arg(&line)
        .env("PATH", path)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{line}\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("auth0|demo-user"), "{stdout}");

    // The service token it prints turns a client library's cache on.
    let watch_token = tokio::time::timeout(Duration::from_secs(10), async {
        let mut heading = false;
        while let Some(line) = lines.next_line().await? {
            if heading && !line.trim().is_empty() {
                return Ok::<_, anyhow::Error>(line.trim().to_owned());
            }
            heading |= line.starts_with("A service token that may watch revocations");
        }
        anyhow::bail!("authd dev printed no watch token")
    })
    .await??;
    let client = authd_client::AuthClient::builder()
        .endpoint(format!("http://127.0.0.1:{port}"))
        .watch_token(authd_client::Secret::new(watch_token))
        .connect()
        .await?;
    let started = std::time::Instant::now();
    while client.cache_state() != authd_client::CacheState::Answering {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "the cache is {:?} with the printed watch token",
            client.cache_state()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn dev_refuses_non_loopback_addresses() -> Result<()> {
    for args in [
        ["--listen", "0.0.0.0:50051"],
        ["--issuer-listen", "0.0.0.0:0"],
    ] {
        let output = Command::new(authd_binary()?)
            .arg("dev")
            .args(args)
            .output()
            .await?;
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("loopback"), "{stderr}");
    }
    Ok(())
}

/// The README's session walkthrough, step by step with grpcurl against
/// `authd dev`: device login, refresh, revoke, and VerifyToken refusing the
/// revoked session's token.
#[tokio::test]
async fn dev_session_walkthrough_with_grpcurl() -> Result<()> {
    let port = free_port()?;
    let data = tempfile::tempdir()?;
    let _child = authd_tests::authd_dev(port, data.path())?;
    let addr = format!("127.0.0.1:{port}");
    wait_for_port(addr.parse()?, Duration::from_secs(30)).await?;
    let call = |method: &'static str, body: String| {
        let addr = addr.clone();
        async move {
            let method = format!("auth.v1.AuthService/{method}");
            let out = run_grpcurl(&["-plaintext", "-d", &body, &addr, &method]).await?;
            anyhow::Ok(out)
        }
    };
    let json = |out: &authd_tests::Output| -> Result<serde_json::Value> {
        assert_eq!(out.code, Some(0), "{out:?}");
        Ok(serde_json::from_str(&out.stdout)?)
    };

    let started = json(
        &call(
            "StartDeviceLogin",
            r#"{"scopes":["read:orders"]}"#.to_owned(),
        )
        .await?,
    )?;
    let link = started["verificationUriComplete"]
        .as_str()
        .context("link")?;
    let approved = reqwest::get(link).await?;
    assert!(approved.status().is_success());
    let device_code = started["deviceCode"].as_str().context("device code")?;
    let polled = json(
        &call(
            "PollDeviceLogin",
            format!(r#"{{"device_code":"{device_code}"}}"#),
        )
        .await?,
    )?;
    assert_eq!(polled["state"], "DEVICE_LOGIN_STATE_APPROVED");
    let handle = polled["session"]["sessionHandle"]
        .as_str()
        .context("handle")?;
    let token = polled["session"]["accessToken"].as_str().context("token")?;
    let verified = json(&call("VerifyToken", format!(r#"{{"token":"{token}"}}"#)).await?)?;
    assert_eq!(verified["subject"], "auth0|demo-user");

    let refreshed = json(
        &call(
            "RefreshSession",
            format!(r#"{{"session_handle":"{handle}"}}"#),
        )
        .await?,
    )?;
    assert!(refreshed["accessToken"].is_string());
    let revoked = json(
        &call(
            "RevokeSession",
            format!(r#"{{"session_handle":"{handle}"}}"#),
        )
        .await?,
    )?;
    assert_eq!(revoked["revokedSessions"], 1);
    let refused = call("VerifyToken", format!(r#"{{"token":"{token}"}}"#)).await?;
    assert_eq!(refused.code, Some(80), "{refused:?}");
    assert!(
        refused.stderr.contains(r#""reason":"SESSION_REVOKED""#),
        "{}",
        refused.stderr
    );
    Ok(())
}
