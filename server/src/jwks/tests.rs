//! Key set behaviour under rotation, outages and floods, with a scripted
//! fetcher and paused time.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};
use std::time::Duration;

use super::*;
use crate::dangerous::SigningKey;

/// A fetcher that answers what the test scripts and counts its calls.
pub(crate) struct Scripted {
    answer: Mutex<Option<Vec<Jwk>>>,
    delay: Mutex<Duration>,
    calls: AtomicUsize,
}

impl Scripted {
    pub(crate) fn new(keys: &[&SigningKey]) -> Arc<Self> {
        let scripted = Arc::new(Scripted {
            answer: Mutex::new(None),
            delay: Mutex::new(Duration::ZERO),
            calls: AtomicUsize::new(0),
        });
        scripted.serve(keys);
        scripted
    }

    pub(crate) fn serve(&self, keys: &[&SigningKey]) {
        let jwks = keys
            .iter()
            .map(|k| serde_json::from_value(k.public_jwk()).expect("jwk"))
            .collect();
        *self.answer.lock().expect("lock") = Some(jwks);
    }

    fn go_down(&self) {
        *self.answer.lock().expect("lock") = None;
    }

    fn set_delay(&self, delay: Duration) {
        *self.delay.lock().expect("lock") = delay;
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// Lets an `Arc<Scripted>` be handed to `IssuerKeys` while the test keeps one.
pub(crate) struct Shared(pub(crate) Arc<Scripted>);

impl FetchKeys for Shared {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<Jwk>, FetchError>> {
        Box::pin(async move {
            self.0.calls.fetch_add(1, Ordering::SeqCst);
            let delay = *self.0.delay.lock().expect("lock");
            tokio::time::sleep(delay).await;
            let answer = self.0.answer.lock().expect("lock").clone();
            answer.ok_or(FetchError::Status {
                url: "scripted".to_owned(),
                status: 503,
            })
        })
    }
}

fn rsa(kid: &str) -> SigningKey {
    SigningKey::generate(Algorithm::RS256, kid).expect("key")
}

fn keys_for(scripted: &Arc<Scripted>, config: JwksConfig) -> Arc<IssuerKeys> {
    IssuerKeys::new(
        "https://issuer.test/".into(),
        vec![Algorithm::RS256],
        Box::new(Shared(Arc::clone(scripted))),
        config,
    )
}

#[tokio::test(start_paused = true)]
async fn first_lookup_fetches_and_later_ones_do_not() {
    let k1 = rsa("k1");
    let scripted = Scripted::new(&[&k1]);
    let keys = keys_for(&scripted, JwksConfig::default());
    assert_eq!(keys.get("k1").await.expect("found").kid(), "k1");
    for _ in 0..100 {
        keys.get("k1").await.expect("found");
    }
    assert_eq!(scripted.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn unknown_kid_refetches_once_then_is_remembered() {
    let k1 = rsa("k1");
    let scripted = Scripted::new(&[&k1]);
    let keys = keys_for(&scripted, JwksConfig::default());
    keys.get("k1").await.expect("found");

    // Within the refetch interval: refused without a fetch.
    let err = keys.get("junk").await.expect_err("unknown");
    assert_eq!(err.reason(), crate::Reason::UnknownKey);
    assert_eq!(scripted.calls(), 1);

    // After it: one refetch, then the kid is remembered as unknown.
    tokio::time::advance(Duration::from_secs(11)).await;
    keys.get("junk").await.expect_err("still unknown");
    assert_eq!(scripted.calls(), 2);
    tokio::time::advance(Duration::from_secs(11)).await;
    keys.get("junk").await.expect_err("remembered");
    assert_eq!(scripted.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn rotated_key_is_found_without_restart() {
    let (k1, k2) = (rsa("k1"), rsa("k2"));
    let scripted = Scripted::new(&[&k1]);
    let keys = keys_for(&scripted, JwksConfig::default());
    keys.get("k1").await.expect("found");
    scripted.serve(&[&k1, &k2]);
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(keys.get("k2").await.expect("rotated in").kid(), "k2");
    assert_eq!(scripted.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrent_unknown_kids_share_one_fetch() {
    let (k1, k2) = (rsa("k1"), rsa("k2"));
    let scripted = Scripted::new(&[&k1]);
    let keys = keys_for(&scripted, JwksConfig::default());
    keys.get("k1").await.expect("found");
    scripted.serve(&[&k1, &k2]);
    scripted.set_delay(Duration::from_millis(200));
    tokio::time::advance(Duration::from_secs(11)).await;
    let lookups = (0..50).map(|_| {
        let keys = Arc::clone(&keys);
        tokio::spawn(async move { keys.get("k2").await.map(|k| k.kid().to_owned()) })
    });
    for lookup in futures_util::future::join_all(lookups).await {
        assert_eq!(lookup.expect("task").expect("found"), "k2");
    }
    assert_eq!(scripted.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn flood_of_junk_kids_costs_at_most_one_fetch_per_interval() {
    let k1 = rsa("k1");
    let scripted = Scripted::new(&[&k1]);
    let keys = keys_for(&scripted, JwksConfig::default());
    keys.get("k1").await.expect("found");
    for round in 0..5 {
        for i in 0..2_000 {
            keys.get(&format!("junk-{round}-{i}"))
                .await
                .expect_err("junk");
        }
        tokio::time::advance(Duration::from_secs(11)).await;
    }
    // One start-up fetch plus at most one per elapsed interval.
    assert!(scripted.calls() <= 6, "{} fetches", scripted.calls());
}

#[tokio::test(start_paused = true)]
async fn issuer_down_keeps_known_keys_and_refuses_new_kids_as_unavailable() {
    let k1 = rsa("k1");
    let scripted = Scripted::new(&[&k1]);
    let keys = keys_for(&scripted, JwksConfig::default());
    keys.get("k1").await.expect("found");
    scripted.go_down();
    tokio::time::advance(Duration::from_secs(11)).await;
    let err = keys.get("never-seen").await.expect_err("cannot know");
    assert_eq!(err.reason(), crate::Reason::KeysUnavailable);
    keys.get("k1").await.expect("cached key still serves");
}

#[tokio::test(start_paused = true)]
async fn stale_keys_stop_serving_after_the_bound() {
    let k1 = rsa("k1");
    let scripted = Scripted::new(&[&k1]);
    let config = JwksConfig {
        max_stale_seconds: 600,
        ..JwksConfig::default()
    };
    let keys = keys_for(&scripted, config);
    keys.get("k1").await.expect("found");
    scripted.go_down();
    tokio::time::advance(Duration::from_secs(599)).await;
    keys.get("k1").await.expect("within the bound");
    tokio::time::advance(Duration::from_secs(2)).await;
    let err = keys.get("k1").await.expect_err("too stale");
    assert_eq!(err.reason(), crate::Reason::KeysUnavailable);
    assert!(!keys.has_usable_keys());
}

#[tokio::test(start_paused = true)]
async fn a_request_waits_no_longer_than_the_bound() {
    let k1 = rsa("k1");
    let scripted = Scripted::new(&[&k1]);
    scripted.set_delay(Duration::from_secs(3));
    let keys = keys_for(&scripted, JwksConfig::default());
    let started = tokio::time::Instant::now();
    let err = keys.get("k1").await.expect_err("fetch too slow");
    assert_eq!(err.reason(), crate::Reason::KeysUnavailable);
    assert_eq!(started.elapsed(), Duration::from_millis(1_000));
    // The fetch went on without the request and its keys arrive.
    tokio::time::advance(Duration::from_secs(3)).await;
    tokio::task::yield_now().await;
    keys.get("k1").await.expect("fetched in the background");
    assert_eq!(scripted.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn background_refresher_picks_up_new_keys_and_backs_off_on_failure() {
    let (k1, k2) = (rsa("k1"), rsa("k2"));
    let scripted = Scripted::new(&[&k1]);
    let keys = keys_for(&scripted, JwksConfig::default());
    assert!(keys.refresh_now(Duration::from_secs(5)).await);
    let refresher = keys.spawn_refresher();
    scripted.serve(&[&k2]);
    tokio::time::sleep(Duration::from_secs(301)).await;
    assert_eq!(scripted.calls(), 2);
    assert!(keys.lookup("k2").is_some(), "refreshed without a lookup");

    scripted.go_down();
    tokio::time::sleep(Duration::from_secs(300)).await; // refresh fails
    tokio::time::sleep(Duration::from_secs(11)).await; // retried after min interval
    assert_eq!(scripted.calls(), 4);
    refresher.abort();
}

#[test]
fn unusable_jwks_are_skipped() {
    let es = SigningKey::generate(Algorithm::ES256, "ec").expect("key");
    let jwk: Jwk = serde_json::from_value(es.public_jwk()).expect("jwk");
    assert_eq!(
        VerifyingKey::from_jwk(&jwk, &[Algorithm::RS256]).expect_err("not RSA"),
        KeyError::NotUsable
    );
    let with = |member: &str, value: serde_json::Value| -> Jwk {
        let mut json = rsa("r").public_jwk();
        json[member] = value;
        serde_json::from_value(json).expect("jwk")
    };
    let enc = with("use", "enc".into());
    assert_eq!(
        VerifyingKey::from_jwk(&enc, &[Algorithm::RS256]).expect_err("encryption key"),
        KeyError::NotUsable
    );
    // Wycheproof's rejectWrongKeyOps: `key_ops` without `verify`.
    let sign_only = with("key_ops", serde_json::json!(["sign"]));
    assert_eq!(
        VerifyingKey::from_jwk(&sign_only, &[Algorithm::RS256]).expect_err("key_ops"),
        KeyError::NotUsable
    );
    let verify = with("key_ops", serde_json::json!(["verify"]));
    assert!(VerifyingKey::from_jwk(&verify, &[Algorithm::RS256]).is_ok());
    let private = with("d", "AQAB".into());
    assert!(VerifyingKey::from_jwk(&private, &[Algorithm::RS256]).is_err());
    let broken: Jwk =
        serde_json::from_value(serde_json::json!({"kty": "RSA", "n": "!!!", "e": "AQAB"}))
            .expect("jwk");
    assert!(VerifyingKey::from_jwk(&broken, &[Algorithm::RS256]).is_err());
}

#[test]
fn jwk_alg_pins_the_key_to_that_algorithm() {
    let key = rsa("r");
    let jwk: Jwk = serde_json::from_value(key.public_jwk()).expect("jwk");
    let prepared =
        VerifyingKey::from_jwk(&jwk, &[Algorithm::RS256, Algorithm::PS256]).expect("usable");
    assert!(prepared.supports(Algorithm::RS256));
    assert!(!prepared.supports(Algorithm::PS256), "the JWK says RS256");
}
