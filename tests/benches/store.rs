//! Store operations on the embedded store and on a DynamoDB server (moto on
//! loopback), and GetProfile through gRPC on both.
//!
//! `tests/run` installs moto; then `cargo bench -p authd-tests --bench store`.

use std::{hint::black_box, sync::Arc, time::Duration};

use authd::store::{Store, conformance};
use authd_proto::pb::{self, get_profile_request::Subject};
use authd_tests::{Authd, Issuer, Moto};
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
