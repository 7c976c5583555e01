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
    /// A token bound to `dpop`'s key, and that key.
    bound: String,
    dpop: Proofs,
}

const ORIGIN: &str = "https://orders.bench.test";

/// A client's DPoP key making a fresh proof per request for `ORIGIN/orders`.
struct Proofs {
    key: authd::dangerous::SigningKey,
    next: u64,
}

impl Proofs {
    fn new() -> Proofs {
        Proofs {
            key: authd::dangerous::SigningKey::generate(authd::jwks::Algorithm::ES256, "dpop")
                .expect("key"),
            next: 0,
        }
    }

    fn jkt(&self) -> String {
        let jwk: authd::jwks::Jwk = serde_json::from_value(self.key.public_jwk()).expect("jwk");
        jwk.thumbprint().expect("thumbprint")
    }

    fn fresh(&mut self, token: &str) -> String {
        use base64::Engine as _;
        self.next += 1;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let ath = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref(),
        );
        let header =
            serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.key.public_jwk()});
        let claims = serde_json::json!({
            "jti": format!("bench-{}", self.next), "htm": "GET",
            "htu": format!("{ORIGIN}/orders"), "iat": now, "ath": ath,
        });
        self.key.sign_with_header(&header, &claims)
    }
}

fn dpop_request(token: &str, proof: String) -> Request<()> {
    Request::builder()
        .uri("/orders")
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .body(())
        .expect("request")
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
    let dpop = Proofs::new();
    let bound = issuer.mint_dpop_bound("auth0|bench", &["read:orders"], &dpop.jkt(), 3600);
    Live {
        _issuer: issuer,
        _store: dir,
        addr,
        token,
        watch_token,
        bound,
        dpop,
    }
}

fn middleware(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut live = runtime.block_on(start_authd());
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
    let http_dpop_cached = HttpAuthLayer::new(
        cached.clone(),
        ScopeRules::new().default_scopes(["read:orders"]),
    )
    .dpop_origin(ORIGIN)
    .layer(service_fn(protected::<(), String>));
    let http_dpop = HttpAuthLayer::new(
        client.clone(),
        ScopeRules::new().default_scopes(["read:orders"]),
    )
    .dpop_origin(ORIGIN)
    .layer(service_fn(protected::<(), String>));
    // Warm the cached layer with the bound token.
    let warm = live.dpop.fresh(&live.bound);
    let warmed = runtime
        .block_on(
            http_dpop_cached
                .clone()
                .oneshot(dpop_request(&live.bound, warm)),
        )
        .map(|r| r.status());
    assert_eq!(warmed, Ok(StatusCode::OK));
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
    // A DPoP-bound token with a fresh ES256 proof per request, through the
    // HTTP layer: asking authd each time, and on a warm cache (the layer
    // checks the proof, its replay included, before the cached verdict).
    let bound = live.bound.clone();
    let mut proofs = live.dpop;
    group.bench_function("http_layer_dpop", |b| {
        b.to_async(&runtime).iter_batched(
            || dpop_request(&bound, proofs.fresh(&bound)),
            |request| async {
                let response = http_dpop.clone().oneshot(request).await;
                assert_eq!(response.map(|r| r.status()), Ok(StatusCode::OK));
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("http_layer_dpop_cache_hit", |b| {
        b.to_async(&runtime).iter_batched(
            || dpop_request(&bound, proofs.fresh(&bound)),
            |request| async {
                let response = http_dpop_cached.clone().oneshot(request).await;
                assert_eq!(response.map(|r| r.status()), Ok(StatusCode::OK));
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, middleware);
criterion_main!(benches);
