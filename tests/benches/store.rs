//! Store operations on the embedded store and on a DynamoDB server (moto on
//! loopback), and GetProfile through gRPC on both; what sealing costs:
//! sealing and opening a profile and a token, GetProfile and CreateSession
//! through the real binary with a local key and with KMS (moto's, data key
//! held), and `authd store reseal` on moto.
//!
//! `tests/run` installs moto; then `cargo build --release -p authd &&
//! cargo bench -p authd-tests --bench store`.

use std::{hint::black_box, sync::Arc, time::Duration};

use authd::store::{Store, conformance};
use authd::{
    reseal::{ResealOptions, reseal},
    secrets::{Sealer, Secret},
};
use authd_proto::pb::{self, create_session_request::Grant, get_profile_request::Subject};
use authd_tests::{Authd, AuthdProcess, Issuer, Moto};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn store_ops(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    store: Arc<dyn Store>,
) {
    let mut group = c.benchmark_group("store");
    let profile = conformance::profile("auth0|bench");
    let sealer = authd::secrets::Sealer::from_keys(&[("k1", [7; 32])]).expect("sealer");
    let sealed = runtime
        .block_on(authd::profile::sealed::seal(&sealer, &profile))
        .expect("seal");
    let user = profile.user_id.as_str();
    runtime
        .block_on(store.put_profile(user, &sealed))
        .expect("seed");
    group.bench_function(BenchmarkId::new("get_profile", name), |b| {
        b.to_async(runtime)
            .iter(|| async { black_box(store.get_profile("auth0|bench").await.expect("get")) })
    });
    group.bench_function(BenchmarkId::new("put_profile", name), |b| {
        b.to_async(runtime)
            .iter(|| async { store.put_profile(user, &sealed).await.expect("put") })
    });
    group.bench_function(BenchmarkId::new("create_session", name), |b| {
        b.to_async(runtime).iter(|| async {
            store
                .create_session(&conformance::session("auth0|bench"))
                .await
                .expect("create")
        })
    });
    let mut session = conformance::session("auth0|bench");
    runtime
        .block_on(store.create_session(&session))
        .expect("seed");
    group.bench_function(BenchmarkId::new("update_session_cas", name), |b| {
        b.to_async(runtime).iter(|| {
            session.version += 1;
            let (store, next) = (Arc::clone(&store), session.clone());
            async move {
                store
                    .update_session(&next, next.version - 1, conformance::now())
                    .await
                    .expect("update")
            }
        })
    });
    group.finish();
}

fn get_profile(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    issuer: &Issuer,
    authd: &Authd,
) {
    let token = runtime
        .block_on(issuer.token(&[("sub", "auth0|alice"), ("scope", "openid profile email")]))
        .expect("token");
    let mut client = runtime.block_on(authd.client()).expect("client");
    let request = || pb::GetProfileRequest {
        subject: Some(Subject::AccessToken(token.clone())),
    };
    // The first call fills the store from userinfo; the bench measures the
    // common case: a fresh stored profile (verify + store read).
    runtime
        .block_on(client.raw().get_profile(request()))
        .expect("first call");
    c.bench_function(&format!("grpc/get_profile_own/{name}"), |b| {
        b.to_async(runtime).iter(|| {
            let mut client = client.clone();
            let request = request();
            async move { black_box(client.raw().get_profile(request).await.expect("profile")) }
        })
    });
}

/// Sealing and opening alone, with a local key.
fn seal_and_open(c: &mut Criterion, runtime: &tokio::runtime::Runtime) {
    let sealer = Sealer::from_keys(&[("k1", [7; 32])]).expect("sealer");
    let mut profile = conformance::profile("auth0|bench");
    profile
        .attributes
        .insert("locale".to_owned(), serde_json::json!("fr-CA"));
    let sealed = runtime
        .block_on(authd::profile::sealed::seal(&sealer, &profile))
        .expect("seal");
    let stored = authd::store::StoredProfile::Sealed(sealed);
    let token = Secret::new("x".repeat(900));
    let mut group = c.benchmark_group("sealing");
    group.bench_function("seal_profile", |b| {
        b.to_async(runtime).iter(|| async {
            black_box(
                authd::profile::sealed::seal(&sealer, &profile)
                    .await
                    .expect("seal"),
            )
        })
    });
    group.bench_function("open_profile", |b| {
        b.to_async(runtime).iter(|| async {
            black_box(
                authd::profile::sealed::open(&sealer, "auth0|bench", stored.clone())
                    .await
                    .expect("open"),
            )
        })
    });
    group.bench_function("seal_token_900_bytes", |b| {
        b.to_async(runtime)
            .iter(|| async { black_box(sealer.seal(&token, "SESSION#x").await.expect("seal")) })
    });
    group.finish();
}

/// GetProfile and CreateSession through the real binary (embedded store),
/// sealing with a local key and with moto's KMS (data key held).
fn sealed_rpcs(c: &mut Criterion, runtime: &tokio::runtime::Runtime, issuer: &Issuer, kms: &Moto) {
    let key = runtime.block_on(kms.kms_key()).expect("kms key");
    let config = issuer.sessions_config("");
    let local = runtime
        .block_on(AuthdProcess::start(&config))
        .expect("authd (cargo build --release -p authd first)");
    let with_kms = runtime
        .block_on(AuthdProcess::start_with_env(&config, &kms.kms_env(&key)))
        .expect("authd with KMS");
    let mut group = c.benchmark_group("sealed_rpc");
    for (name, authd) in [("local_key", &local), ("kms", &with_kms)] {
        let client = runtime.block_on(authd.client()).expect("client");
        let grant = || async {
            let login = issuer.password_login("alice").await.expect("login");
            pb::CreateSessionRequest {
                grant: Some(Grant::ExistingTokens(pb::ExistingTokens {
                    refresh_token: login["refresh_token"].as_str().expect("rt").to_owned(),
                    id_token: login["id_token"].as_str().expect("idt").to_owned(),
                    access_token: login["access_token"].as_str().expect("at").to_owned(),
                    nonce: String::new(),
                })),
                issuer: String::new(),
            }
        };
        // The issuer's login is not timed: only authd's CreateSession (id
        // token checked, profile sealed and stored, session sealed and
        // created).
        group.bench_function(BenchmarkId::new("create_session", name), |b| {
            b.to_async(runtime).iter_custom(|iterations| {
                let mut client = client.clone();
                async move {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iterations {
                        let request = grant().await;
                        let started = std::time::Instant::now();
                        black_box(client.raw().create_session(request).await.expect("session"));
                        spent += started.elapsed();
                    }
                    spent
                }
            })
        });
        let token = runtime
            .block_on(issuer.token(&[("sub", "auth0|alice"), ("scope", "openid profile email")]))
            .expect("token");
        let request = || pb::GetProfileRequest {
            subject: Some(Subject::AccessToken(token.clone())),
        };
        runtime
            .block_on(client.clone().raw().get_profile(request()))
            .expect("first call");
        group.bench_function(BenchmarkId::new("get_profile_own", name), |b| {
            b.to_async(runtime).iter(|| {
                let mut client = client.clone();
                let request = request();
                async move { black_box(client.raw().get_profile(request).await.expect("profile")) }
            })
        });
    }
    group.finish();
}

/// `reseal` over `ITEMS` profiles and `ITEMS` sessions on moto, from a
/// local key to another: items per second.
fn reseal_on_moto(c: &mut Criterion, runtime: &tokio::runtime::Runtime, moto: &Moto) {
    const ITEMS: usize = 100;
    let old = Sealer::from_keys(&[("k1", [1; 32])]).expect("k1");
    let new = Sealer::from_keys(&[("k2", [2; 32]), ("k1", [1; 32])]).expect("k2");
    let mut group = c.benchmark_group("reseal");
    group.sample_size(10);
    group.throughput(criterion::Throughput::Elements(2 * ITEMS as u64));
    let mut round = 0;
    group.bench_function("dynamodb-moto", |b| {
        b.to_async(runtime).iter_custom(|iterations| {
            round += 1;
            let table = format!("authd-reseal-{round}");
            let (old, new) = (&old, &new);
            async move {
                let store = moto.store(&table).await.expect("table");
                let mut spent = Duration::ZERO;
                for _ in 0..iterations {
                    for i in 0..ITEMS {
                        let profile = conformance::profile(&format!("auth0|r{i}"));
                        let sealed = authd::profile::sealed::seal(old, &profile)
                            .await
                            .expect("seal");
                        store
                            .put_profile(&profile.user_id, &sealed)
                            .await
                            .expect("put");
                        let mut session = conformance::session(&profile.user_id);
                        let rt = Secret::new("refresh-token");
                        session.refresh_token =
                            Some(old.seal(&rt, &session.item_key()).await.expect("seal"));
                        store.create_session(&session).await.expect("create");
                    }
                    let options = ResealOptions {
                        items_per_second: 1_000_000,
                        ..ResealOptions::default()
                    };
                    let started = std::time::Instant::now();
                    let report = reseal(&store, new, &options, |_, _| {})
                        .await
                        .expect("reseal");
                    spent += started.elapsed();
                    assert_eq!(report.census.total("k1"), 0);
                    // Back under k1 for the next iteration: delete and re-seed.
                    for i in 0..ITEMS {
                        store
                            .delete_profile(&format!("auth0|r{i}"))
                            .await
                            .expect("delete");
                    }
                    let page = store.scan_sealed(None, 10_000).await.expect("scan");
                    for item in page.items {
                        if let authd::store::SealedItem::Session(s) = item {
                            store.delete_session(&s.id).await.expect("delete");
                        }
                    }
                }
                spent
            }
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded: Arc<dyn Store> =
        Arc::new(authd::store::embedded::EmbeddedStore::open(dir.path()).expect("open"));
    store_ops(c, &runtime, "embedded", Arc::clone(&embedded));

    let moto = runtime
        .block_on(Moto::start())
        .expect("moto (run tests/run once to install it)");
    let dynamo: Arc<dyn Store> =
        Arc::new(runtime.block_on(moto.store("authd-bench")).expect("table"));
    store_ops(c, &runtime, "dynamodb-moto", Arc::clone(&dynamo));

    let issuer = runtime.block_on(Issuer::start()).expect("issuer");
    seal_and_open(c, &runtime);
    sealed_rpcs(c, &runtime, &issuer, &moto);
    reseal_on_moto(c, &runtime, &moto);
    let toml = issuer.config_entry(&["RS256"]);
    for (name, store) in [("embedded", embedded), ("dynamodb-moto", dynamo)] {
        let authd = runtime
            .block_on(Authd::start_with_store(&toml, store))
            .expect("authd");
        get_profile(c, &runtime, name, &issuer, &authd);
        runtime.block_on(authd.stop()).expect("stop");
    }
}

criterion_group! {
    name = store;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1)).sample_size(50);
    targets = benches
}
criterion_main!(store);
