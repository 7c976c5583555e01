//! The revocation set under a storm: what one more revocation costs as the
//! set grows (a logout storm adds them one at a time), what VerifyToken's
//! check costs beside them, and 10,000 session revocations applied one by
//! one (10,000 logouts in a minute).
//!
//! `cargo bench -p authd --bench revocations`

use std::{hint::black_box, time::Duration};

use authd::{
    revocation::{Revocations, SignedIdentity, revocation},
    store::RevocationKind,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const ISSUER: &str = "https://tenant.example.auth0.com/";

/// Logouts of `n` sessions: one `sid` revocation each.
fn logouts(from: usize, n: usize) -> Vec<authd::store::Revocation> {
    (from..from + n)
        .map(|i| {
            revocation(
                RevocationKind::SessionId,
                ISSUER,
                &format!("sid-{i:08}"),
                i64::MAX / 2,
            )
        })
        .collect()
}

fn holding(n: usize) -> std::sync::Arc<Revocations> {
    let set = Revocations::new();
    set.apply(&logouts(0, n));
    set
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("revocations");
    for held in [1_000, 10_000, 50_000] {
        let set = holding(held);
        let mut next = held;
        group.bench_function(BenchmarkId::new("apply_one", held), |b| {
            b.iter(|| {
                next += 1;
                set.apply(&logouts(next, 1));
            })
        });
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhdXRoMHxhbGljZSJ9.c2lnbmF0dXJl";
        let id = SignedIdentity {
            issuer: ISSUER,
            subject: "auth0|alice",
            session_id: Some("sid-live"),
            issued_at: Some(1_800_000_000),
            token,
        };
        group.bench_function(BenchmarkId::new("check", held), |b| {
            b.iter(|| black_box(set.check(black_box(&id))).is_ok())
        });
    }
    group.sample_size(10);
    group.bench_function("storm_10000_one_by_one", |b| {
        b.iter_custom(|iterations| {
            let mut spent = Duration::ZERO;
            for _ in 0..iterations {
                let set = Revocations::new();
                let storm = logouts(0, 10_000);
                let started = std::time::Instant::now();
                for r in &storm {
                    set.apply(std::slice::from_ref(r));
                }
                spent += started.elapsed();
            }
            spent
        })
    });
    group.finish();
}

criterion_group! {
    name = revocations;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    targets = benches
}
criterion_main!(revocations);
