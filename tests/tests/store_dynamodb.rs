//! The DynamoDB store against a real DynamoDB-compatible server (moto) on
//! loopback: the shared conformance suite, secrets at rest in the raw table,
//! `authd store init`, the server pausing in the middle of a run, and the
//! revocation log's layout (time buckets, shards, the index, and the items
//! of authd before it).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use anyhow::Result;
use authd::{
    config::LegacyRevocations,
    secrets::{SealedSecret, Sealer, Secret, hash_handle, random_handle},
    store::{
        Revocation, RevocationKind, SealedItem, Store, StoreError, StoredProfile, conformance,
        dynamodb::{DynamoStore, RevocationLayout, revocations::INDEX_PK},
    },
};
use authd_client::ErrorReason;
use authd_tests::{Authd, Issuer, Moto, authd_binary};
use aws_sdk_dynamodb::types::AttributeValue;
use tokio::process::Command;

/// A store on `table`, created if missing. moto answers one request at a
/// time, so the parallel reads of the revocation log wait in its queue
/// (a query of 600 revocations takes it ~0.5 s): the operation timeout
/// covers that wait, which DynamoDB, answering in parallel, does not have.
async fn patient_store(moto: &Moto, table: &str) -> DynamoStore {
    let store =
        DynamoStore::from_sdk_config(&moto.sdk_config(3, Duration::from_secs(60)).await, table);
    store.init_table().await.expect("table");
    store
}

async fn fresh() -> (Moto, Arc<dyn Store>) {
    let moto = Moto::start().await.expect("moto");
    let store = patient_store(&moto, "authd").await;
    (moto, Arc::new(store))
}

/// Another replica: its own client and its own memory of the revocation
/// index, on the same table.
async fn replica(moto: &Moto, _: &Arc<dyn Store>) -> Arc<dyn Store> {
    Arc::new(patient_store(moto, "authd").await)
}

authd::store_conformance_tests!(fresh, replica);

#[tokio::test]
async fn raw_items_hold_no_secret_or_handle_in_clear() -> Result<()> {
    let moto = Moto::start().await?;
    let store = moto.store("authd").await?;
    let sealer = Sealer::from_keys(&[("k1", [9; 32])])?;
    let handle = random_handle();
    let refresh_token = "v1.MRrx-refresh-token-of-alice-0123456789";
    let mut session = conformance::session("auth0|alice");
    session.id = hash_handle(&handle);
    session.refresh_token = Some(
        sealer
            .seal(&Secret::new(refresh_token), &session.item_key())
            .await?,
    );
    store.create_session(&session).await?;
    let profile = conformance::profile("auth0|alice");
    let sealed = authd::profile::sealed::seal(&sealer, &profile).await?;
    store.put_profile(&profile.user_id, &sealed).await?;

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
    for personal in ["example.com", "Alice", "alice.png"] {
        assert!(!raw.contains(personal), "the profile is sealed: {personal}");
    }
    // And the sealed value opens with the key, for this item only.
    let stored = store
        .get_session(&session.id, conformance::now())
        .await?
        .expect("stored");
    let sealed = stored.refresh_token.expect("sealed");
    assert_eq!(
        sealer.open(&sealed, &session.item_key()).await?.expose(),
        refresh_token
    );
    Ok(())
}

/// A profile item written in clear by an earlier version (its attributes
/// one by one) is read, and re-sealing replaces it only as it was read.
#[tokio::test]
async fn a_profile_written_in_clear_is_read_then_resealed() -> Result<()> {
    let moto = Moto::start().await?;
    let store = moto.store("authd").await?;
    let n = |v: i64| AttributeValue::N(v.to_string());
    let s = |v: &str| AttributeValue::S(v.to_owned());
    store
        .client()
        .put_item()
        .table_name(store.table())
        .item("pk", s("USER#auth0|legacy"))
        .item("sk", s("PROFILE"))
        .item("user_id", s("auth0|legacy"))
        .item("email", s("legacy@example.com"))
        .item("email_verified", AttributeValue::Bool(true))
        .item("name", s("Lee Gacy"))
        .item("attributes", s("{\"locale\":\"de\"}"))
        .item("created_at", n(10))
        .item("updated_at", n(20))
        .item("fetched_at", n(30))
        .send()
        .await?;
    let Some(StoredProfile::Clear(legacy)) = store.get_profile("auth0|legacy").await? else {
        panic!("the legacy item reads as a profile in clear");
    };
    assert_eq!(legacy.email.as_deref(), Some("legacy@example.com"));
    assert_eq!((legacy.created_at, legacy.fetched_at), (10, 30));
    let old = SealedItem::Profile {
        user_id: "auth0|legacy".to_owned(),
        stored: StoredProfile::Clear(legacy.clone()),
    };
    assert_eq!(store.scan_sealed(None, 10).await?.items, vec![old.clone()]);
    let sealer = Sealer::from_keys(&[("k1", [9; 32])])?;
    let sealed = authd::profile::sealed::seal(&sealer, &legacy).await?;
    let new = SealedItem::Profile {
        user_id: "auth0|legacy".to_owned(),
        stored: StoredProfile::Sealed(sealed.clone()),
    };
    store.replace_sealed(&old, &new).await?;
    assert_eq!(
        store.replace_sealed(&old, &new).await,
        Err(StoreError::Conflict)
    );
    let scan = store
        .client()
        .scan()
        .table_name(store.table())
        .send()
        .await?;
    let raw = format!("{:?}", scan.items());
    assert!(
        !raw.contains("legacy@example.com") && !raw.contains("Gacy"),
        "{raw}"
    );
    assert_eq!(
        store.get_profile("auth0|legacy").await?,
        Some(StoredProfile::Sealed(sealed))
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
                let user = format!("auth0|user-{w}-{i}");
                // A sealed profile's size; its content does not matter here.
                let sealed = SealedSecret(format!("v1.k1.bm9uY2U.{}", "y".repeat(2048)));
                match store.put_profile(&user, &sealed).await {
                    Ok(()) => acknowledged.push((user, sealed)),
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
    for (user, sealed) in &acknowledged {
        assert_eq!(
            store.get_profile(user).await?,
            Some(StoredProfile::Sealed(sealed.clone())),
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
        .put_profile("auth0|alice", &SealedSecret("v1.k1.bm9uY2U.eA".to_owned()))
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

// === the revocation log ===

/// A store on `table` of `moto` laying revocations out in `bucket_seconds`
/// buckets over `shards` shards.
async fn laid_out(moto: &Moto, table: &str, shards: u32, bucket_seconds: i64) -> Arc<dyn Store> {
    let store = patient_store(moto, table).await;
    Arc::new(store.with_revocation_layout(RevocationLayout {
        shards,
        bucket_ms: bucket_seconds * 1000,
        read_concurrency: 8,
        legacy: LegacyRevocations::Read,
    }))
}

/// Every item of `table` whose partition key starts with `prefix`.
async fn raw_items(
    store: &DynamoStore,
    prefix: &str,
) -> Result<Vec<HashMap<String, AttributeValue>>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = store
            .client()
            .scan()
            .table_name(store.table())
            .filter_expression("begins_with(pk, :prefix)")
            .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned()))
            .set_exclusive_start_key(start.take())
            .send()
            .await?;
        items.extend_from_slice(page.items());
        match page.last_evaluated_key() {
            Some(key) if !key.is_empty() => start = Some(key.clone()),
            _ => return Ok(items),
        }
    }
}

fn pk(item: &HashMap<String, AttributeValue>) -> String {
    item["pk"].as_s().expect("pk").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_narrow_buckets_and_shards_is_read_whole_by_any_layout() -> Result<()> {
    let moto = Moto::start().await?;
    // Written in 1 s buckets over 4 shards, read by a replica configured
    // otherwise: readers follow the index, so the layout may change at
    // any time.
    let writer = laid_out(&moto, "narrow", 4, 1).await;
    let reader = laid_out(&moto, "narrow", 16, 3_600).await;
    conformance::revocation_burst(writer, reader, 3_000).await;

    let raw = patient_store(&moto, "narrow").await;
    let revocations: Vec<_> = raw_items(&raw, "REVOCATIONS#")
        .await?
        .into_iter()
        .filter(|item| pk(item) != INDEX_PK)
        .collect();
    assert_eq!(revocations.len(), 3_000, "each written once");
    let partitions: HashSet<String> = revocations.iter().map(pk).collect();
    // 3 s of revocations: 3 or 4 one-second buckets, 4 shards each.
    assert!((12..=16).contains(&partitions.len()), "{partitions:?}");
    for partition in &partitions {
        let shard: u32 = partition.rsplit('#').next().expect("shard").parse()?;
        assert!(shard < 4, "{partition}");
    }
    let index = raw_items(&raw, INDEX_PK).await?;
    assert_eq!(index.len(), partitions.len(), "one index entry a partition");
    assert!(
        raw_items(&raw, "REVOCATIONS")
            .await?
            .iter()
            .all(|i| pk(i) != "REVOCATIONS")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_boundaries_hold_for_narrow_and_wide_buckets() -> Result<()> {
    let moto = Moto::start().await?;
    for (table, shards, bucket_seconds) in [("minute", 3, 60), ("day", 2, 86_400)] {
        let writer = laid_out(&moto, table, shards, bucket_seconds).await;
        let reader = laid_out(&moto, table, 1, 1).await;
        conformance::revocations_across_a_bucket_boundary(writer, reader).await;
    }
    Ok(())
}

/// An item as authd wrote revocations before the sharded log, put with
/// the SDK: every one under the single partition `REVOCATIONS`.
async fn put_old_style(store: &DynamoStore, r: &Revocation) -> Result<()> {
    let kind = serde_json::to_value(r.kind)?;
    store
        .client()
        .put_item()
        .table_name(store.table())
        .item("pk", AttributeValue::S("REVOCATIONS".to_owned()))
        .item("sk", AttributeValue::S(r.sort_key()))
        .item(
            "kind",
            AttributeValue::S(kind.as_str().expect("kind").to_owned()),
        )
        .item("issuer", AttributeValue::S(r.issuer.clone()))
        .item("value", AttributeValue::S(r.value.clone()))
        .item("at_ms", AttributeValue::N(r.at_ms.to_string()))
        .item("expires_at", AttributeValue::N(r.expires_at.to_string()))
        .item("ttl", AttributeValue::N(r.expires_at.to_string()))
        .send()
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_stored_before_the_sharded_log_are_still_honoured() -> Result<()> {
    let (moto, issuer) = (Moto::start().await?, Issuer::start().await?);
    let store = moto.store("authd").await?;
    let now = conformance::now();
    let old = |kind, value: &str, at_ms: i64, expires_at: i64| Revocation {
        kind,
        issuer: issuer.url.clone(),
        value: value.to_owned(),
        at_ms,
        expires_at,
    };
    // Tokens of this subject issued up to 5 s from now are refused.
    let subject = old(
        RevocationKind::Subject,
        "auth0|legacy",
        (now + 5) * 1000,
        now + 600,
    );
    let sid = old(
        RevocationKind::SessionId,
        "sid-legacy",
        now * 1000 - 10,
        now + 600,
    );
    let expired = old(
        RevocationKind::SessionId,
        "sid-gone",
        now * 1000 - 20,
        now - 1,
    );
    for r in [&subject, &sid, &expired] {
        put_old_style(&store, r).await?;
    }
    // A revocation of the new layout is merged with them, in order.
    let new = old(
        RevocationKind::SessionId,
        "sid-new",
        now * 1000 - 5,
        now + 600,
    );
    store.put_revocation(&new).await?;
    assert_eq!(
        store.revocations_since(0, now).await?,
        vec![sid.clone(), new.clone(), subject.clone()]
    );
    assert_eq!(
        store.revocations_since(now * 1000 - 6, now).await?,
        vec![new.clone(), subject.clone()]
    );
    // Once no replica writes them any more and they have expired, the
    // old partition need not be read.
    let without = store.clone().with_revocation_layout(RevocationLayout {
        legacy: LegacyRevocations::Off,
        ..RevocationLayout::default()
    });
    assert_eq!(without.revocations_since(0, now).await?, vec![new.clone()]);

    // During a rolling upgrade, new revocations also go where replicas not
    // yet upgraded read them; upgraded ones see each once.
    let upgrading = store.clone().with_revocation_layout(RevocationLayout {
        legacy: LegacyRevocations::ReadWrite,
        ..RevocationLayout::default()
    });
    let during = old(
        RevocationKind::SessionId,
        "sid-during",
        now * 1000 - 3,
        now + 600,
    );
    upgrading.put_revocation(&during).await?;
    let old_reader = store
        .client()
        .query()
        .table_name(store.table())
        .key_condition_expression("pk = :pk AND sk > :after")
        .expression_attribute_values(":pk", AttributeValue::S("REVOCATIONS".to_owned()))
        .expression_attribute_values(
            ":after",
            AttributeValue::S(format!("{:016}$", now * 1000 - 4)),
        )
        .consistent_read(true)
        .send()
        .await?;
    let old_sees: Vec<_> = old_reader
        .items()
        .iter()
        .map(|i| i["sk"].as_s().expect("sk").clone())
        .collect();
    assert_eq!(old_sees, vec![during.sort_key(), subject.sort_key()]);
    assert_eq!(
        upgrading.revocations_since(now * 1000 - 6, now).await?,
        vec![new.clone(), during.clone(), subject.clone()]
    );
    assert_eq!(
        without.revocations_since(now * 1000 - 6, now).await?,
        vec![new, during],
        "and the sharded log has it too"
    );

    // authd on this table refuses the tokens the old items name.
    let authd = Authd::start_with_store(&issuer.config_entry(&["RS256"]), Arc::new(store)).await?;
    let mut client = authd.client().await?;
    let other = issuer.token(&[("sub", "auth0|someone-else")]).await?;
    client.verify_token(&other, &[]).await?;
    for (token, what) in [
        (
            issuer.token(&[("sub", "auth0|legacy")]).await?,
            "the revoked subject",
        ),
        (
            issuer
                .token(&[("sub", "auth0|other"), ("sid", "sid-legacy")])
                .await?,
            "the revoked session",
        ),
    ] {
        let refused = client.verify_token(&token, &[]).await.expect_err(what);
        assert_eq!(
            refused.reason(),
            Some(ErrorReason::SessionRevoked),
            "{what}"
        );
    }
    Ok(())
}
