//! The in-process VerifyToken path beside its ceiling, the signature check
//! alone, for RS256-2048 and ES256.
//!
//! `cargo bench -p authd --bench verify`

use std::{collections::HashMap, hint::black_box, sync::Arc, time::Duration};

use authd::{
    Config, Verifier, VerifyRequest,
    config::{IssuerConfig, JwksConfig},
    dangerous::SigningKey,
    jwks::{Algorithm, IssuerKeys, Jwk, StaticKeys, VerifyingKey},
    verify::IssuerPolicy,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

const ISS: &str = "https://tenant.example.auth0.com/";
const AUD: &str = "https://api.example.com";

fn auth0_claims(n: u64) -> serde_json::Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    json!({
        "iss": ISS,
        "sub": format!("auth0|user-{n}"),
        "aud": [AUD, format!("{ISS}userinfo")],
        "iat": now,
        "exp": now + 3600,
        "azp": "client-1",
        "scope": "openid profile read:orders write:orders",
        "permissions": ["read:orders", "write:orders"],
    })
}

/// A verifier of `key`'s tokens with `config`.
fn verifier(
    key: &SigningKey,
    alg: Algorithm,
    runtime: &tokio::runtime::Runtime,
    config: &Config,
) -> Verifier {
    let jwk: Jwk = serde_json::from_value(key.public_jwk()).expect("jwk");
    let issuer = IssuerConfig {
        algorithms: vec![alg],
        ..IssuerConfig::new(ISS.to_owned(), vec![AUD.to_owned()])
    };
    let keys = IssuerKeys::new(
        ISS.into(),
        vec![alg],
        Box::new(StaticKeys(vec![jwk])),
        JwksConfig::default(),
    );
    runtime.block_on(keys.refresh_now(Duration::from_secs(1)));
    let policies = HashMap::from([(
        ISS.to_owned(),
        IssuerPolicy::new(&issuer, Arc::clone(&keys)),
    )]);
    Verifier::new(policies, config)
}

fn bench_alg(c: &mut Criterion, alg: Algorithm) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let key = SigningKey::generate(alg, "bench-1").expect("key");
    let verifier = verifier(&key, alg, &runtime, &Config::default());
    // New tokens are measured with the cache off, so each one pays the
    // whole pipeline however many times criterion cycles through them.
    let mut config = Config::default();
    config.verify.cache_max_entries = 0;
    let uncached = self::verifier(&key, alg, &runtime, &config);
    // A full cache far smaller than the tokens cycled: every call misses,
    // inserts and evicts, as when a busy server sees new tokens all day.
    config.verify.cache_max_entries = 64;
    let full_cache = self::verifier(&key, alg, &runtime, &config);
    let tokens: Vec<String> = (0..1024).map(|n| key.sign(&auth0_claims(n))).collect();
    let prepared = VerifyingKey::from_jwk(
        &serde_json::from_value(key.public_jwk()).expect("jwk"),
        &[alg],
    )
    .expect("key");
    let split: Vec<(usize, Vec<u8>)> = tokens
        .iter()
        .map(|t| {
            let dot = t.rfind('.').expect("three segments");
            let sig = base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                &t[dot + 1..],
            )
            .expect("b64");
            (dot, sig)
        })
        .collect();

    let mut group = c.benchmark_group(alg.as_str());
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("signature_only", |b| {
        b.iter(|| {
            i = (i + 1) % tokens.len();
            let (dot, sig) = &split[i];
            assert!(prepared.verify(
                alg,
                black_box(&tokens[i].as_bytes()[..*dot]),
                black_box(sig)
            ));
        })
    });
    for (name, verifier) in [
        ("verify_new_token", &uncached),
        ("verify_new_token_cache_full", &full_cache),
    ] {
        let mut i = 0usize;
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| {
                i = (i + 1) % tokens.len();
                let request = VerifyRequest {
                    token: tokens[i].clone(),
                    required_scopes: vec!["read:orders".to_owned()],
                    audience: None,
                    ..VerifyRequest::default()
                };
                async move { black_box(verifier.verify(&request).await.expect("valid")) }
            })
        });
    }
    let request = VerifyRequest {
        token: tokens[0].clone(),
        required_scopes: vec!["read:orders".to_owned()],
        audience: None,
        ..VerifyRequest::default()
    };
    group.bench_function("verify_repeated_token", |b| {
        b.to_async(&runtime).iter(|| {
            let (verifier, request) = (&verifier, &request);
            async move { black_box(verifier.verify(request).await.expect("valid")) }
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_alg(c, Algorithm::RS256);
    bench_alg(c, Algorithm::ES256);
}

criterion_group! {
    name = verify;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(verify);
