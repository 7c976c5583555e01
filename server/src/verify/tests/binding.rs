//! Sender-constrained tokens through the whole pipeline: a bound token is
//! never a bearer token, every check of a DPoP proof fails once with its
//! `problem`, a proof is good once (its ECDSA twin included), certificate
//! binding, nonces, and the access-token types.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::digest;

use super::*;
use crate::dangerous::ecdsa_twin;

const METHOD: &str = "GET";
const URI: &str = "https://api.example.com/orders?page=2";
const HTU: &str = "https://API.example.com:443/orders";

struct Client {
    key: SigningKey,
    other: SigningKey,
}

fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| Client {
        key: SigningKey::generate(Algorithm::ES256, "dpop").expect("key"),
        other: SigningKey::generate(Algorithm::ES256, "dpop-2").expect("key"),
    })
}

fn thumbprint(key: &SigningKey) -> String {
    let jwk: authd_jose::key::Jwk = serde_json::from_value(key.public_jwk()).expect("jwk");
    jwk.thumbprint().expect("thumbprint")
}

fn sha256_b64(bytes: &[u8]) -> String {
    b64(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// A token bound to the client's DPoP key.
fn bound_token() -> String {
    let cnf = json!({"jkt": thumbprint(&client().key)});
    keys().rsa.sign(&with(claims(), "cnf", cnf))
}

fn fresh_jti() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("jti-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn proof_header(key: &SigningKey) -> Value {
    json!({"typ": "dpop+jwt", "alg": key.alg().as_str(), "jwk": key.public_jwk()})
}

fn proof_claims(token: &str) -> Value {
    json!({
        "jti": fresh_jti(),
        "htm": METHOD,
        "htu": HTU,
        "iat": NOW,
        "ath": sha256_b64(token.as_bytes()),
    })
}

/// A valid proof by the client's key for `token`.
fn proof(token: &str) -> String {
    let key = &client().key;
    key.sign_with_header(&proof_header(key), &proof_claims(token))
}

fn request(authorization: String, proof: Option<String>) -> VerifyRequest {
    VerifyRequest {
        token: authorization,
        dpop_proof: proof,
        http_method: METHOD.to_owned(),
        http_uri: URI.to_owned(),
        ..VerifyRequest::default()
    }
}

async fn verify(v: &Verifier, request: &VerifyRequest) -> Result<Arc<VerifiedToken>, Error> {
    v.verify_at(request, NOW).await
}

/// The reason and the `problem` metadata of a refusal.
async fn refused(v: &Verifier, request: &VerifyRequest) -> (Reason, String) {
    let error = verify(v, request).await.expect_err("must be refused");
    let problem = error
        .metadata()
        .into_iter()
        .find(|(key, _)| *key == "problem")
        .map(|(_, value)| value)
        .unwrap_or_default();
    (error.reason(), problem)
}

fn caching() -> Config {
    let mut config = Config::default();
    config.verify.cache_admit_after = 1;
    config
}

// === item 1: a bound token is never a bearer token ===

#[tokio::test]
async fn a_dpop_bound_token_without_its_proof_is_refused_however_it_comes() {
    let v = verifier_with(&[Algorithm::RS256], &caching());
    let token = bound_token();
    for authorization in [
        token.clone(),
        format!("Bearer {token}"),
        format!("DPoP {token}"),
    ] {
        let (reason, _) = refused(&v, &request(authorization.clone(), None)).await;
        assert_eq!(reason, Reason::TokenBindingMismatch, "{authorization:.12}");
    }
    // With a valid proof but the Bearer scheme (RFC 9449 §7.2).
    let (reason, problem) =
        refused(&v, &request(format!("Bearer {token}"), Some(proof(&token)))).await;
    assert_eq!(reason, Reason::TokenBindingMismatch);
    assert!(problem.contains("Bearer"), "{problem}");
}

#[tokio::test]
async fn a_dpop_bound_token_with_its_fresh_proof_verifies_once_per_proof() {
    let v = verifier_with(&[Algorithm::RS256], &caching());
    let token = bound_token();
    let first = request(format!("DPoP {token}"), Some(proof(&token)));
    let verified = verify(&v, &first).await.expect("bound and proven");
    assert_eq!(
        verified.binding.as_ref().and_then(|b| b.jkt.clone()),
        Some(thumbprint(&client().key))
    );
    assert!(
        !verified.claims.contains_key("cnf"),
        "cnf is the binding, not a claim"
    );
    // The same proof again: a replay, on the cached answer too.
    assert_eq!(refused(&v, &first).await.0, Reason::DpopProofReplayed);
    // Its ECDSA twin (s → n − s) is a valid signature over the same claims.
    let twin = ecdsa_twin(first.dpop_proof.as_deref().expect("proof")).expect("twin");
    assert_eq!(
        refused(&v, &request(format!("DPoP {token}"), Some(twin)))
            .await
            .0,
        Reason::DpopProofReplayed
    );
    // A new proof passes through the cache; a missing one does not.
    assert!(v.cached_entries() > 0);
    verify(&v, &request(format!("DPoP {token}"), Some(proof(&token))))
        .await
        .expect("fresh proof on a cached token");
    verify(&v, &request(token.clone(), Some(proof(&token))))
        .await
        .expect("the bare token with a proof");
    assert_eq!(
        refused(&v, &request(format!("DPoP {token}"), None)).await.0,
        Reason::TokenBindingMismatch
    );
    assert_eq!(v.dpop().remembered_proofs(), 3);
}

#[tokio::test]
async fn a_proof_by_another_key_or_for_an_unbound_token_is_a_mismatch() {
    let v = rs256();
    let token = bound_token();
    let other = &client().other;
    let foreign = other.sign_with_header(&proof_header(other), &proof_claims(&token));
    let (reason, problem) = refused(&v, &request(format!("DPoP {token}"), Some(foreign))).await;
    assert_eq!(reason, Reason::TokenBindingMismatch);
    assert!(problem.contains("another key"), "{problem}");

    // The DPoP scheme (or a proof) with a token that is not DPoP-bound.
    let bearer = keys().rsa.sign(&claims());
    for (authorization, with_proof) in [(format!("DPoP {bearer}"), true), (bearer.clone(), true)] {
        let proof = with_proof.then(|| proof(&bearer));
        assert_eq!(
            refused(&v, &request(authorization, proof)).await.0,
            Reason::TokenBindingMismatch
        );
    }
    // A bearer token as Bearer: the DPoP header, if any, is not its business.
    verify(
        &v,
        &request(format!("Bearer {bearer}"), Some(proof(&bearer))),
    )
    .await
    .expect("bearer token");
    verify(&v, &request(bearer, None))
        .await
        .expect("bearer token");
}

#[tokio::test]
async fn a_confirmation_authd_cannot_check_refuses_the_token() {
    let v = rs256();
    for cnf in [
        json!({"jwk": client().key.public_jwk()}),
        json!({"jkt": thumbprint(&client().key), "kid": "k"}),
        json!({}),
        json!("jkt"),
    ] {
        let token = keys().rsa.sign(&with(claims(), "cnf", cnf.clone()));
        let (reason, _) = refused(&v, &request(format!("DPoP {token}"), Some(proof(&token)))).await;
        assert_eq!(reason, Reason::TokenBindingMismatch, "{cnf}");
    }
}

// === item 2: every check of a proof ===

#[tokio::test]
async fn every_check_of_a_proof_fails_with_its_problem() {
    let v = rs256();
    let token = bound_token();
    let key = &client().key;
    let sign = |header: Value, claims: Value| key.sign_with_header(&header, &claims);
    let header = || proof_header(key);
    let claims = || proof_claims(&token);
    let unsigned = |header: Value, claims: Value| {
        format!("{}.{}.", b64(header.to_string()), b64(claims.to_string()))
    };
    let hs256 = {
        let input = format!(
            "{}.{}",
            b64(json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": key.public_jwk()}).to_string()),
            b64(claims().to_string())
        );
        let mac = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, b"secret"),
            input.as_bytes(),
        );
        format!("{input}.{}", b64(mac.as_ref()))
    };
    let mut private_jwk = key.public_jwk();
    private_jwk["d"] = json!(b64([7u8; 32]));
    let good = sign(header(), claims());
    let (input, signature) = good.rsplit_once('.').expect("three segments");
    let mut flipped = URL_SAFE_NO_PAD.decode(signature).expect("b64");
    flipped[10] ^= 1;
    let p384 = SigningKey::generate(Algorithm::ES384, "p384").expect("key");
    let rs512 = SigningKey::generate(Algorithm::RS512, "rs512").expect("key");

    let cases: Vec<(&str, String, &str)> = vec![
        ("two proofs joined", format!("{good},{good}"), "count"),
        ("four segments", format!("{good}.x"), "format"),
        ("not base64", "a.b!.c".to_owned(), "format"),
        ("oversized", "a".repeat(9000), "size"),
        (
            "typ missing",
            sign(with(header(), "typ", Value::Null), claims()),
            "typ",
        ),
        (
            "typ JWT",
            sign(with(header(), "typ", json!("JWT")), claims()),
            "typ",
        ),
        (
            "alg none",
            unsigned(with(header(), "alg", json!("none")), claims()),
            "alg",
        ),
        ("alg HS256", hs256, "alg"),
        (
            "an algorithm the issuer does not allow",
            rs512.sign_with_header(&proof_header(&rs512), &claims()),
            "alg",
        ),
        (
            "jwk missing",
            sign(with(header(), "jwk", Value::Null), claims()),
            "jwk",
        ),
        (
            "jwk with d",
            sign(with(header(), "jwk", private_jwk), claims()),
            "jwk",
        ),
        (
            "jwk of another curve",
            sign(with(header(), "jwk", p384.public_jwk()), claims()),
            "jwk",
        ),
        (
            "bad signature",
            format!("{input}.{}", b64(&flipped)),
            "signature",
        ),
        (
            "jti missing",
            sign(header(), with(claims(), "jti", Value::Null)),
            "jti",
        ),
        (
            "jti empty",
            sign(header(), with(claims(), "jti", json!(""))),
            "jti",
        ),
        (
            "htm POST",
            sign(header(), with(claims(), "htm", json!("POST"))),
            "htm",
        ),
        (
            "htm get",
            sign(header(), with(claims(), "htm", json!("get"))),
            "htm",
        ),
        (
            "another URI",
            sign(
                header(),
                with(claims(), "htu", json!("https://api.example.com/admin")),
            ),
            "htu",
        ),
        (
            "another host",
            sign(
                header(),
                with(claims(), "htu", json!("https://evil.example.com/orders")),
            ),
            "htu",
        ),
        (
            "http instead of https",
            sign(
                header(),
                with(claims(), "htu", json!("http://api.example.com/orders")),
            ),
            "htu",
        ),
        (
            "iat missing",
            sign(header(), with(claims(), "iat", Value::Null)),
            "iat",
        ),
        (
            "iat old",
            sign(header(), with(claims(), "iat", json!(NOW - 66))),
            "iat",
        ),
        (
            "iat future",
            sign(header(), with(claims(), "iat", json!(NOW + 6))),
            "iat",
        ),
        (
            "iat huge",
            sign(header(), with(claims(), "iat", json!(1e300))),
            "iat",
        ),
        (
            "iat very negative",
            sign(header(), with(claims(), "iat", json!(-1e300))),
            "iat",
        ),
        (
            "iat a string",
            sign(header(), with(claims(), "iat", json!("now"))),
            "claims",
        ),
        (
            "ath missing",
            sign(header(), with(claims(), "ath", Value::Null)),
            "ath",
        ),
        (
            "ath of another token",
            sign(header(), with(claims(), "ath", json!(sha256_b64(b"other")))),
            "ath",
        ),
    ];
    for (what, proof, problem) in cases {
        let (reason, got) = refused(&v, &request(format!("DPoP {token}"), Some(proof))).await;
        assert_eq!(
            (reason, got.as_str()),
            (Reason::DpopProofInvalid, problem),
            "{what}"
        );
    }
    assert_eq!(
        v.dpop().remembered_proofs(),
        0,
        "nothing refused was remembered"
    );

    // Inside the window, fractional and at its edges: accepted.
    for iat in [
        json!(NOW as f64 - 0.5),
        json!(NOW - 65),
        json!(NOW + 5),
        json!(NOW as f64 + 4.9),
    ] {
        let proof = sign(header(), with(claims(), "iat", iat.clone()));
        verify(&v, &request(format!("DPoP {token}"), Some(proof)))
            .await
            .unwrap_or_else(|e| panic!("iat {iat}: {e}"));
    }
}

#[tokio::test]
async fn the_request_must_say_its_method_and_uri() {
    let v = rs256();
    let token = bound_token();
    let mut bare = request(format!("DPoP {token}"), Some(proof(&token)));
    bare.http_uri.clear();
    assert_eq!(refused(&v, &bare).await.0, Reason::InvalidRequest);
}

// === item 3: replay bounds and nonces ===

#[tokio::test]
async fn a_key_past_its_share_of_the_replay_cache_is_refused_not_forgotten() {
    let mut config = Config::default();
    config.dpop.replay_cache_max_entries = 1_000;
    config.dpop.replay_cache_max_per_key = 16;
    let v = verifier_with(&[Algorithm::RS256], &config);
    let token = bound_token();
    let mut limited = 0;
    for _ in 0..64 {
        match verify(&v, &request(format!("DPoP {token}"), Some(proof(&token)))).await {
            Ok(_) => {}
            Err(error) => {
                assert_eq!(error.reason(), Reason::RateLimited);
                limited += 1;
            }
        }
    }
    assert!(limited > 0 && v.dpop().remembered_proofs() <= 16 + 15);
}

#[tokio::test]
async fn a_required_nonce_is_handed_out_then_accepted() {
    let mut config = Config::default();
    config.dpop.require_nonce = true;
    let v = verifier_with(&[Algorithm::RS256], &config);
    let token = bound_token();
    let error = verify(&v, &request(format!("DPoP {token}"), Some(proof(&token))))
        .await
        .expect_err("no nonce");
    assert_eq!(error.reason(), Reason::DpopNonceRequired);
    let nonce = error
        .metadata()
        .into_iter()
        .find(|(key, _)| *key == "nonce")
        .map(|(_, nonce)| nonce)
        .expect("nonce metadata");
    let key = &client().key;
    let with_nonce = key.sign_with_header(
        &proof_header(key),
        &with(proof_claims(&token), "nonce", json!(nonce)),
    );
    verify(&v, &request(format!("DPoP {token}"), Some(with_nonce)))
        .await
        .expect("proof with the nonce");
    let stale = key.sign_with_header(
        &proof_header(key),
        &with(
            proof_claims(&token),
            "nonce",
            json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ),
    );
    assert_eq!(
        refused(&v, &request(format!("DPoP {token}"), Some(stale)))
            .await
            .0,
        Reason::DpopNonceRequired
    );
}

// === item 4: certificate-bound tokens ===

#[tokio::test]
async fn a_certificate_bound_token_needs_that_certificate() {
    let v = rs256();
    let certificate = b"the DER of the client's certificate".to_vec();
    let cnf = json!({"x5t#S256": sha256_b64(&certificate)});
    let token = keys().rsa.sign(&with(claims(), "cnf", cnf));
    let mut call = request(format!("Bearer {token}"), None);
    assert_eq!(refused(&v, &call).await.0, Reason::TokenBindingMismatch);
    call.client_certificate = Some(b"another certificate".to_vec());
    assert_eq!(refused(&v, &call).await.0, Reason::TokenBindingMismatch);
    call.client_certificate = Some(certificate);
    let verified = verify(&v, &call).await.expect("its certificate");
    assert!(
        verified
            .binding
            .as_ref()
            .is_some_and(|b| b.x5t_s256.is_some())
    );
}

// === item 6: token types ===

#[tokio::test]
async fn proofs_logout_tokens_and_events_are_never_access_tokens() {
    let v = rs256();
    let rsa = &keys().rsa;
    let header = |typ: &str| json!({"alg": "RS256", "kid": "rsa-1", "typ": typ});
    for typ in [
        "dpop+jwt",
        "logout+jwt",
        "secevent+jwt",
        "application/logout+jwt",
        "id+jwt",
    ] {
        let token = rsa.sign_with_header(&header(typ), &claims());
        assert_eq!(
            reason(&v, &token).await,
            Reason::TokenTypeNotAllowed,
            "{typ}"
        );
    }
    let logout = with(
        claims(),
        "events",
        json!({"http://schemas.openid.net/event/backchannel-logout": {}}),
    );
    assert_eq!(
        reason(&v, &rsa.sign(&logout)).await,
        Reason::TokenTypeNotAllowed
    );
    for typ in ["JWT", "at+jwt", "application/at+jwt", "AT+JWT"] {
        check(&v, &rsa.sign_with_header(&header(typ), &claims()), &[])
            .await
            .unwrap_or_else(|e| panic!("{typ}: {e}"));
    }
    let no_typ = rsa.sign_with_header(&json!({"alg": "RS256", "kid": "rsa-1"}), &claims());
    check(&v, &no_typ, &[]).await.expect("no typ is JWT");
}

#[tokio::test]
async fn the_rfc_9068_profile_requires_its_typ_and_claims() {
    let scripted_keys = keys();
    let issuer = IssuerConfig {
        token_types: vec!["at+jwt".to_owned()],
        ..IssuerConfig::new(ISS.to_owned(), vec![AUD.to_owned()])
    };
    let issuer_keys = IssuerKeys::new(
        ISS.into(),
        issuer.algorithms.clone(),
        Box::new(Shared(Scripted::new(&[&scripted_keys.rsa]))),
        crate::config::JwksConfig::default(),
    );
    let mut issuers = HashMap::new();
    issuers.insert(ISS.to_owned(), IssuerPolicy::new(&issuer, issuer_keys));
    let v = Verifier::new(issuers, &Config::default());
    let rsa = &scripted_keys.rsa;
    let at = json!({"alg": "RS256", "kid": "rsa-1", "typ": "at+jwt"});
    let full = with(
        with(claims(), "client_id", json!("client-1")),
        "jti",
        json!("t-1"),
    );
    check(&v, &rsa.sign_with_header(&at, &full), &[])
        .await
        .expect("an RFC 9068 token");
    assert_eq!(
        reason(&v, &rsa.sign(&full)).await,
        Reason::TokenTypeNotAllowed,
        "typ JWT"
    );
    let no_typ = json!({"alg": "RS256", "kid": "rsa-1"});
    assert_eq!(
        reason(&v, &rsa.sign_with_header(&no_typ, &full)).await,
        Reason::TokenTypeNotAllowed
    );
    for claim in ["client_id", "jti", "sub", "iat"] {
        let token = rsa.sign_with_header(&at, &with(full.clone(), claim, Value::Null));
        assert_eq!(reason(&v, &token).await, Reason::MalformedToken, "{claim}");
    }
}
