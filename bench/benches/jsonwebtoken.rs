//! The reference figure: the `jsonwebtoken` crate (aws-lc-rs
//! backend) decoding Auth0-shaped tokens on one thread — signature, `exp`,
//! `iss` and `aud` checked, claims deserialised — beside its signature check
//! alone. Tokens and keys come from `authd::dangerous::SigningKey`.
//!
//! `taskset -c 0 cargo bench -p authd-bench --bench jsonwebtoken`

use std::{hint::black_box, time::Duration};

use authd::{dangerous::SigningKey, jwks::Algorithm};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jsonwebtoken::{DecodingKey, Validation, jwk::Jwk};
use serde::Deserialize;
use serde_json::json;

const ISS: &str = "https://tenant.example.auth0.com/";
const AUD: &str = "https://api.example.com";

/// What a service reads from the token.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Claims {
    sub: String,
    scope: String,
    permissions: Vec<String>,
}

fn token(key: &SigningKey, n: u64) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    key.sign(&json!({
        "iss": ISS,
        "sub": format!("auth0|user-{n}"),
        "aud": [AUD, format!("{ISS}userinfo")],
        "iat": now,
        "exp": now + 3600,
        "azp": "client-1",
        "scope": "openid profile read:orders write:orders",
        "permissions": ["read:orders", "write:orders"],
    }))
}

fn bench_alg(c: &mut Criterion, alg: Algorithm, jwt_alg: jsonwebtoken::Algorithm) {
    let key = SigningKey::generate(alg, "bench-1").expect("key");
    let jwk: Jwk = serde_json::from_value(key.public_jwk()).expect("jwk");
    let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key");
    let tokens: Vec<String> = (0..1024).map(|n| token(&key, n)).collect();
    let mut validation = Validation::new(jwt_alg);
    validation.set_issuer(&[ISS]);
    validation.set_audience(&[AUD]);

    let mut group = c.benchmark_group(format!("jsonwebtoken-{}", alg.as_str()));
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("decode", |b| {
        b.iter(|| {
            i = (i + 1) % tokens.len();
            black_box(
                jsonwebtoken::decode::<Claims>(black_box(&tokens[i]), &decoding, &validation)
                    .expect("valid"),
            )
        })
    });
    let mut i = 0usize;
    group.bench_function("signature_only", |b| {
        b.iter(|| {
            i = (i + 1) % tokens.len();
            let token = &tokens[i];
            let dot = token.rfind('.').expect("three segments");
            assert!(
                jsonwebtoken::crypto::verify(
                    black_box(&token[dot + 1..]),
                    black_box(&token.as_bytes()[..dot]),
                    &decoding,
                    jwt_alg,
                )
                .expect("verifies")
            );
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_alg(c, Algorithm::RS256, jsonwebtoken::Algorithm::RS256);
    bench_alg(c, Algorithm::ES256, jsonwebtoken::Algorithm::ES256);
}

criterion_group! {
    name = jsonwebtoken_decode;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(jsonwebtoken_decode);
