//! The DynamoDB store against a real DynamoDB-compatible server (moto) on
//! loopback: the shared conformance suite, secrets at rest in the raw table,
//! `authd store init`, and the server pausing in the middle of a run.

use std::{sync::Arc, time::Duration};

use anyhow::Result;
use authd::{
    secrets::{Sealer, Secret, hash_handle, random_handle},
    store::{Store, StoreError, conformance, dynamodb::DynamoStore},
};
use authd_tests::{Authd, Issuer, Moto, authd_binary};
use tokio::process::Command;

async fn fresh() -> (Moto, Arc<dyn Store>) {
    let moto = Moto::start().await.expect("moto");
    let store = moto.store("authd").await.expect("table");
    (moto, Arc::new(store))
}

authd::store_conformance_tests!(fresh);

#[tokio::test]
async fn raw_items_hold_no_secret_or_handle_in_clear() -> Result<()> {
    let moto = Moto::start().await?;
    let store = moto.store("authd").await?;
    let sealer = Sealer::from_keys(&[("k1", [9; 32])])?;
    let handle = random_handle();
    let refresh_token = "v1.MRrx-refresh-token-of-alice-0123456789";
    let mut session = conformance::session("auth0|alice");
    session.id = hash_handle(&handle);
    session.refresh_token = Some(sealer.seal(&Secret::new(refresh_token), &session.item_key()));
    store.create_session(&session).await?;
    store
        .put_profile(&conformance::profile("auth0|alice"))
        .await?;

    let scan = store
        .client()
        .scan()
        .table_name(store.table())
        .send()
        .await?;
    let raw = format!("{:?}", scan.items());
    assert_eq!(scan.items().len(), 2);
    assert!(raw.contains(&session.id), "the handle's hash is the key");
    assert!(!raw.contains(&handle), "the handle itself is never stored");
    assert!(!raw.contains(refresh_token), "the refresh token is sealed");
    assert!(!raw.contains("MRrx"), "no fragment of it either");
    // And the sealed value opens with the key, for this item only.
    let stored = store
        .get_session(&session.id, conformance::now())
        .await?
        .expect("stored");
    let sealed = stored.refresh_token.expect("sealed");
    assert_eq!(
        sealer.open(&sealed, &session.item_key())?.expose(),
        refresh_token
    );
    Ok(())
}

#[tokio::test]
async fn store_init_creates_table_index_and_ttl_idempotently() -> Result<()> {
    let moto = Moto::start().await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("authd.toml");
    std::fs::write(
        &config,
        "[store]\nkind = \"dynamodb\"\ntable = \"authd-init\"\n",
    )?;
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let output = Command::new(authd_binary()?)
            .args(["store", "init", "--config"])
            .arg(&config)
            .envs(moto.env())
            .env("RUST_LOG", "warn")
            .output()
            .await?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        outputs.push(stdout);
    }
    assert!(
        outputs[0].contains("created table authd-init"),
        "{}",
        outputs[0]
    );
    assert!(outputs[0].contains("enabled TTL"), "{}", outputs[0]);
    assert!(
        outputs[1].contains("table authd-init exists"),
        "{}",
        outputs[1]
    );
    assert!(outputs[1].contains("already enabled"), "{}", outputs[1]);

    let store = DynamoStore::from_sdk_config(
        &moto.sdk_config(1, Duration::from_secs(2)).await,
        "authd-init",
    );
    let table = store
        .client()
        .describe_table()
        .table_name("authd-init")
        .send()
        .await?;
    let table = table.table().expect("table");
    assert_eq!(
        table.global_secondary_indexes()[0].index_name(),
        Some("gsi1")
    );
    let ttl = store
        .client()
        .describe_time_to_live()
        .table_name("authd-init")
        .send()
        .await?;
    let ttl = ttl.time_to_live_description().expect("ttl");
    assert_eq!(ttl.attribute_name(), Some("ttl"));
    Ok(())
}

#[tokio::test]
async fn paused_server_gives_unavailable_and_loses_no_acknowledged_write() -> Result<()> {
    let moto = Moto::start().await?;
    moto.store("authd").await?;
    // Short bounds so a paused server turns into UNAVAILABLE quickly.
    let store = Arc::new(DynamoStore::from_sdk_config(
        &moto.sdk_config(2, Duration::from_millis(800)).await,
        "authd",
    ));

    let writers = (0..4).map(|w| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut unavailable = 0;
            for i in 0..60 {
                let mut profile = conformance::profile(&format!("auth0|user-{w}-{i}"));
                profile
                    .attributes
                    .insert("payload".to_owned(), serde_json::json!("y".repeat(2048)));
                match store.put_profile(&profile).await {
                    Ok(()) => acknowledged.push(profile),
                    Err(StoreError::Unavailable(_)) => unavailable += 1,
                    Err(other) => panic!("a pause must look like unavailability, not {other}"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acknowledged, unavailable)
        })
    });
    let writers: Vec<_> = writers.collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    moto.signal("STOP").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    moto.signal("CONT").await?;

    let (mut acknowledged, mut unavailable) = (Vec::new(), 0);
    for writer in writers {
        let (acks, misses) = writer.await?;
        acknowledged.extend(acks);
        unavailable += misses;
    }
    assert!(unavailable > 0, "the pause was noticed");
    assert!(!acknowledged.is_empty());
    // Checked with patient bounds: the server first works off the requests
    // that queued up while it was paused.
    let store =
        DynamoStore::from_sdk_config(&moto.sdk_config(3, Duration::from_secs(20)).await, "authd");
    for profile in &acknowledged {
        assert_eq!(
            store.get_profile(&profile.user_id).await?.as_ref(),
            Some(profile),
            "acknowledged write lost"
        );
    }
    // Nothing half-written: every item in the table reads back whole.
    let scan = store.client().scan().table_name("authd").send().await?;
    for item in scan.items() {
        let user = item["user_id"].as_s().expect("user_id");
        assert!(store.get_profile(user).await?.is_some());
    }
    Ok(())
}

#[tokio::test]
async fn health_and_rpcs_follow_the_store() -> Result<()> {
    let (issuer, moto) = (Issuer::start().await?, Moto::start().await?);
    moto.store("authd").await?;
    let store = DynamoStore::from_sdk_config(
        &moto.sdk_config(1, Duration::from_millis(500)).await,
        "authd",
    );
    let toml = format!(
        "{}[store]\nhealth_interval_seconds = 1\n",
        issuer.config_entry(&["RS256"])
    );
    let authd = Authd::start_with_store(&toml, Arc::new(store)).await?;
    let channel = tonic::transport::Channel::from_shared(authd.uri())?
        .connect()
        .await?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = |service: &str| tonic_health::pb::HealthCheckRequest {
        service: service.to_owned(),
    };
    use tonic_health::pb::health_check_response::ServingStatus;
    let serving = ServingStatus::Serving as i32;
    assert_eq!(
        health
            .check(status("auth.v1.AuthService"))
            .await?
            .into_inner()
            .status,
        serving
    );

    let service = issuer.token(&[("permissions", "profiles:read")]).await?;
    let mut client = authd.client().await?;
    let by_id = || {
        let mut request = tonic::Request::new(authd_proto::pb::GetProfileRequest {
            subject: Some(authd_proto::pb::get_profile_request::Subject::UserId(
                "auth0|alice".to_owned(),
            )),
        });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {service}").parse().expect("ascii"),
        );
        request
    };

    moto.signal("STOP").await?;
    let not_serving = async {
        loop {
            let now = health
                .check(status(""))
                .await
                .map(|r| r.into_inner().status)
                .unwrap_or_default();
            if now == ServingStatus::NotServing as i32 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), not_serving).await?;
    let err = authd_client::AuthError::from(
        client
            .raw()
            .get_profile(by_id())
            .await
            .expect_err("store paused"),
    );
    assert_eq!(
        (err.code(), err.reason()),
        (
            tonic::Code::Unavailable,
            Some(authd_client::ErrorReason::StoreUnavailable)
        )
    );
    // VerifyToken never waits on the store.
    client.verify_token(&service, &[]).await?;

    moto.signal("CONT").await?;
    let serving_again = async {
        loop {
            let now = health
                .check(status("auth.v1.AuthService"))
                .await
                .map(|r| r.into_inner().status)
                .unwrap_or_default();
            if now == serving {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), serving_again).await?;
    let err = authd_client::AuthError::from(
        client
            .raw()
            .get_profile(by_id())
            .await
            .expect_err("no such user"),
    );
    assert_eq!(err.reason(), Some(authd_client::ErrorReason::UserNotFound));
    Ok(())
}

/// A DynamoDB endpoint that answers every request with a throttling error,
/// as DynamoDB does when a partition is over its throughput. moto never
/// throttles, so this one answer is scripted; everything else in these tests
/// talks to the real server.
async fn always_throttling() -> Result<(String, Arc<std::sync::atomic::AtomicUsize>)> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request: headers, then Content-Length bytes of body.
                    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buffer.len() < end + 4 + length {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    }
                    buffer.drain(..end + 4 + length);
                    counter.fetch_add(1, Ordering::SeqCst);
                    let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#;
                    let response = format!(
                        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\nx-amzn-errortype: ThrottlingException\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((endpoint, requests))
}

#[tokio::test]
async fn throttling_is_retried_with_backoff_then_unavailable() -> Result<()> {
    use std::sync::atomic::Ordering;
    let (endpoint, requests) = always_throttling().await?;
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "t", "t", None, None, "test",
        ))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
        .load()
        .await;
    let store = DynamoStore::from_sdk_config(&config, "authd");
    let started = std::time::Instant::now();
    let err = store
        .get_profile("auth0|alice")
        .await
        .expect_err("throttled");
    assert!(
        matches!(err, StoreError::Unavailable(ref m) if m.contains("ThrottlingException")),
        "{err:?}"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 3, "bounded retries");
    assert!(started.elapsed() < Duration::from_secs(30));
    let err = store
        .put_profile(&conformance::profile("auth0|alice"))
        .await
        .expect_err("throttled");
    assert!(matches!(err, StoreError::Unavailable(_)));
    Ok(())
}

/// With DynamoDB down, `authd store init` says what failed and what to
/// check, not the SDK's debug dump.
#[tokio::test]
async fn store_init_with_dynamodb_down_says_what_to_check() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("authd.toml");
    let port = authd_tests::free_port()?;
    std::fs::write(
        &config,
        format!(
            "[store]\nkind = \"dynamodb\"\ntable = \"authd\"\nregion = \"us-east-1\"\n\
             endpoint_url = \"http://127.0.0.1:{port}\"\nmax_attempts = 1\noperation_timeout_ms = 1000\n"
        ),
    )?;
    let output = Command::new(authd_binary()?)
        .args(["store", "init", "--config"])
        .arg(&config)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("RUST_LOG", "warn")
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!(
            "cannot set up table \"authd\" at http://127.0.0.1:{port}"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("check [store] endpoint_url"), "{stderr}");
    assert!(!stderr.contains("MaybeTimeoutError"), "{stderr}");
    Ok(())
}
