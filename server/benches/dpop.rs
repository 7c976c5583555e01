//! VerifyToken with a DPoP proof: a cached RS256 token verified with a fresh
//! ES256 proof on every call, beside the same calls without a proof and
//! beside the proof's checks alone (one ES256 verification, its parsing and
//! the thumbprint). The composed limit is the cached call plus the proof
//! check; the pipeline should reach at least 0.9 of it.
//!
//! `cargo bench -p authd --bench dpop`

use std::{collections::HashMap, hint::black_box, sync::Arc, time::Duration};

use authd::{
    Config, Verifier, VerifyRequest,
    config::{IssuerConfig, JwksConfig},
    dangerous::SigningKey,
    jwks::{Algorithm, IssuerKeys, Jwk, StaticKeys},
    verify::IssuerPolicy,
};
use authd_jose::dpop::{ProofPolicy, ProofRequest, check_proof};
use aws_lc_rs::digest;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

const ISS: &str = "https://tenant.example.auth0.com/";
const AUD: &str = "https://api.example.com";
const HTU: &str = "https://api.example.com/orders";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

struct Proofs {
    key: SigningKey,
    header: serde_json::Value,
    ath: String,
    next: u64,
}

impl Proofs {
    fn new(token: &str) -> Proofs {
        let key = SigningKey::generate(Algorithm::ES256, "client").expect("key");
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk()});
        let ath =
            URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
        Proofs {
            key,
            header,
            ath,
            next: 0,
        }
    }

    fn jkt(&self) -> String {
        let jwk: Jwk = serde_json::from_value(self.key.public_jwk()).expect("jwk");
        jwk.thumbprint().expect("thumbprint")
    }

    fn fresh(&mut self) -> String {
        self.next += 1;
        let claims = json!({
            "jti": format!("bench-{}", self.next),
            "htm": "GET",
            "htu": HTU,
            "iat": now(),
            "ath": self.ath,
        });
        self.key.sign_with_header(&self.header, &claims)
    }
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let issuer_key = SigningKey::generate(Algorithm::RS256, "rsa-1").expect("key");
    let jwk: Jwk = serde_json::from_value(issuer_key.public_jwk()).expect("jwk");
    let issuer = IssuerConfig::new(ISS.to_owned(), vec![AUD.to_owned()]);
    let keys = IssuerKeys::new(
        ISS.into(),
        vec![Algorithm::RS256],
        Box::new(StaticKeys(vec![jwk])),
        JwksConfig::default(),
    );
    runtime.block_on(keys.refresh_now(Duration::from_secs(1)));
    let mut config = Config::default();
    config.verify.cache_admit_after = 1;
    let verifier = Verifier::new(
        HashMap::from([(
            ISS.to_owned(),
            IssuerPolicy::new(&issuer, Arc::clone(&keys)),
        )]),
        &config,
    );

    let claims = |cnf: Option<&str>| {
        let mut claims = json!({
            "iss": ISS, "sub": "auth0|alice", "aud": AUD, "azp": "client-1",
            "iat": now(), "exp": now() + 3600, "scope": "read:orders",
        });
        if let Some(jkt) = cnf {
            claims["cnf"] = json!({"jkt": jkt});
        }
        claims
    };
    let bearer = issuer_key.sign(&claims(None));
    // The bound token's proofs are made for it: its ath depends on it.
    let mut proofs = Proofs::new("placeholder");
    let bound = issuer_key.sign(&claims(Some(&proofs.jkt())));
    proofs.ath = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, bound.as_bytes()).as_ref());

    let request = |token: &str, proof: Option<String>| VerifyRequest {
        token: format!("DPoP {token}"),
        required_scopes: vec!["read:orders".to_owned()],
        dpop_proof: proof.clone(),
        http_method: "GET".to_owned(),
        http_uri: HTU.to_owned(),
        ..VerifyRequest::default()
    };
    // Warm the cache with both tokens.
    let plain = VerifyRequest {
        token: format!("Bearer {bearer}"),
        required_scopes: vec!["read:orders".to_owned()],
        ..VerifyRequest::default()
    };
    runtime.block_on(async {
        verifier.verify(&plain).await.expect("bearer");
        verifier
            .verify(&request(&bound, Some(proofs.fresh())))
            .await
            .expect("bound");
    });
    assert_eq!(verifier.cached_entries(), 2);

    let mut group = c.benchmark_group("dpop");
    group.throughput(Throughput::Elements(1));
    group.bench_function("cached_rs256_no_proof", |b| {
        b.to_async(&runtime).iter(|| {
            let (verifier, plain) = (&verifier, &plain);
            async move { black_box(verifier.verify(plain).await.expect("valid")) }
        })
    });
    let one = proofs.fresh();
    let policy = ProofPolicy {
        algorithms: &[Algorithm::ES256],
        max_age_seconds: 60,
        leeway_seconds: 5,
    };
    let proof_request = ProofRequest {
        method: "GET",
        uri: HTU,
        access_token: &bound,
    };
    group.bench_function("es256_proof_check_only", |b| {
        b.iter(|| {
            black_box(
                check_proof(black_box(&one), &proof_request, &policy, now() as f64)
                    .expect("valid proof"),
            )
        })
    });
    group.bench_function("cached_rs256_fresh_es256_proof", |b| {
        b.to_async(&runtime).iter_batched(
            || request(&bound, Some(proofs.fresh())),
            |request| {
                let verifier = &verifier;
                async move { black_box(verifier.verify(&request).await.expect("valid")) }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = dpop;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(dpop);
