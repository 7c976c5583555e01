//! A leaked table yields nothing: after a full run of sessions, device
//! logins and profiles, a dump of the DynamoDB table (moto) and of the
//! embedded file holds no email, name, token, handle or device code in
//! clear, and neither do the logs; KMS envelope encryption through moto's
//! KMS, and a KMS outage (held data keys serve; without one, a reason);
//! `authd store reseal` across two replicas while they serve.

use std::{process::Stdio, time::Duration};

use anyhow::{Context, Result, bail};
use authd::store::{SealedItem, Store, StoredProfile};
use authd_proto::pb::{
    self, create_session_request::Grant, get_profile_request::Subject,
    refresh_session_request::Credential,
};
use authd_tests::{AuthdProcess, Issuer, Moto, REDIRECT_URI, authd_binary, free_port};
use serde_json::json;
use tokio::process::Command;

type Client = pb::auth_service_client::AuthServiceClient<tonic::transport::Channel>;

/// A second sealing key, for rotation.
const NEW_KEY: &str = "bmV3LWtleS0zMi1ieXRlcy1mb3ItYXV0aGQtdGVzdHM=";

async fn client(authd: &AuthdProcess) -> Result<Client> {
    Ok(authd.client().await?.raw().clone())
}

async fn by_code(issuer: &Issuer, c: &mut Client, user: &str) -> Result<pb::NewSession> {
    let (code, code_verifier) = issuer.authorize(user, "n-1").await?;
    let grant = Grant::AuthorizationCode(pb::AuthorizationCodeGrant {
        code,
        redirect_uri: REDIRECT_URI.to_owned(),
        code_verifier,
        nonce: "n-1".to_owned(),
    });
    create(c, grant).await
}

/// A session from tokens the app holds; also the refresh token it handed
/// over, which authd must keep sealed.
async fn by_tokens(
    issuer: &Issuer,
    c: &mut Client,
    user: &str,
) -> Result<(pb::NewSession, String)> {
    let login = issuer.password_login(user).await?;
    let refresh_token = login["refresh_token"].as_str().context("rt")?.to_owned();
    let grant = Grant::ExistingTokens(pb::ExistingTokens {
        refresh_token: refresh_token.clone(),
        id_token: login["id_token"].as_str().context("idt")?.to_owned(),
        access_token: String::new(),
        nonce: String::new(),
    });
    Ok((create(c, grant).await?, refresh_token))
}

async fn create(c: &mut Client, grant: Grant) -> Result<pb::NewSession> {
    let request = pb::CreateSessionRequest {
        grant: Some(grant),
        issuer: String::new(),
    };
    c.create_session(request)
        .await?
        .into_inner()
        .session
        .context("no session")
}

async fn refresh(
    c: &mut Client,
    handle: &str,
) -> Result<pb::RefreshSessionResponse, tonic::Status> {
    let request = pb::RefreshSessionRequest {
        credential: Some(Credential::SessionHandle(handle.to_owned())),
        issuer: String::new(),
    };
    Ok(c.refresh_session(request).await?.into_inner())
}

async fn profile(c: &mut Client, access_token: &str) -> Result<pb::Profile, tonic::Status> {
    let request = pb::GetProfileRequest {
        subject: Some(Subject::AccessToken(access_token.to_owned())),
    };
    Ok(c.get_profile(request)
        .await?
        .into_inner()
        .profile
        .unwrap_or_default())
}

/// Sessions by code and by the app's tokens, a refresh, profiles and an
/// approved device login polled twice: everything that writes a secret or
/// personal data. Returns what must never be found in clear, by name.
async fn full_run(issuer: &Issuer, authd: &AuthdProcess) -> Result<Vec<(String, String)>> {
    let mut c = client(authd).await?;
    let mut needles = Vec::new();
    fn token(needles: &mut Vec<(String, String)>, what: &str, value: &str) {
        needles.push((what.to_owned(), value.to_owned()));
        // The signature alone, in case anything kept a part of it.
        if let Some(signature) = value.rsplit('.').next().filter(|s| s.len() > 20) {
            needles.push((format!("{what} signature"), signature.to_owned()));
        }
    }
    let alice = by_code(issuer, &mut c, "alice").await?;
    token(&mut needles, "alice's handle", &alice.session_handle);
    token(&mut needles, "alice's access token", &alice.access_token);
    token(&mut needles, "alice's id token", &alice.id_token);
    let refreshed = refresh(&mut c, &alice.session_handle).await?;
    token(
        &mut needles,
        "alice's refreshed access token",
        &refreshed.access_token,
    );
    let (bob, bob_refresh) = by_tokens(issuer, &mut c, "bob").await?;
    token(&mut needles, "bob's refresh token", &bob_refresh);
    token(&mut needles, "bob's handle", &bob.session_handle);
    token(&mut needles, "bob's access token", &bob.access_token);
    for access_token in [&alice.access_token, &bob.access_token] {
        let p = profile(&mut c, access_token).await?;
        assert!(!p.email.is_empty() && !p.name.is_empty(), "{p:?}");
        needles.push((format!("{}'s email", p.user_id), p.email.clone()));
        needles.push((format!("{}'s name", p.user_id), p.name.clone()));
        needles.push((format!("{}'s picture", p.user_id), p.picture.clone()));
    }

    issuer
        .control("device-config", json!({"interval": 1}))
        .await?;
    let started = c
        .start_device_login(pb::StartDeviceLoginRequest::default())
        .await?
        .into_inner();
    token(&mut needles, "the device code", &started.device_code);
    issuer
        .control(
            &format!("device/{}", started.user_code),
            json!({"action": "approve", "user": "alice"}),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let poll = || pb::PollDeviceLoginRequest {
        device_code: started.device_code.clone(),
        issuer: String::new(),
        interval: 1,
    };
    let approved = c.poll_device_login(poll()).await?.into_inner();
    let device = approved.session.context("approved")?;
    token(
        &mut needles,
        "the device session's handle",
        &device.session_handle,
    );
    token(
        &mut needles,
        "the device session's access token",
        &device.access_token,
    );
    // Repeated: answered from the stored (sealed) approval.
    let again = c.poll_device_login(poll()).await?.into_inner();
    assert_eq!(
        again.session.context("again")?.session_handle,
        device.session_handle
    );
    Ok(needles)
}

fn assert_nothing_in_clear(dump: &[u8], needles: &[(String, String)], place: &str) {
    for (what, value) in needles {
        assert!(!value.is_empty(), "{what} is empty");
        let found = dump
            .windows(value.len())
            .any(|window| window == value.as_bytes());
        assert!(!found, "{what} ({value}) is in clear in {place}");
    }
}

#[tokio::test]
async fn a_dump_of_the_table_or_the_file_yields_nothing() -> Result<()> {
    let (issuer, moto) = (Issuer::start().await?, Moto::start().await?);
    let table = moto.store("authd").await?;
    let info = || ("RUST_LOG", "info".to_owned());

    let mut env = moto.env();
    env.push(info());
    let dynamo = AuthdProcess::start_with_env(&issuer.sessions_config(""), &env).await?;
    let needles = full_run(&issuer, &dynamo).await?;
    let scan = table
        .client()
        .scan()
        .table_name(table.table())
        .send()
        .await?;
    let dump = format!("{:?}", scan.items());
    assert!(dump.contains("PROFILE") && dump.contains("APPROVAL") && dump.contains("SESSION#"));
    assert_nothing_in_clear(dump.as_bytes(), &needles, "the DynamoDB table");
    assert_nothing_in_clear(
        dynamo.log().as_bytes(),
        &needles,
        "the DynamoDB replica's log",
    );

    let mut embedded = AuthdProcess::start_with_env(&issuer.sessions_config(""), &[info()]).await?;
    let needles = full_run(&issuer, &embedded).await?;
    embedded.stop().await?;
    let file = std::fs::read(embedded.data_dir().join(authd::store::embedded::FILE_NAME))?;
    assert!(file.len() > 4096);
    assert_nothing_in_clear(&file, &needles, "the embedded file");
    assert_nothing_in_clear(
        embedded.log().as_bytes(),
        &needles,
        "the embedded replica's log",
    );
    Ok(())
}

/// Polls `what` every 200 ms until it answers `Ok`, for at most `within`.
async fn eventually<T, F, Fut>(within: Duration, what: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if tokio::time::Instant::now() > deadline => {
                bail!("{what} within {within:?}: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn readyz(port: u16) -> Result<(u16, String)> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await?;
    Ok((response.status().as_u16(), response.text().await?))
}

#[tokio::test]
async fn kms_data_keys_seal_and_serve_through_an_outage() -> Result<()> {
    let (issuer, store_moto, kms_moto) = (
        Issuer::start().await?,
        Moto::start().await?,
        Moto::start().await?,
    );
    let table = store_moto.store("authd").await?;
    let key = kms_moto.kms_key().await?;
    let metrics = free_port()?;
    let mut env = store_moto.env();
    env.extend(kms_moto.kms_env(&key));
    // A data key seals for one second, then a new one is asked for.
    env.push(("AUTHD_SECRETS__DATA_KEY_SEAL_SECONDS", "1".to_owned()));
    let config = issuer.sessions_config(&format!(
        "[sessions]\nreuse_access_token_seconds = 0\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"
    ));
    let authd = AuthdProcess::start_with_env(&config, &env).await?;
    let mut c = client(&authd).await?;
    let alice = by_code(&issuer, &mut c, "alice").await?;
    profile(&mut c, &alice.access_token).await?;

    // Every value is a KMS envelope under that key: `v2.<ARN>.<wrapped>…`.
    let envelope = format!("v2.{key}.");
    let stored = table.get_profile("auth0|alice").await?;
    assert!(
        matches!(&stored, Some(StoredProfile::Sealed(v)) if v.0.starts_with(&envelope)),
        "{stored:?}"
    );
    let mut sessions = 0;
    for item in table.scan_sealed(None, 100).await?.items {
        if let SealedItem::Session(s) = item {
            sessions += 1;
            for value in [&s.refresh_token, &s.access_token, &s.id_token] {
                let value = value.as_ref().context("sealed")?;
                assert!(value.0.starts_with(&envelope), "{}", value.0);
            }
        }
    }
    assert_eq!(sessions, 1);
    let (status, body) = readyz(metrics).await?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("kms {key}: answers")), "{body}");

    // KMS stops answering: the data keys held keep sealing (past their
    // sealing second) and opening.
    kms_moto.signal("STOP").await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    refresh(&mut c, &alice.session_handle).await?;
    let p = profile(&mut c, &alice.access_token).await?;
    assert_eq!(p.user_id, "auth0|alice");
    let bob = by_code(&issuer, &mut c, "bob").await?;
    refresh(&mut c, &bob.session_handle).await?;
    let (status, body) = readyz(metrics).await?;
    assert_eq!(status, 200, "VerifyToken needs no KMS: {body}");
    assert!(
        body.contains("DEGRADED") && body.contains("sealing with a data key held"),
        "{body}"
    );

    // A replica started during the outage starts and verifies, and says
    // why it cannot seal; new sessions fail with a reason, not a hang.
    let metrics_b = free_port()?;
    let mut env_b = vec![];
    env_b.extend(kms_moto.kms_env(&key));
    let config_b =
        issuer.sessions_config(&format!("[metrics]\nlisten = \"127.0.0.1:{metrics_b}\"\n"));
    let b = AuthdProcess::start_with_env(&config_b, &env_b).await?;
    let mut cb = client(&b).await?;
    let verified = b
        .client()
        .await?
        .verify_token(&bob.access_token, &[])
        .await?;
    assert_eq!(verified.subject, "auth0|bob");
    let refused = by_code(&issuer, &mut cb, "alice")
        .await
        .expect_err("no data key to seal with");
    let refused = authd_client::AuthError::from(
        refused
            .downcast::<tonic::Status>()
            .context("a gRPC status")?,
    );
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert_eq!(
        refused.reason(),
        Some(authd_client::ErrorReason::SealingKeysUnavailable)
    );
    let body = eventually(Duration::from_secs(10), "readyz names KMS", || async {
        let (_, body) = readyz(metrics_b).await?;
        if body.contains("no data key held to seal") {
            Ok(body)
        } else {
            bail!("{body}")
        }
    })
    .await?;
    assert!(body.contains("DEGRADED"), "{body}");

    // KMS is back: the new replica seals again.
    kms_moto.signal("CONT").await?;
    eventually(
        Duration::from_secs(20),
        "a session once KMS answers",
        || {
            let (issuer, mut cb) = (&issuer, cb.clone());
            async move { by_code(issuer, &mut cb, "alice").await.map(drop) }
        },
    )
    .await?;
    Ok(())
}

/// `authd store reseal` with `config`; its stdout.
async fn reseal(config: &std::path::Path, env: &[(&str, String)]) -> Result<String> {
    let out = Command::new(authd_binary()?)
        .args([
            "store",
            "reseal",
            "--rate",
            "500",
            "--page-size",
            "7",
            "--config",
        ])
        .arg(config)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "reseal failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

#[tokio::test]
async fn reseal_finishes_a_rotation_beside_two_serving_replicas() -> Result<()> {
    let (issuer, moto) = (Issuer::start().await?, Moto::start().await?);
    let table = moto.store("authd").await?;
    let base = "[sessions]\nreuse_access_token_seconds = 0\n";
    let old = AuthdProcess::start_with_env(&issuer.sessions_config(base), &moto.env()).await?;
    let mut c = client(&old).await?;
    let mut sessions = Vec::new();
    for i in 0..6 {
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        let (session, _) = by_tokens(&issuer, &mut c, user).await?;
        sessions.push(session);
    }
    for s in &sessions[..2] {
        profile(&mut c, &s.access_token).await?;
    }
    // A profile as an earlier version wrote it: in clear.
    table
        .client()
        .put_item()
        .table_name(table.table())
        .item("pk", s("USER#auth0|legacy"))
        .item("sk", s("PROFILE"))
        .item("user_id", s("auth0|legacy"))
        .item("email", s("legacy@example.com"))
        .item(
            "email_verified",
            aws_sdk_dynamodb::types::AttributeValue::Bool(false),
        )
        .item("attributes", s("{}"))
        .item("created_at", n(1))
        .item("updated_at", n(1))
        .item("fetched_at", n(1))
        .send()
        .await?;
    drop(old);

    // k2 seals from now on, k1 still opens: two replicas serve while the
    // walk re-seals under them.
    let rotated = issuer.sessions_config(&format!(
        "{base}[[secrets.keys]]\nid = \"k2\"\nvalue = \"{NEW_KEY}\"\n"
    ));
    let mut env = moto.env();
    env.push(("AUTHD_SECRETS__PRIMARY_KEY_ID", "k2".to_owned()));
    let a = AuthdProcess::start_with_env(&rotated, &env).await?;
    let b = AuthdProcess::start_with_env(&rotated, &env).await?;
    let load = {
        let (mut ca, mut cb) = (client(&a).await?, client(&b).await?);
        let sessions = sessions.clone();
        tokio::spawn(async move {
            let mut served = 0;
            for round in 0..4 {
                for (i, s) in sessions.iter().enumerate() {
                    let c = if (i + round) % 2 == 0 {
                        &mut ca
                    } else {
                        &mut cb
                    };
                    refresh(c, &s.session_handle)
                        .await
                        .expect("refresh while re-sealing");
                    served += 1;
                }
            }
            served
        })
    };
    let report = reseal(&a.config_file(), &env).await?;
    assert_eq!(load.await?, 24, "every refresh beside the walk succeeded");
    assert!(
        report.contains("key k1 (seals nothing: may be removed from [secrets]): 0 value(s)"),
        "{report}"
    );
    assert!(report.contains("key k2 (sealing):"), "{report}");
    assert!(!report.contains("key clear"), "{report}");
    // Refreshes after the walk seal under k2 anyway; a second walk only counts.
    let again = reseal(&a.config_file(), &env).await?;
    assert!(again.contains("done: 0 item(s) re-sealed"), "{again}");

    let census = table.get_census().await?.context("the census is stored")?;
    assert_eq!(census.total("k1"), 0);
    assert_eq!(census.total("clear"), 0);
    // 6 sessions × 3 tokens, 3 profiles (alice, bob, legacy).
    assert_eq!(census.counts["k2"]["session"], 18, "{census:?}");
    assert_eq!(census.counts["k2"]["profile"], 3, "{census:?}");
    let scan = table
        .client()
        .scan()
        .table_name(table.table())
        .send()
        .await?;
    assert!(!format!("{:?}", scan.items()).contains("legacy@example.com"));

    // k1 removed: everything still opens, and the replicas report the census.
    drop((a, b));
    let metrics = free_port()?;
    let k2_only = issuer
        .sessions_config(&format!(
            "{base}[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"
        ))
        .replace(authd_tests::TEST_SEAL_KEY, NEW_KEY)
        .replace("id = \"k1\"", "id = \"k2\"");
    let c_only = AuthdProcess::start_with_env(&k2_only, &moto.env()).await?;
    let mut c = client(&c_only).await?;
    for s in &sessions {
        refresh(&mut c, &s.session_handle).await?;
    }
    let p = profile(&mut c, &sessions[0].access_token).await?;
    assert_eq!(p.user_id, "auth0|alice");
    let scrape = reqwest::get(format!("http://127.0.0.1:{metrics}/metrics"))
        .await?
        .text()
        .await?;
    assert!(
        scrape.contains("authd_sealed_values{key_id=\"k2\",kind=\"session\"} 18"),
        "{scrape}"
    );
    Ok(())
}

fn s(value: &str) -> aws_sdk_dynamodb::types::AttributeValue {
    aws_sdk_dynamodb::types::AttributeValue::S(value.to_owned())
}

fn n(value: i64) -> aws_sdk_dynamodb::types::AttributeValue {
    aws_sdk_dynamodb::types::AttributeValue::N(value.to_string())
}
