//! One test per rejection reason, and a corpus of hostile tokens.

use std::sync::OnceLock;

use aws_lc_rs::hmac;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::*;
use crate::{
    Reason,
    config::IssuerConfig,
    dangerous::SigningKey,
    jwks::tests::{Scripted, Shared},
};

const ISS: &str = "https://tenant.example.auth0.com/";
const AUD: &str = "https://api.example.com";
const NOW: i64 = 1_800_000_000;

struct Keys {
    rsa: SigningKey,
    ps: SigningKey,
    ec: SigningKey,
    ed: SigningKey,
    impostor: SigningKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: SigningKey::generate(Algorithm::RS256, "rsa-1").expect("key"),
        ps: SigningKey::generate(Algorithm::PS256, "ps-1").expect("key"),
        ec: SigningKey::generate(Algorithm::ES256, "ec-1").expect("key"),
        ed: SigningKey::generate(Algorithm::EdDSA, "ed-1").expect("key"),
        // Same kid as the real RSA key, different key material.
        impostor: SigningKey::generate(Algorithm::RS256, "rsa-1").expect("key"),
    })
}

fn verifier(algorithms: &[Algorithm]) -> Verifier {
    verifier_with(algorithms, &Config::default())
}

fn verifier_with(algorithms: &[Algorithm], config: &Config) -> Verifier {
    let k = keys();
    verifier_over(&[&k.rsa, &k.ps, &k.ec, &k.ed], algorithms, config)
}

/// A verifier of [`ISS`] whose key set holds `signing`'s public keys.
fn verifier_over(signing: &[&SigningKey], algorithms: &[Algorithm], config: &Config) -> Verifier {
    let scripted = Scripted::new(signing);
    let issuer = IssuerConfig {
        algorithms: algorithms.to_vec(),
        ..IssuerConfig::new(
            ISS.to_owned(),
            vec![AUD.to_owned(), "https://other.example.com".to_owned()],
        )
    };
    let keys = IssuerKeys::new(
        ISS.into(),
        issuer.algorithms.clone(),
        Box::new(Shared(scripted)),
        crate::config::JwksConfig::default(),
    );
    let mut issuers = HashMap::new();
    issuers.insert(ISS.to_owned(), IssuerPolicy::new(&issuer, keys));
    Verifier::new(issuers, config)
}

fn rs256() -> Verifier {
    verifier(&[Algorithm::RS256])
}

fn claims() -> Value {
    json!({
        "iss": ISS,
        "sub": "auth0|alice",
        "aud": [AUD, format!("{ISS}userinfo")],
        "iat": NOW - 10,
        "exp": NOW + 3600,
        "scope": "openid read:orders",
        "permissions": ["write:orders"],
        "azp": "client-1",
        "sid": "session-1",
        "https://example.com/roles": ["admin"],
    })
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    if value.is_null() {
        base.as_object_mut().expect("object").remove(key);
    } else {
        base[key] = value;
    }
    base
}

async fn check(
    v: &Verifier,
    token: &str,
    scopes: &[&str],
) -> Result<std::sync::Arc<VerifiedToken>, Error> {
    let request = VerifyRequest {
        token: token.to_owned(),
        required_scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        audience: None,
        ..VerifyRequest::default()
    };
    v.verify_at(&request, NOW).await
}

async fn reason(v: &Verifier, token: &str) -> Reason {
    check(v, token, &[])
        .await
        .expect_err("must be refused")
        .reason()
}

fn b64(value: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(value)
}

// === accepted tokens ===

#[tokio::test]
async fn valid_rs256_token_verifies_with_its_claims() {
    let token = keys().rsa.sign(&claims());
    let verified = check(&rs256(), &token, &["read:orders", "write:orders"])
        .await
        .expect("valid");
    assert_eq!(verified.subject, "auth0|alice");
    assert_eq!(verified.issuer, ISS);
    assert_eq!(verified.audiences[0], AUD);
    assert_eq!(verified.scopes, vec!["openid", "read:orders"]);
    assert_eq!(verified.permissions, vec!["write:orders"]);
    assert_eq!(verified.session_id.as_deref(), Some("session-1"));
    assert_eq!(verified.authorized_party.as_deref(), Some("client-1"));
    assert_eq!(verified.expires_at, NOW + 3600);
    assert_eq!(
        verified.claims["https://example.com/roles"],
        json!(["admin"])
    );
    assert!(
        !verified.claims.contains_key("exp"),
        "registered claims are not repeated"
    );
}

#[tokio::test]
async fn bearer_prefix_and_string_audience_are_accepted() {
    let token = keys().rsa.sign(&with(claims(), "aud", json!(AUD)));
    check(&rs256(), &format!("Bearer {token}"), &[])
        .await
        .expect("valid");
    check(&rs256(), &format!("bearer  {token} "), &[])
        .await
        .expect("valid");
}

#[tokio::test]
async fn configured_ps256_es256_eddsa_verify() {
    let v = verifier(&[Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA]);
    for key in [&keys().ps, &keys().ec, &keys().ed] {
        check(&v, &key.sign(&claims()), &[])
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", key.alg()));
    }
}

#[tokio::test]
async fn scp_claim_satisfies_required_scopes() {
    let c = with(
        with(claims(), "scope", Value::Null),
        "scp",
        json!(["read:orders"]),
    );
    check(&rs256(), &keys().rsa.sign(&c), &["read:orders"])
        .await
        .expect("scp");
}

#[tokio::test]
async fn expiry_within_leeway_is_accepted() {
    let token = keys().rsa.sign(&with(claims(), "exp", json!(NOW - 20)));
    check(&rs256(), &token, &[])
        .await
        .expect("inside 30 s leeway");
}

#[tokio::test]
async fn requested_audience_must_be_in_the_token() {
    let v = rs256();
    let token = keys().rsa.sign(&claims());
    let mut request = VerifyRequest {
        token,
        audience: Some(AUD.to_owned()),
        ..VerifyRequest::default()
    };
    v.verify_at(&request, NOW).await.expect("carries AUD");
    request.audience = Some("https://other.example.com".to_owned());
    assert_eq!(
        v.verify_at(&request, NOW)
            .await
            .expect_err("not in token")
            .reason(),
        Reason::WrongAudience
    );
    request.audience = Some("https://unconfigured.example.com".to_owned());
    assert_eq!(
        v.verify_at(&request, NOW)
            .await
            .expect_err("not configured")
            .reason(),
        Reason::InvalidRequest
    );
}

// === one test per reason ===

#[tokio::test]
async fn empty_token_is_missing() {
    assert_eq!(reason(&rs256(), "").await, Reason::TokenMissing);
    assert_eq!(reason(&rs256(), "Bearer ").await, Reason::TokenMissing);
}

#[tokio::test]
async fn oversized_token_is_refused_before_parsing() {
    let huge = "x".repeat(8193);
    assert_eq!(reason(&rs256(), &huge).await, Reason::TokenTooLarge);
}

#[tokio::test]
async fn exp_in_past_fails() {
    let token = keys().rsa.sign(&with(claims(), "exp", json!(NOW - 31)));
    assert_eq!(reason(&rs256(), &token).await, Reason::TokenExpired);
}

#[tokio::test]
async fn missing_exp_fails() {
    let token = keys().rsa.sign(&with(claims(), "exp", Value::Null));
    assert_eq!(reason(&rs256(), &token).await, Reason::MalformedToken);
}

#[tokio::test]
async fn nbf_in_future_fails() {
    let token = keys().rsa.sign(&with(claims(), "nbf", json!(NOW + 60)));
    assert_eq!(reason(&rs256(), &token).await, Reason::TokenNotYetValid);
}

#[tokio::test]
async fn iat_in_future_fails() {
    let token = keys().rsa.sign(&with(claims(), "iat", json!(NOW + 60)));
    assert_eq!(reason(&rs256(), &token).await, Reason::TokenNotYetValid);
}

#[tokio::test]
async fn fractional_nbf_or_iat_just_past_the_leeway_fails() {
    // Rounded down, NOW + 30.6 became NOW + 30 and passed a 30 s leeway.
    for claim in ["nbf", "iat"] {
        let token = keys()
            .rsa
            .sign(&with(claims(), claim, json!(NOW as f64 + 30.6)));
        assert_eq!(
            reason(&rs256(), &token).await,
            Reason::TokenNotYetValid,
            "{claim}"
        );
        let token = keys().rsa.sign(&with(claims(), claim, json!(NOW + 30)));
        check(&rs256(), &token, &[])
            .await
            .expect("at the leeway's edge");
    }
}

#[tokio::test]
async fn fractional_exp_just_past_the_leeway_fails() {
    let token = keys()
        .rsa
        .sign(&with(claims(), "exp", json!(NOW as f64 - 30.4)));
    assert_eq!(reason(&rs256(), &token).await, Reason::TokenExpired);
}

#[tokio::test]
async fn unknown_issuer_fails() {
    let token = keys()
        .rsa
        .sign(&with(claims(), "iss", json!("https://evil.example.com/")));
    assert_eq!(reason(&rs256(), &token).await, Reason::WrongIssuer);
}

#[tokio::test]
async fn issuer_without_trailing_slash_fails() {
    let token = keys()
        .rsa
        .sign(&with(claims(), "iss", json!(ISS.trim_end_matches('/'))));
    assert_eq!(reason(&rs256(), &token).await, Reason::WrongIssuer);
}

#[tokio::test]
async fn wrong_audience_fails() {
    let token = keys()
        .rsa
        .sign(&with(claims(), "aud", json!(["https://someone-else"])));
    assert_eq!(reason(&rs256(), &token).await, Reason::WrongAudience);
}

#[tokio::test]
async fn missing_audience_fails() {
    let token = keys().rsa.sign(&with(claims(), "aud", Value::Null));
    assert_eq!(reason(&rs256(), &token).await, Reason::WrongAudience);
}

#[tokio::test]
async fn missing_scope_is_permission_denied_and_named() {
    let token = keys().rsa.sign(&claims());
    let err = check(&rs256(), &token, &["read:orders", "delete:orders"])
        .await
        .expect_err("missing");
    assert_eq!(
        err,
        Error::InsufficientScope {
            missing: vec!["delete:orders".to_owned()]
        }
    );
}

#[tokio::test]
async fn tampered_payload_has_bad_signature() {
    let token = keys().rsa.sign(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    let forged = b64(with(claims(), "sub", json!("auth0|mallory")).to_string());
    let token = format!("{}.{}.{}", parts[0], forged, parts[2]);
    assert_eq!(reason(&rs256(), &token).await, Reason::BadSignature);
}

#[tokio::test]
async fn key_with_the_right_kid_but_wrong_material_has_bad_signature() {
    let token = keys().impostor.sign(&claims());
    assert_eq!(reason(&rs256(), &token).await, Reason::BadSignature);
}

#[tokio::test]
async fn unknown_kid_fails() {
    let header = json!({"alg": "RS256", "kid": "nope"});
    let token = keys().rsa.sign_with_header(&header, &claims());
    assert_eq!(reason(&rs256(), &token).await, Reason::UnknownKey);
}

#[tokio::test]
async fn missing_kid_fails() {
    let token = keys()
        .rsa
        .sign_with_header(&json!({"alg": "RS256"}), &claims());
    assert_eq!(reason(&rs256(), &token).await, Reason::UnknownKey);
}

// === hostile tokens ===

#[tokio::test]
async fn alg_none_is_refused() {
    let header = b64(json!({"alg": "none", "kid": "rsa-1"}).to_string());
    let payload = b64(claims().to_string());
    assert_eq!(
        reason(&rs256(), &format!("{header}.{payload}.")).await,
        Reason::MalformedToken
    );
    assert_eq!(
        reason(&rs256(), &format!("{header}.{payload}.AAAA")).await,
        Reason::AlgorithmNotAllowed
    );
    let header = b64(json!({"alg": "None", "kid": "rsa-1"}).to_string());
    assert_eq!(
        reason(&rs256(), &format!("{header}.{payload}.AAAA")).await,
        Reason::AlgorithmNotAllowed
    );
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let jwk = keys().rsa.public_jwk();
    let header = b64(json!({"alg": "HS256", "kid": "rsa-1"}).to_string());
    let input = format!("{header}.{}", b64(claims().to_string()));
    for secret in [jwk.to_string(), jwk["n"].as_str().expect("n").to_owned()] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let token = format!("{input}.{}", b64(hmac::sign(&key, input.as_bytes())));
        assert_eq!(reason(&rs256(), &token).await, Reason::AlgorithmNotAllowed);
    }
}

#[tokio::test]
async fn algorithm_not_configured_is_refused_even_with_a_valid_signature() {
    // A genuine ES256 key of the issuer, but the issuer is configured RS256 only.
    let token = keys().ec.sign(&claims());
    assert_eq!(reason(&rs256(), &token).await, Reason::AlgorithmNotAllowed);
}

#[tokio::test]
async fn alg_that_does_not_fit_the_key_is_refused() {
    let v = verifier(&[Algorithm::RS256, Algorithm::ES256]);
    // Header claims ES256 but names the RSA key.
    let header = json!({"alg": "ES256", "kid": "rsa-1"});
    let token = keys().ec.sign_with_header(&header, &claims());
    assert_eq!(reason(&v, &token).await, Reason::AlgorithmNotAllowed);
}

#[tokio::test]
async fn key_choosing_headers_are_never_followed() {
    let jwk = keys().rsa.public_jwk();
    for (name, value) in [
        ("jku", json!("https://evil.example.com/jwks.json")),
        ("x5u", json!("https://evil.example.com/cert.pem")),
        ("jwk", jwk),
        ("x5c", json!(["MIIB"])),
    ] {
        let header = with(json!({"alg": "RS256", "kid": "rsa-1"}), name, value);
        let token = keys().rsa.sign_with_header(&header, &claims());
        assert_eq!(
            reason(&rs256(), &token).await,
            Reason::MalformedToken,
            "{name}"
        );
    }
}

#[tokio::test]
async fn unknown_crit_is_refused() {
    let header = json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"], "exp": 1});
    let token = keys().rsa.sign_with_header(&header, &claims());
    assert_eq!(reason(&rs256(), &token).await, Reason::MalformedToken);
}

#[tokio::test]
async fn kid_with_path_or_sql_characters_is_just_unknown() {
    for kid in [
        "../../../../etc/passwd",
        "' OR '1'='1' --",
        "%00",
        "\u{0000}",
        "k\nid",
        &"k".repeat(5000),
    ] {
        let header = json!({"alg": "RS256", "kid": kid});
        let token = keys().rsa.sign_with_header(&header, &claims());
        let got = check(&rs256(), &token, &[])
            .await
            .expect_err("refused")
            .reason();
        assert!(
            matches!(got, Reason::UnknownKey | Reason::TokenTooLarge),
            "{kid:?}: {got:?}"
        );
    }
}

#[tokio::test]
async fn wrong_segment_counts_are_malformed() {
    let token = keys().rsa.sign(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    for bad in [
        parts[..2].join("."),
        format!("{token}.{}", parts[2]),
        parts[0].to_owned(),
        format!("{}..{}", parts[0], parts[2]),
        "...".to_owned(),
    ] {
        assert_eq!(
            reason(&rs256(), &bad).await,
            Reason::MalformedToken,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn bad_base64_is_malformed() {
    let token = keys().rsa.sign(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    for bad in [
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}+/.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}*", parts[0], parts[1], parts[2]),
        format!("!!!.{}.{}", parts[1], parts[2]),
    ] {
        assert_eq!(
            reason(&rs256(), &bad).await,
            Reason::MalformedToken,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn header_or_payload_not_json_is_malformed() {
    let sig = b64("sig");
    let good_header = b64(json!({"alg": "RS256", "kid": "rsa-1"}).to_string());
    let good_payload = b64(claims().to_string());
    for bad in [
        format!("{}.{good_payload}.{sig}", b64("not json")),
        format!("{good_header}.{}.{sig}", b64("not json")),
        format!("{good_header}.{}.{sig}", b64("[1,2,3]")),
        format!("{}.{good_payload}.{sig}", b64("{\"alg\": 7}")),
    ] {
        assert_eq!(
            reason(&rs256(), &bad).await,
            Reason::MalformedToken,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn claims_of_the_wrong_type_are_malformed() {
    for (claim, value) in [
        ("exp", json!("soon")),
        ("nbf", json!({"a": 1})),
        ("iat", json!([1])),
        ("iss", json!(42)),
        ("aud", json!(7)),
        ("aud", json!([AUD, 7])),
        ("aud", json!({ "aud": AUD })),
        ("scp", json!([["read"]])),
        ("scope", json!(["read"])),
        ("permissions", json!("read")),
        ("sub", json!(true)),
    ] {
        let token = keys().rsa.sign(&with(claims(), claim, value));
        assert_eq!(
            reason(&rs256(), &token).await,
            Reason::MalformedToken,
            "{claim}"
        );
    }
}

#[tokio::test]
async fn non_utf8_bytes_are_malformed() {
    let header = b64(json!({"alg": "RS256", "kid": "rsa-1"}).to_string());
    let mut payload = claims().to_string().into_bytes();
    payload.splice(10..10, [0xff, 0xfe, 0xc3]);
    let token = format!("{header}.{}.{}", b64(&payload), b64("sig"));
    assert_eq!(reason(&rs256(), &token).await, Reason::MalformedToken);
    let token = format!(
        "{}.{}.{}",
        b64([0xff, 0x00, 0x80]),
        b64(&payload),
        b64("sig")
    );
    assert_eq!(reason(&rs256(), &token).await, Reason::MalformedToken);
}

#[tokio::test]
async fn duplicate_claims_are_malformed() {
    let token = sign_raw(&format!(
        "{{\"iss\":\"{ISS}\",\"exp\":{},\"exp\":{}}}",
        NOW - 999,
        NOW + 999
    ));
    assert_eq!(reason(&rs256(), &token).await, Reason::MalformedToken);
}

/// Signs a raw JSON payload, exactly as written.
fn sign_raw(payload: &str) -> String {
    let header = json!({"alg": "RS256", "kid": "rsa-1"});
    let input = format!("{}.{}", b64(header.to_string()), b64(payload));
    format!("{input}.{}", b64(keys().rsa.sign_bytes(input.as_bytes())))
}

#[tokio::test]
async fn a_duplicate_extra_claim_is_malformed() {
    let exp = NOW + 999;
    let token = sign_raw(&format!(
        r#"{{"iss":"{ISS}","aud":"{AUD}","exp":{exp},"x":1,"x":2}}"#
    ));
    assert_eq!(reason(&rs256(), &token).await, Reason::MalformedToken);
    let token = sign_raw(&format!(
        r#"{{"iss":"{ISS}","aud":"{AUD}","exp":{exp},"sub":null,"sub":"a"}}"#
    ));
    assert_eq!(reason(&rs256(), &token).await, Reason::MalformedToken);
}

#[tokio::test]
async fn null_claims_are_absent_and_escaped_names_are_decoded() {
    let exp = NOW + 999;
    let token = sign_raw(&format!(
        r#"{{"iss":"{ISS}","aud":"{AUD}","exp":{exp},"sub":null,"scope":null,"a\u0062c":[1,{{"d":null}}],"e\"f":"g"}}"#
    ));
    let verified = check(&rs256(), &token, &[]).await.expect("valid");
    assert_eq!(verified.subject, "");
    assert!(verified.scopes.is_empty());
    assert_eq!(verified.claims.get("abc"), Some(&json!([1, {"d": null}])));
    assert_eq!(verified.claims.get("e\"f"), Some(&json!("g")));
    assert_eq!(verified.claims.len(), 2);
}

#[tokio::test]
async fn mutated_tokens_never_panic_and_are_never_accepted() {
    let v = rs256();
    let token = keys().rsa.sign(&claims());
    let bytes = token.as_bytes();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2_000 {
        let mut mutated = bytes.to_vec();
        for _ in 0..(1 + next() % 4) {
            let at = (next() as usize) % mutated.len();
            match next() % 3 {
                0 => mutated[at] = b"ABCxyz019-_.="[(next() % 13) as usize],
                1 => {
                    mutated.remove(at);
                }
                _ => mutated.insert(at, (next() % 128) as u8),
            }
        }
        let Ok(text) = String::from_utf8(mutated) else {
            continue;
        };
        if text == token {
            continue;
        }
        // Base64 padding bits can change without changing the decoded bytes;
        // such a token is the same token, and may verify.
        if let Ok(verified) = check(&v, &text, &[]).await {
            assert_eq!(verified.subject, "auth0|alice");
            assert_eq!(text.split('.').count(), 3);
        }
    }
}

// === the verified-result cache ===

#[tokio::test]
async fn cache_hit_still_checks_expiry_scopes_and_audience() {
    let v = rs256();
    let token = keys().rsa.sign(&with(claims(), "exp", json!(NOW + 100)));
    check(&v, &token, &[]).await.expect("valid, seen once");
    check(&v, &token, &[]).await.expect("valid, now cached");
    assert_eq!(v.cached_entries(), 1);
    let at = |now| {
        let request = VerifyRequest {
            token: token.clone(),
            required_scopes: vec!["read:orders".to_owned()],
            audience: None,
            ..VerifyRequest::default()
        };
        let v = &v;
        async move { v.verify_at(&request, now).await }
    };
    at(NOW + 50).await.expect("cached and still valid");
    assert_eq!(
        at(NOW + 131).await.expect_err("expired").reason(),
        Reason::TokenExpired
    );
    let scoped = check(&v, &token, &["delete:orders"])
        .await
        .expect_err("scope");
    assert_eq!(scoped.reason(), Reason::InsufficientScope);
    let request = VerifyRequest {
        token: token.clone(),
        audience: Some("https://other.example.com".to_owned()),
        ..VerifyRequest::default()
    };
    assert_eq!(
        v.verify_at(&request, NOW).await.expect_err("aud").reason(),
        Reason::WrongAudience
    );
}

#[tokio::test]
async fn a_forged_token_never_hits_the_genuine_entry() {
    let v = rs256();
    let token = keys().rsa.sign(&claims());
    check(&v, &token, &[]).await.expect("seen once");
    check(&v, &token, &[]).await.expect("cached");
    assert_eq!(v.cached_entries(), 1);
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(with(claims(), "sub", json!("auth0|mallory")).to_string()),
        parts[2]
    );
    assert_eq!(reason(&v, &forged).await, Reason::BadSignature);
    let mut sig = parts[2].to_owned();
    sig.replace_range(..4, "AAAA");
    assert_eq!(
        reason(&v, &format!("{}.{}.{sig}", parts[0], parts[1])).await,
        Reason::BadSignature
    );
}

#[tokio::test]
async fn a_cached_token_is_refused_once_revoked() {
    use crate::{revocation::revocation, store::RevocationKind};
    let v = rs256();
    let token = keys().rsa.sign(&claims());
    check(&v, &token, &[]).await.expect("seen once");
    check(&v, &token, &[]).await.expect("cached");
    assert_eq!(v.cached_entries(), 1);
    v.revocations().apply(&[revocation(
        RevocationKind::SessionId,
        ISS,
        "session-1",
        NOW + 3600,
    )]);
    assert_eq!(reason(&v, &token).await, Reason::SessionRevoked);
}

#[tokio::test]
async fn the_cache_is_bounded_and_can_be_off() {
    let mut config = Config::default();
    config.verify.cache_max_entries = 8;
    let v = verifier_with(&[Algorithm::RS256], &config);
    for i in 0..50 {
        let token = keys()
            .rsa
            .sign(&with(claims(), "sub", json!(format!("auth0|u{i}"))));
        check(&v, &token, &[]).await.expect("valid");
        check(&v, &token, &[]).await.expect("valid, cached");
    }
    let held = v.cached_entries();
    assert!((1..=8).contains(&held), "{held}");
    config.verify.cache_max_entries = 0;
    let off = verifier_with(&[Algorithm::RS256], &config);
    check(&off, &keys().rsa.sign(&claims()), &[])
        .await
        .expect("valid");
    assert_eq!(off.cached_entries(), 0);
}

#[tokio::test]
async fn a_token_is_cached_at_its_second_verification_unless_configured_otherwise() {
    let v = rs256();
    let tokens: Vec<String> = (0..100)
        .map(|i| {
            keys()
                .rsa
                .sign(&with(claims(), "sub", json!(format!("auth0|u{i}"))))
        })
        .collect();
    for token in &tokens {
        check(&v, token, &[]).await.expect("valid");
    }
    // Each seen once: no entry (the filter's false "seen" rate is ~1 %).
    assert!(v.cached_entries() <= 3, "{}", v.cached_entries());
    for token in &tokens {
        check(&v, token, &[]).await.expect("valid");
    }
    assert_eq!(v.cached_entries(), 100);

    let mut config = Config::default();
    config.verify.cache_admit_after = 1;
    let eager = verifier_with(&[Algorithm::RS256], &config);
    check(&eager, &tokens[0], &[]).await.expect("valid");
    assert_eq!(eager.cached_entries(), 1);
}

/// Revokes `token` by the digest of what its issuer signed.
fn revoke_signed(v: &Verifier, token: &str) {
    use crate::{
        revocation::{revocation, signed_digest},
        store::RevocationKind,
    };
    v.revocations().apply(&[revocation(
        RevocationKind::SignedDigest,
        ISS,
        &signed_digest(token),
        NOW + 3600,
    )]);
}

#[tokio::test]
async fn a_revoked_ecdsa_token_stays_revoked_when_its_signature_is_re_encoded() {
    use crate::dangerous::ecdsa_twin;
    let v = verifier(&[Algorithm::ES256]);
    // No sid: Auth0's access tokens carry none, so only the signed content
    // names the token.
    let token = keys().ec.sign(&with(claims(), "sid", Value::Null));
    let twin = ecdsa_twin(&token).expect("an ES256 token");
    assert_ne!(twin, token);
    check(&v, &token, &[]).await.expect("the original verifies");
    check(&v, &twin, &[]).await.expect("so does its twin");
    revoke_signed(&v, &token);
    // Both from the result cache (where each now sits) and verified afresh.
    assert_eq!(reason(&v, &token).await, Reason::SessionRevoked);
    assert_eq!(reason(&v, &twin).await, Reason::SessionRevoked);
    let fresh = verifier(&[Algorithm::ES256]);
    revoke_signed(&fresh, &token);
    assert_eq!(reason(&fresh, &twin).await, Reason::SessionRevoked);
    assert_eq!(
        reason(&fresh, &ecdsa_twin(&twin).expect("twin of twin")).await,
        Reason::SessionRevoked
    );
}

#[tokio::test]
async fn es384_twins_verify_and_a_digest_revocation_refuses_both() {
    use crate::dangerous::ecdsa_twin;
    let key = SigningKey::generate(Algorithm::ES384, "ec384-1").expect("key");
    let v = verifier_over(&[&key], &[Algorithm::ES384], &Config::default());
    let token = key.sign(&with(claims(), "sid", Value::Null));
    let twin = ecdsa_twin(&token).expect("an ES384 token");
    check(&v, &twin, &[]).await.expect("the twin verifies");
    revoke_signed(&v, &token);
    assert_eq!(reason(&v, &token).await, Reason::SessionRevoked);
    assert_eq!(reason(&v, &twin).await, Reason::SessionRevoked);
}

mod binding;
