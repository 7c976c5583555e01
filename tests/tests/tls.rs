//! TLS and mutual TLS on authd's listener, with certificates minted by
//! rcgen: refused handshakes, the `[[callers]]` policy per RPC class with its
//! refusals, service tokens for callers without certificates, a certificate
//! rotated on disk under load, grpcurl with a client certificate, and the
//! refusal to serve plaintext on a non-loopback address.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, bail};
use authd_proto::pb::{
    self, auth_service_client::AuthServiceClient, get_profile_request::Subject,
    revoke_session_request::Target,
};
use authd_tests::{
    Authd, Issuer,
    pki::{Ca, Leaf, Names},
    run_grpcurl,
};
use tonic::{
    Code, Request, Status,
    transport::{Certificate, Channel, ClientTlsConfig},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_types::StatusExt;

/// The server's names: grpcurl checks the IP, tonic `localhost`.
const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// A CA, the server's certificate from it, and a directory for the files.
struct Setup {
    dir: tempfile::TempDir,
    ca: Ca,
    ca_file: std::path::PathBuf,
    server: Leaf,
}

impl Setup {
    fn new() -> Result<Setup> {
        let dir = tempfile::tempdir()?;
        let ca = Ca::new("authd test CA")?;
        let ca_file = ca.write(dir.path(), "ca")?;
        let server = ca.leaf(dir.path(), "server", Names::dns(&SERVER_NAMES))?;
        Ok(Setup {
            dir,
            ca,
            ca_file,
            server,
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn client(&self, file: &str, names: Names) -> Result<Leaf> {
        self.ca.leaf(self.path(), file, names)
    }

    /// `[server.tls]` for these files; `client_auth` is a line or "".
    fn tls_section(&self, client_auth: &str) -> String {
        format!(
            "[server.tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\n{client_auth}\n",
            self.server.cert_file, self.server.key_file, self.ca_file
        )
    }
}

/// A channel to `authd` over TLS trusting `ca`, with `identity` as the
/// client certificate; it connects at the first call, so that a refused
/// handshake shows as that call's error.
fn channel(authd: &Authd, ca: &Ca, identity: Option<&Leaf>) -> Result<Channel> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost");
    if let Some(leaf) = identity {
        tls = tls.identity(leaf.identity());
    }
    Ok(Channel::from_shared(format!("https://{}", authd.addr))?
        .tls_config(tls)?
        .connect_lazy())
}

async fn verify(channel: &Channel, token: &str, bearer: Option<&str>) -> Result<(), Status> {
    let mut request = Request::new(pb::VerifyTokenRequest {
        token: token.to_owned(),
        ..Default::default()
    });
    if let Some(bearer) = bearer {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {bearer}").parse().expect("ascii"),
        );
    }
    AuthServiceClient::new(channel.clone())
        .verify_token(request)
        .await
        .map(drop)
}

async fn profile_by_id(channel: &Channel, bearer: Option<&str>) -> Result<(), Status> {
    let mut request = Request::new(pb::GetProfileRequest {
        subject: Some(Subject::UserId("auth0|nobody".to_owned())),
    });
    if let Some(bearer) = bearer {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {bearer}").parse().expect("ascii"),
        );
    }
    AuthServiceClient::new(channel.clone())
        .get_profile(request)
        .await
        .map(drop)
}

async fn revoke_user(channel: &Channel) -> Result<(), Status> {
    let request = pb::RevokeSessionRequest {
        target: Some(Target::UserId("auth0|nobody".to_owned())),
    };
    AuthServiceClient::new(channel.clone())
        .revoke_session(request)
        .await
        .map(drop)
}

/// The ErrorInfo reason and metadata of `status`.
fn info(status: &Status) -> (String, std::collections::HashMap<String, String>) {
    match status.get_error_details().error_info() {
        Some(info) => (info.reason.clone(), info.metadata.clone()),
        None => (String::new(), Default::default()),
    }
}

/// Asserts the policy refused `rpc` to `caller`.
fn assert_refused(result: Result<(), Status>, rpc: &str, caller: &str) {
    let status = result.expect_err("refused by the policy");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let (reason, metadata) = info(&status);
    assert_eq!(reason, "CALLER_NOT_TRUSTED");
    assert_eq!(metadata.get("rpc").map(String::as_str), Some(rpc));
    assert_eq!(metadata.get("caller").map(String::as_str), Some(caller));
}

/// Asserts the call failed in the TLS handshake: a transport error, no
/// answer from authd (no ErrorInfo).
fn assert_handshake_refused(result: Result<(), Status>, what: &str) {
    let status = result.expect_err(what);
    assert!(
        matches!(
            status.code(),
            Code::Unknown | Code::Unavailable | Code::Cancelled
        ),
        "{what}: {status:?}"
    );
    assert_eq!(
        info(&status).0,
        "",
        "{what}: an answer from authd: {status:?}"
    );
}

#[tokio::test]
async fn mutual_tls_refuses_certificates_it_cannot_trust() -> Result<()> {
    let setup = Setup::new()?;
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&format!(
        "{}{}",
        issuer.config_entry(&["RS256"]),
        setup.tls_section("")
    ))
    .await?;
    let token = issuer.token(&[]).await?;

    let good = setup.client("good", Names::spiffe("spiffe://prod.test/ns/web/sa/bff"))?;
    verify(&channel(&authd, &setup.ca, Some(&good))?, &token, None).await?;

    assert_handshake_refused(
        verify(&channel(&authd, &setup.ca, None)?, &token, None).await,
        "no client certificate",
    );
    let other_ca = Ca::new("another CA")?;
    let stranger = other_ca.leaf(
        setup.path(),
        "stranger",
        Names::spiffe("spiffe://prod.test/ns/web/sa/bff"),
    )?;
    assert_handshake_refused(
        verify(&channel(&authd, &setup.ca, Some(&stranger))?, &token, None).await,
        "a certificate from another CA",
    );
    let expired = setup.client(
        "expired",
        Names {
            expired: true,
            ..Names::spiffe("spiffe://prod.test/ns/web/sa/bff")
        },
    )?;
    assert_handshake_refused(
        verify(&channel(&authd, &setup.ca, Some(&expired))?, &token, None).await,
        "an expired certificate",
    );
    let two_ids = setup.client(
        "two",
        Names {
            uris: vec![
                "spiffe://prod.test/ns/web/sa/bff".to_owned(),
                "spiffe://prod.test/ns/admin/sa/root".to_owned(),
            ],
            ..Names::default()
        },
    )?;
    assert_handshake_refused(
        verify(&channel(&authd, &setup.ca, Some(&two_ids))?, &token, None).await,
        "two SPIFFE IDs",
    );
    // A plaintext client does not get through either.
    let plain = Channel::from_shared(format!("http://{}", authd.addr))?.connect_lazy();
    let status = verify(&plain, &token, None).await.expect_err("plaintext");
    // The client reads authd's TLS alert as a broken HTTP/2 frame.
    assert_eq!(info(&status).0, "", "an answer from authd: {status:?}");
    // The good certificate still works after all that.
    verify(&channel(&authd, &setup.ca, Some(&good))?, &token, None).await?;
    Ok(())
}

#[tokio::test]
async fn the_callers_policy_grants_per_rpc_class_and_refuses_with_reasons() -> Result<()> {
    let setup = Setup::new()?;
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&format!(
        r#"{}{}
[[callers]]
identities = ["spiffe://prod.test/ns/support/"]
rpcs = ["/auth.v1.AuthService/GetProfile:user_id"]

[[callers]]
identities = ["dns:ops.internal"]
rpcs = ["*"]
"#,
        issuer.config_entry(&["RS256"]),
        setup.tls_section(r#"client_auth = "require""#)
    ))
    .await?;
    let token = issuer.token(&[]).await?;
    let support = setup.client(
        "support",
        Names::spiffe("spiffe://prod.test/ns/support/sa/desk"),
    )?;
    let batch = setup.client("batch", Names::spiffe("spiffe://prod.test/ns/batch/sa/job"))?;
    let ops = setup.client("ops", Names::dns(&["ops.internal"]))?;
    let (support, batch, ops) = (
        channel(&authd, &setup.ca, Some(&support))?,
        channel(&authd, &setup.ca, Some(&batch))?,
        channel(&authd, &setup.ca, Some(&ops))?,
    );

    // Public: health, for any connected caller.
    let health = HealthClient::new(batch.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    assert_eq!(health.into_inner().status, 1, "SERVING");
    // Any authenticated caller: VerifyToken.
    verify(&batch, &token, None).await?;
    // Listed: GetProfile by id, for support (the user does not exist:
    // NOT_FOUND means the policy let the call through).
    let status = profile_by_id(&support, None)
        .await
        .expect_err("no such user");
    assert_eq!(
        (status.code(), info(&status).0.as_str()),
        (Code::NotFound, "USER_NOT_FOUND")
    );
    assert_refused(
        profile_by_id(&batch, None).await,
        "/auth.v1.AuthService/GetProfile:user_id",
        "spiffe://prod.test/ns/batch/sa/job",
    );
    // A service token with the old trusted permission still counts.
    let service = issuer.token(&[("permissions", "profiles:read")]).await?;
    let status = profile_by_id(&batch, Some(&service))
        .await
        .expect_err("no such user");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    // Support is listed for GetProfile by id only.
    assert_refused(
        revoke_user(&support).await,
        "/auth.v1.AuthService/RevokeSession:user_id",
        "spiffe://prod.test/ns/support/sa/desk",
    );
    // ops may call everything: revoking a user with no sessions revokes 0.
    revoke_user(&ops).await?;
    let create = AuthServiceClient::new(batch.clone())
        .create_session(pb::CreateSessionRequest::default())
        .await
        .map(drop);
    assert_refused(
        create,
        "/auth.v1.AuthService/CreateSession",
        "spiffe://prod.test/ns/batch/sa/job",
    );
    Ok(())
}

#[tokio::test]
async fn without_a_certificate_a_service_token_identifies_the_caller() -> Result<()> {
    let setup = Setup::new()?;
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&format!(
        r#"{}{}
[[callers]]
identities = ["token:svc-billing@clients"]
rpcs = ["/auth.v1.AuthService/RevokeSession:user_id"]
"#,
        issuer.config_entry(&["RS256"]),
        setup.tls_section(r#"client_auth = "optional""#)
    ))
    .await?;
    let token = issuer.token(&[]).await?;
    let anonymous = channel(&authd, &setup.ca, None)?;
    assert_refused(
        verify(&anonymous, &token, None).await,
        "/auth.v1.AuthService/VerifyToken",
        "anonymous",
    );
    assert_refused(
        verify(&anonymous, &token, Some("not-a-token")).await,
        "/auth.v1.AuthService/VerifyToken",
        "anonymous",
    );
    let billing = issuer.token(&[("sub", "svc-billing@clients")]).await?;
    verify(&anonymous, &token, Some(&billing)).await?;
    let mut request = Request::new(pb::RevokeSessionRequest {
        target: Some(Target::UserId("auth0|nobody".to_owned())),
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {billing}").parse().expect("ascii"),
    );
    AuthServiceClient::new(anonymous.clone())
        .revoke_session(request)
        .await?;
    let status = profile_by_id(&anonymous, Some(&billing))
        .await
        .expect_err("not listed");
    let (reason, metadata) = info(&status);
    assert_eq!(
        (reason.as_str(), metadata.get("caller").map(String::as_str)),
        ("CALLER_NOT_TRUSTED", Some("token:svc-billing@clients"))
    );
    Ok(())
}

/// The certificate a fresh TLS handshake with `addr` is served.
async fn served_certificate(
    addr: std::net::SocketAddr,
    setup: &Setup,
    client: &Leaf,
) -> Result<Vec<u8>> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(setup.ca.pem().as_bytes())?)?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(client.cert_pem.as_bytes())?],
            PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes())?,
        )?;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let served = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .context("no server certificate")?;
    Ok(served.to_vec())
}

fn der(pem: &str) -> Result<Vec<u8>> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    Ok(CertificateDer::from_pem_slice(pem.as_bytes())?.to_vec())
}

#[tokio::test]
async fn a_certificate_rotated_on_disk_is_served_to_new_handshakes_without_a_failed_call()
-> Result<()> {
    let setup = Setup::new()?;
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&format!(
        "{}{}",
        issuer.config_entry(&["RS256"]),
        setup.tls_section("")
    ))
    .await?;
    let token = issuer.token(&[]).await?;
    let client = setup.client("client", Names::spiffe("spiffe://prod.test/ns/web/sa/bff"))?;
    assert_eq!(
        served_certificate(authd.addr, &setup, &client).await?,
        der(&setup.server.cert_pem)?
    );

    // A client calling all along, on one connection and on new ones.
    let (calls, failures, done) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let established = channel(&authd, &setup.ca, Some(&client))?;
    let caller = {
        let (calls, failures, done) = (calls.clone(), failures.clone(), done.clone());
        let (token, authd_addr, ca_pem, client) =
            (token.clone(), authd.addr, setup.ca.pem(), client.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !done.load(Ordering::Relaxed) {
                let fresh = Channel::from_shared(format!("https://{authd_addr}"))
                    .expect("uri")
                    .tls_config(
                        ClientTlsConfig::new()
                            .ca_certificate(Certificate::from_pem(&ca_pem))
                            .domain_name("localhost")
                            .identity(client.identity()),
                    )
                    .expect("tls")
                    .connect_lazy();
                let on = if n.is_multiple_of(2) {
                    &established
                } else {
                    &fresh
                };
                if let Err(status) = verify(on, &token, None).await {
                    eprintln!("call failed during rotation: {status:?}");
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                calls.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        })
    };
    while calls.load(Ordering::Relaxed) < 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A new certificate and key replace the files.
    let renewed = setup
        .ca
        .leaf(setup.path(), "renewed", Names::dns(&SERVER_NAMES))?;
    let rotated = Leaf {
        cert_file: setup.server.cert_file.clone(),
        key_file: setup.server.key_file.clone(),
        ..renewed
    };
    rotated.write()?;
    let new_der = der(&rotated.cert_pem)?;
    // authd notices within seconds; the wait is bounded generously.
    let mut waited = 0;
    while served_certificate(authd.addr, &setup, &client).await? != new_der {
        waited += 1;
        if waited > 600 {
            bail!("the rotated certificate was not served within a minute");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = calls.load(Ordering::Relaxed);
    while calls.load(Ordering::Relaxed) < before + 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A broken file is ignored: the rotated certificate stays in use.
    std::fs::write(&setup.server.cert_file, "not a certificate")?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        served_certificate(authd.addr, &setup, &client).await?,
        new_der
    );

    done.store(true, Ordering::Relaxed);
    caller.await?;
    assert_eq!(failures.load(Ordering::Relaxed), 0, "no call failed");
    assert!(calls.load(Ordering::Relaxed) >= 40);
    Ok(())
}

#[tokio::test]
async fn grpcurl_calls_over_mutual_tls() -> Result<()> {
    let setup = Setup::new()?;
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&format!(
        "{}{}",
        issuer.config_entry(&["RS256"]),
        setup.tls_section("")
    ))
    .await?;
    let token = issuer.token(&[]).await?;
    let client = setup.client("grpcurl", Names::spiffe("spiffe://prod.test/ns/ops/sa/cli"))?;
    let body = format!("{{\"token\":\"{token}\"}}");
    let addr = authd.addr.to_string();
    let (ca, cert, key) = (
        setup.ca_file.to_string_lossy().into_owned(),
        client.cert_file.to_string_lossy().into_owned(),
        client.key_file.to_string_lossy().into_owned(),
    );
    let out = run_grpcurl(&[
        "-cacert",
        &ca,
        "-cert",
        &cert,
        "-key",
        &key,
        "-d",
        &body,
        &addr,
        "auth.v1.AuthService/VerifyToken",
    ])
    .await?;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("\"subject\""), "{}", out.stdout);
    // Without a client certificate the handshake fails.
    let out = run_grpcurl(&[
        "-cacert",
        &ca,
        "-d",
        &body,
        &addr,
        "auth.v1.AuthService/VerifyToken",
    ])
    .await?;
    assert_ne!(out.code, Some(0), "{out:?}");
    Ok(())
}

#[tokio::test]
async fn plaintext_on_a_non_loopback_address_stops_start_up() -> Result<()> {
    let issuer = Issuer::start().await?;
    let toml = issuer.config_entry(&["RS256"]);
    let start = |toml: String| async move {
        let config = authd::Config::from_toml(&toml)?;
        let dir = tempfile::tempdir()?;
        let store = Arc::new(authd::store::embedded::EmbeddedStore::open(dir.path())?);
        let app = authd::App::with_store(&config, store).await?;
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await?;
        let port = listener.local_addr()?.port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(authd::run(listener, app, Duration::from_secs(1), async {
            let _ = stopped.await;
        }));
        anyhow::Ok((served, stop, port, dir))
    };
    let (served, _stop, _, _dir) = start(toml.clone()).await?;
    let error = served.await?.expect_err("refused");
    let message = error.to_string();
    assert!(message.contains("[server.tls]"), "{message}");
    assert!(message.contains("insecure_plaintext"), "{message}");

    // The operator's explicit choice, behind a proxy that terminates TLS.
    let (served, stop, port, _dir) =
        start(format!("[server]\ninsecure_plaintext = true\n{toml}")).await?;
    let plain = Channel::from_shared(format!("http://127.0.0.1:{port}"))?.connect_lazy();
    let health = HealthClient::new(plain)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    assert_eq!(health.into_inner().status, 1);
    let _ = stop.send(());
    served.await??;
    Ok(())
}

/// The TOML block of the README's production section.
fn readme_production_toml() -> Result<String> {
    let readme = std::fs::read_to_string(authd_tests::workspace().join("README.md"))?;
    let section = readme
        .split("## Production: TLS, mTLS and callers")
        .nth(1)
        .context("no production section in README.md")?;
    let block = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .context("no TOML block in the production section")?;
    Ok(block.to_owned())
}

#[tokio::test]
async fn the_readme_production_configuration_runs_as_written() -> Result<()> {
    let setup = Setup::new()?;
    // The README's files, where the test put them.
    let block = readme_production_toml()?
        .replace("/etc/authd/tls/", &format!("{}/", setup.path().display()));
    assert!(block.contains("client_auth = \"require\""), "{block}");
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&format!("{}{block}", issuer.config_entry(&["RS256"]))).await?;
    let token = issuer.token(&[]).await?;
    let bff = setup.client("bff", Names::spiffe("spiffe://prod.example/ns/web/sa/bff"))?;
    let desk = setup.client(
        "desk",
        Names::spiffe("spiffe://prod.example/ns/support/sa/desk"),
    )?;
    let admin = setup.client("admin", Names::dns(&["admin.internal"]))?;
    let (bff, desk, admin) = (
        channel(&authd, &setup.ca, Some(&bff))?,
        channel(&authd, &setup.ca, Some(&desk))?,
        channel(&authd, &setup.ca, Some(&admin))?,
    );
    for caller in [&bff, &desk, &admin] {
        verify(caller, &token, None).await?;
    }
    // The bff creates sessions (an empty request gets past the policy to
    // the handler, which wants a grant).
    let create = AuthServiceClient::new(bff.clone())
        .create_session(pb::CreateSessionRequest::default())
        .await
        .expect_err("no grant");
    assert_eq!(create.code(), Code::InvalidArgument, "{create:?}");
    assert_refused(
        profile_by_id(&bff, None).await,
        "/auth.v1.AuthService/GetProfile:user_id",
        "spiffe://prod.example/ns/web/sa/bff",
    );
    let status = profile_by_id(&desk, None).await.expect_err("no such user");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_refused(
        AuthServiceClient::new(desk.clone())
            .create_session(pb::CreateSessionRequest::default())
            .await
            .map(drop),
        "/auth.v1.AuthService/CreateSession",
        "spiffe://prod.example/ns/support/sa/desk",
    );
    revoke_user(&admin).await?;
    Ok(())
}

#[tokio::test]
async fn the_rust_client_reloads_its_certificate_when_the_files_change() -> Result<()> {
    let setup = Setup::new()?;
    let issuer = Issuer::start().await?;
    // Nobody is listed: a refusal names the caller, which shows which
    // certificate the client presented.
    let authd = Authd::start(&format!(
        "{}{}\n[[callers]]\nidentities = [\"dns:nobody.internal\"]\nrpcs = [\"*\"]\n",
        issuer.config_entry(&["RS256"]),
        setup.tls_section("")
    ))
    .await?;
    let token = issuer.token(&[]).await?;
    let old = setup.client("svid", Names::spiffe("spiffe://prod.test/ns/web/sa/old"))?;
    let files = authd_client::tls::TlsFiles::new(&setup.ca_file, "localhost")
        .identity(&old.cert_file, &old.key_file)
        .poll_every(Duration::from_millis(200));
    let mut client = authd_client::AuthClient::builder()
        .endpoint(format!("https://{}", authd.addr))
        .tls_files(files)
        .build()?;
    let caller = |error: authd_client::AuthError| {
        assert_eq!(
            error.reason(),
            Some(authd_client::ErrorReason::CallerNotTrusted),
            "{error:?}"
        );
        error.metadata().get("caller").cloned().unwrap_or_default()
    };
    client.verify_token(&token, &[]).await?;
    let service = authd_client::Secret::new(token.clone());
    let refused = client
        .get_profile_by_id("auth0|nobody", &service)
        .await
        .expect_err("not listed");
    assert_eq!(caller(refused), "spiffe://prod.test/ns/web/sa/old");

    // The SVID rotates: same files, a new certificate and key.
    let new = setup.client(
        "svid-next",
        Names::spiffe("spiffe://prod.test/ns/web/sa/new"),
    )?;
    Leaf {
        cert_file: old.cert_file.clone(),
        key_file: old.key_file.clone(),
        ..new
    }
    .write()?;
    let mut waited = 0;
    loop {
        // Every call succeeds or is refused by the policy: none fails.
        client.verify_token(&token, &[]).await?;
        let refused = client
            .get_profile_by_id("auth0|nobody", &service)
            .await
            .expect_err("not listed");
        if caller(refused) == "spiffe://prod.test/ns/web/sa/new" {
            break;
        }
        waited += 1;
        if waited > 600 {
            bail!("the client did not present its new certificate within a minute");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
