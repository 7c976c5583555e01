//! What the middleware adds to a protected request: a direct `verify_token`
//! call beside the same verification through the tonic layer and the HTTP
//! layer (tower `oneshot`, in process: no network for the protected service),
//! against a live authd on loopback (in this process, development issuer,
//! embedded store). The verification cache is off except in the `*_cache_hit`
//! benches: there it is on, as by default, its WatchRevocations stream live
//! and the token warm, so no call reaches authd; the difference between the
//! layers' hits and the direct hit is the layers' own cost.
//!
//! `taskset -c 1 cargo bench -p authd-client --features tonic-middleware,axum --bench middleware`

use std::{convert::Infallible, future::pending, net::SocketAddr, sync::Arc, time::Duration};

use authd::{App, Config, dangerous::DevIssuer, store::embedded::EmbeddedStore};
use authd_client::{
    AuthClient, CacheConfig, CacheState, RetryPolicy, Secret, VerifiedToken,
    middleware::{ScopeRules, grpc::GrpcAuthLayer, http::HttpAuthLayer},
};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, StatusCode};
use tower::{Layer, ServiceExt, service_fn};

const AUDIENCE: &str = "https://api.bench.test";
const GRPC_PATH: &str = "/shop.v1.Orders/List";

/// The protected service: 200 when the layer put a verified token in.
async fn protected<B, R: Default>(request: Request<B>) -> Result<Response<R>, Infallible> {
    let mut response = Response::new(R::default());
    if request.extensions().get::<VerifiedToken>().is_none() {
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    }
    Ok(response)
}

fn request(path: &str, token: &str) -> Request<()> {
    Request::builder()
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .expect("request")
}

struct Live {
    _issuer: DevIssuer,
    _store: tempfile::TempDir,
    addr: SocketAddr,
    token: String,
    watch_token: String,
}

async fn start_authd() -> Live {
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let issuer = DevIssuer::start(loopback, AUDIENCE).await.expect("issuer");
    let toml = format!(
        "[[issuers]]\nissuer = \"{}\"\naudiences = [\"{AUDIENCE}\"]\n[log]\nfilter = \"error\"\n",
        issuer.issuer()
    );
    let config = Config::from_toml(&toml).expect("config");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("store");
    let app = App::with_store(&config, Arc::new(store))
        .await
        .expect("app");
    let listener = tokio::net::TcpListener::bind(loopback).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(authd::run(listener, app, Duration::from_secs(1), pending()));
    let token = issuer.mint("auth0|bench", &["read:orders"], &[], 3600);
    let watch_token = issuer.mint("bench@clients", &[], &["revocations:watch"], 3600);
    Live {
        _issuer: issuer,
        _store: dir,
        addr,
        token,
        watch_token,
    }
}

fn middleware(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let live = runtime.block_on(start_authd());
    let builder = AuthClient::builder()
        .endpoint(format!("http://{}", live.addr))
        .retry(RetryPolicy::none());
    let (client, cached) = runtime.block_on(async {
        let client = builder.clone().no_cache().connect().await.expect("connect");
        let mut cached = builder
            // Warm for the whole run: no entry ends during it.
            .cache(CacheConfig::default().max_ttl(Duration::from_secs(3600)))
            .watch_token(Secret::new(live.watch_token.clone()))
            .connect()
            .await
            .expect("connect");
        while cached.cache_state() != CacheState::Answering {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Warm: the benches below are hits.
        cached
            .verify_token(&live.token, &["read:orders"])
            .await
            .expect("verified");
        (client, cached)
    });
    let rules = || ScopeRules::new().default_scopes(["read:orders"]);
    let grpc = GrpcAuthLayer::new(client.clone(), rules())
        .layer(service_fn(protected::<(), tonic::body::Body>));
    let http =
        HttpAuthLayer::new(client.clone(), rules()).layer(service_fn(protected::<(), String>));
    let http_cached_client = cached.clone();
    let grpc_cached = GrpcAuthLayer::new(cached.clone(), rules())
        .layer(service_fn(protected::<(), tonic::body::Body>));
    let http_cached =
        HttpAuthLayer::new(cached, rules()).layer(service_fn(protected::<(), String>));
    let token = live.token.as_str();

    let mut group = c.benchmark_group("protected_request");
    group.bench_function("direct_verify_token", |b| {
        b.to_async(&runtime).iter(|| {
            let mut client = client.clone();
            async move {
                client
                    .verify_token(token, &["read:orders"])
                    .await
                    .expect("verified")
            }
        })
    });
    group.bench_function("tonic_layer", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = grpc.clone().oneshot(request(GRPC_PATH, token)).await;
            assert_eq!(response.map(|r| r.status()), Ok(StatusCode::OK));
        })
    });
    group.bench_function("http_layer", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = http.clone().oneshot(request("/orders", token)).await;
            assert_eq!(response.map(|r| r.status()), Ok(StatusCode::OK));
        })
    });
    group.bench_function("direct_verify_token_cache_hit", |b| {
        b.to_async(&runtime).iter(|| {
            let mut cached = http_cached_client.clone();
            async move {
                cached
                    .verify_token(token, &["read:orders"])
                    .await
                    .expect("verified")
            }
        })
    });
    group.bench_function("tonic_layer_cache_hit", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = grpc_cached.clone().oneshot(request(GRPC_PATH, token)).await;
            assert_eq!(response.map(|r| r.status()), Ok(StatusCode::OK));
        })
    });
    group.bench_function("http_layer_cache_hit", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = http_cached.clone().oneshot(request("/orders", token)).await;
            assert_eq!(response.map(|r| r.status()), Ok(StatusCode::OK));
        })
    });
    group.finish();
}

criterion_group!(benches, middleware);
criterion_main!(benches);
