//! DPoP proofs (`authd_jose::dpop::check_proof`, the checks authd and
//! authd-client share) on near-valid proofs: a header and claims built from
//! the fuzzer's choices (typ, alg, the jwk — the signer's own, another key,
//! one with a private member, none —, htm, htu, iat, ath, jti, nonce, extra
//! members), signed with the fixture's keys or an impostor's, sometimes with a
//! mutated signature, sometimes two proofs joined by a comma.
//!
//! Invariants: never a panic; an accepted proof has `typ` `dpop+jwt`, an
//! algorithm of the policy, a public jwk that is the signer's own key (so no
//! impostor and no mutated signature passes), the request's method and a
//! target equal to the request's once normalized, an `iat` inside the window,
//! the access token's `ath`, and a `jti` of 1 to 256 bytes; its thumbprint is
//! the jwk's.
#![no_main]

use authd_fuzz::{NOW, Signer, fixture};
use authd_jose::{
    dpop::{ProofPolicy, ProofRequest, check_proof},
    htu,
    key::{Algorithm, Jwk},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use libfuzzer_sys::{arbitrary, fuzz_target};
use serde_json::{Value, json};

const METHOD: &str = "GET";
const URI: &str = "https://api.example.com/orders?page=2";
const TOKEN: &str = "header.payload.signature";
const POLICY: ProofPolicy<'static> = ProofPolicy {
    algorithms: &[Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256],
    max_age_seconds: 60,
    leeway_seconds: 5,
};

#[derive(Debug, arbitrary::Arbitrary)]
enum Typ {
    Dpop,
    DpopUpper,
    Jwt,
    Absent,
    Other(String),
}

#[derive(Debug, arbitrary::Arbitrary)]
enum JwkChoice {
    Own,
    Other(u8),
    OwnWithD,
    Absent,
    Junk(String),
}

#[derive(Debug, arbitrary::Arbitrary)]
enum Htu {
    Same,
    Upper,
    DefaultPort,
    OtherPort,
    OtherPath,
    WithQuery,
    Dots,
    Raw(String),
}

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    signer: u8,
    typ: Typ,
    alg: Option<String>,
    jwk: JwkChoice,
    htm: Option<String>,
    htu: Htu,
    iat: Option<f64>,
    ath_right: bool,
    jti: Option<String>,
    nonce: Option<String>,
    extra: Vec<(String, String)>,
    mutate: Option<(u16, u8)>,
    joined: bool,
}

fn jwk_of(signer: Signer) -> Option<Value> {
    let mut jwk = fixture()
        .jwks()
        .iter()
        .find(|jwk| jwk["kid"] == signer.kid())?
        .clone();
    // The key set's `alg` pins RS256 on the RSA key; a proof names its own.
    jwk.as_object_mut()?.remove("alg");
    Some(jwk)
}

fuzz_target!(|input: Input| {
    let signers = Signer::ALL;
    let signer = signers[usize::from(input.signer) % signers.len()];
    let own = jwk_of(signer);
    let jwk = match &input.jwk {
        JwkChoice::Own => own.clone(),
        JwkChoice::Other(i) => jwk_of(signers[usize::from(*i) % signers.len()]),
        JwkChoice::OwnWithD => own.clone().map(|mut jwk| {
            jwk["d"] = json!("AQAB");
            jwk
        }),
        JwkChoice::Absent => None,
        JwkChoice::Junk(text) => Some(json!(text)),
    };
    let mut header = json!({"alg": input.alg.clone().unwrap_or_else(|| signer.alg().to_owned())});
    match &input.typ {
        Typ::Dpop => header["typ"] = json!("dpop+jwt"),
        Typ::DpopUpper => header["typ"] = json!("DPOP+JWT"),
        Typ::Jwt => header["typ"] = json!("JWT"),
        Typ::Absent => {}
        Typ::Other(typ) => header["typ"] = json!(typ),
    }
    if let Some(jwk) = &jwk {
        header["jwk"] = jwk.clone();
    }
    let htu = match &input.htu {
        Htu::Same => "https://api.example.com/orders".to_owned(),
        Htu::Upper => "HTTPS://API.EXAMPLE.COM/orders".to_owned(),
        Htu::DefaultPort => "https://api.example.com:443/orders".to_owned(),
        Htu::OtherPort => "https://api.example.com:8443/orders".to_owned(),
        Htu::OtherPath => "https://api.example.com/admin".to_owned(),
        Htu::WithQuery => "https://api.example.com/orders?x#y".to_owned(),
        Htu::Dots => "https://api.example.com/a/../orders".to_owned(),
        Htu::Raw(raw) => raw.clone(),
    };
    let ath = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        if input.ath_right {
            TOKEN.as_bytes()
        } else {
            b"another token"
        },
    ));
    let mut claims = json!({"htu": htu, "ath": ath});
    for (name, value) in &input.extra {
        claims[name.as_str()] = json!(value);
    }
    claims["htm"] = json!(input.htm.clone().unwrap_or_else(|| METHOD.to_owned()));
    if let Some(iat) = input.iat.and_then(serde_json::Number::from_f64) {
        claims["iat"] = Value::Number(iat);
    } else {
        claims["iat"] = json!(NOW);
    }
    if let Some(jti) = &input.jti {
        claims["jti"] = json!(jti);
    }
    if let Some(nonce) = &input.nonce {
        claims["nonce"] = json!(nonce);
    }
    let f = fixture();
    let mut proof = f.token(
        signer,
        header.to_string().as_bytes(),
        claims.to_string().as_bytes(),
    );
    let mut mutated = false;
    if let Some((at, bit)) = input.mutate {
        let (input_part, signature) = proof.rsplit_once('.').expect("three segments");
        let mut signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
        if !signature.is_empty() && bit != 0 {
            let at = usize::from(at) % signature.len();
            signature[at] ^= bit;
            mutated = true;
        }
        proof = format!("{input_part}.{}", URL_SAFE_NO_PAD.encode(signature));
    }
    if input.joined {
        proof = format!("{proof},{proof}");
    }
    let request = ProofRequest {
        method: METHOD,
        uri: URI,
        access_token: TOKEN,
    };
    let Ok(checked) = check_proof(&proof, &request, &POLICY, NOW as f64) else {
        return;
    };
    assert!(
        !input.joined && !mutated,
        "a joined or mutated proof was accepted"
    );
    assert!(signer.is_genuine(), "an impostor's proof was accepted");
    assert!(
        matches!(input.typ, Typ::Dpop | Typ::DpopUpper)
            || matches!(&input.typ, Typ::Other(t) if t.eq_ignore_ascii_case("dpop+jwt") || t.eq_ignore_ascii_case("application/dpop+jwt"))
    );
    // The signer's own key (another kid may name the same key material).
    let thumbprint = |jwk: &Value| {
        serde_json::from_value::<Jwk>(jwk.clone())
            .ok()
            .and_then(|jwk| jwk.thumbprint().ok())
    };
    assert_eq!(
        jwk.as_ref().and_then(thumbprint),
        own.as_ref().and_then(thumbprint),
        "not the signer's own key"
    );
    let alg = header["alg"]
        .as_str()
        .and_then(Algorithm::from_name)
        .expect("a named algorithm");
    assert!(POLICY.algorithms.contains(&alg));
    assert_eq!(claims["htm"], METHOD);
    assert!(htu::same_target(&htu, URI), "{htu}");
    let iat = claims["iat"].as_f64().expect("a number");
    assert!(iat <= NOW as f64 + 5.0 && iat >= NOW as f64 - 65.0, "{iat}");
    assert!(input.ath_right);
    assert!(!checked.jti.is_empty() && checked.jti.len() <= 256);
    let jwk: Jwk = serde_json::from_value(jwk.expect("a jwk")).expect("a JWK");
    assert_eq!(checked.thumbprint, jwk.thumbprint().expect("thumbprint"));
});
