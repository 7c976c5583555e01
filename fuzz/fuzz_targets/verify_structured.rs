//! The whole Verifier on near-valid JWTs: real header and claims JSON built
//! from the fuzzer's choices (alg, kid, iss, aud, exp, nbf, iat, scope,
//! crit, key-choosing headers, duplicate members, values of any type),
//! correctly base64url-encoded, signed with the fixture's keys or an
//! impostor's, then sometimes with a mutated signature — so that the fuzzer
//! spends its time past base64 and JSON.
//!
//! Invariants: never a panic; an accepted token carries the configured
//! issuer and audience and an `exp`, `nbf` and `iat` that hold at the clock
//! (with leeway); it was signed by the key its kid names, with the algorithm
//! its header names; it has no `crit`, no key-choosing header, no duplicate
//! claim and no claim of the wrong type; a mutated signature never verifies;
//! and the cached verifier agrees with the uncached one, hit or miss.
#![no_main]

use authd_fuzz::{AUDIENCES, ISS, LEEWAY, NOW, Signer, fixture};
use libfuzzer_sys::{arbitrary, fuzz_target};
use serde_json::Value;

#[derive(Debug, Clone, arbitrary::Arbitrary)]
enum Leaf {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

/// Any JSON value, two levels deep at most.
#[derive(Debug, Clone, arbitrary::Arbitrary)]
enum Val {
    Leaf(Leaf),
    Array(Vec<Leaf>),
    Object(Vec<(String, Leaf)>),
}

impl Leaf {
    fn json(&self) -> Value {
        match self {
            Leaf::Null => Value::Null,
            Leaf::Bool(b) => Value::Bool(*b),
            Leaf::Int(i) => Value::from(*i),
            Leaf::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Leaf::Str(s) => Value::String(s.clone()),
        }
    }
}

impl Val {
    fn json(&self) -> Value {
        match self {
            Val::Leaf(leaf) => leaf.json(),
            Val::Array(items) => Value::Array(items.iter().map(Leaf::json).collect()),
            Val::Object(members) => {
                Value::Object(members.iter().map(|(k, v)| (k.clone(), v.json())).collect())
            }
        }
    }
}

#[derive(Debug, arbitrary::Arbitrary)]
enum AlgSpec {
    OfSigner,
    Named(AlgName),
    Raw(Val),
}

#[derive(Debug, Clone, Copy, arbitrary::Arbitrary)]
enum AlgName {
    RS256,
    PS256,
    ES256,
    EdDSA,
    RS384,
    ES384,
    HS256,
    Lowercase,
    None,
    NoneCapitalised,
}

impl AlgName {
    fn as_str(self) -> &'static str {
        match self {
            AlgName::RS256 => "RS256",
            AlgName::PS256 => "PS256",
            AlgName::ES256 => "ES256",
            AlgName::EdDSA => "EdDSA",
            AlgName::RS384 => "RS384",
            AlgName::ES384 => "ES384",
            AlgName::HS256 => "HS256",
            AlgName::Lowercase => "rs256",
            AlgName::None => "none",
            AlgName::NoneCapitalised => "None",
        }
    }
}

#[derive(Debug, arbitrary::Arbitrary)]
enum KidSpec {
    OfSigner,
    Named(KidName),
    Absent,
    Raw(Val),
}

#[derive(Debug, Clone, Copy, arbitrary::Arbitrary)]
enum KidName {
    Rsa,
    Ps,
    Ec,
    Ed,
    Unknown,
    Empty,
}

impl KidName {
    fn as_str(self) -> &'static str {
        match self {
            KidName::Rsa => "rsa-1",
            KidName::Ps => "ps-1",
            KidName::Ec => "ec-1",
            KidName::Ed => "ed-1",
            KidName::Unknown => "nope",
            KidName::Empty => "",
        }
    }
}

#[derive(Debug, Clone, Copy, arbitrary::Arbitrary)]
enum HeaderName {
    Alg,
    Kid,
    Typ,
    Crit,
    Jku,
    X5u,
    Jwk,
    X5c,
    Cty,
    B64,
}

impl HeaderName {
    fn as_str(self) -> &'static str {
        match self {
            HeaderName::Alg => "alg",
            HeaderName::Kid => "kid",
            HeaderName::Typ => "typ",
            HeaderName::Crit => "crit",
            HeaderName::Jku => "jku",
            HeaderName::X5u => "x5u",
            HeaderName::Jwk => "jwk",
            HeaderName::X5c => "x5c",
            HeaderName::Cty => "cty",
            HeaderName::B64 => "b64",
        }
    }
}

#[derive(Debug, arbitrary::Arbitrary)]
struct HeaderSpec {
    alg: AlgSpec,
    kid: KidSpec,
    typ: Option<Val>,
    /// Any further members, by name (crit, jku, x5u, jwk, x5c, ...), in order:
    /// a name given twice is a duplicate member.
    members: Vec<(HeaderName, Val)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, arbitrary::Arbitrary)]
enum ClaimName {
    Iss,
    Sub,
    Aud,
    Exp,
    Nbf,
    Iat,
    Jti,
    Sid,
    Scope,
    Scp,
    Permissions,
    Azp,
    ClientId,
}

impl ClaimName {
    fn as_str(self) -> &'static str {
        match self {
            ClaimName::Iss => "iss",
            ClaimName::Sub => "sub",
            ClaimName::Aud => "aud",
            ClaimName::Exp => "exp",
            ClaimName::Nbf => "nbf",
            ClaimName::Iat => "iat",
            ClaimName::Jti => "jti",
            ClaimName::Sid => "sid",
            ClaimName::Scope => "scope",
            ClaimName::Scp => "scp",
            ClaimName::Permissions => "permissions",
            ClaimName::Azp => "azp",
            ClaimName::ClientId => "client_id",
        }
    }
}

/// A NumericDate around the clock.
#[derive(Debug, Clone, Copy, arbitrary::Arbitrary)]
enum Time {
    /// `NOW + offset` seconds: the leeway's edges are within reach.
    Offset(i16),
    /// `NOW + offset + fraction/256`.
    Fraction(i16, u8),
    /// Anywhere at all.
    Far(i64),
}

impl Time {
    fn json(self) -> Value {
        match self {
            Time::Offset(o) => Value::from(NOW + i64::from(o)),
            Time::Fraction(o, f) => Value::from((NOW + i64::from(o)) as f64 + f64::from(f) / 256.0),
            Time::Far(t) => Value::from(t),
        }
    }
}

#[derive(Debug, Clone, Copy, arbitrary::Arbitrary)]
enum Audience {
    Api,
    Other,
    Userinfo,
    Foreign,
}

impl Audience {
    fn as_str(self) -> String {
        match self {
            Audience::Api => AUDIENCES[0].to_owned(),
            Audience::Other => AUDIENCES[1].to_owned(),
            Audience::Userinfo => format!("{ISS}userinfo"),
            Audience::Foreign => "https://someone-else.example.com".to_owned(),
        }
    }
}

/// A claim's value: a well-typed one, or anything.
#[derive(Debug, arbitrary::Arbitrary)]
enum Claim<T> {
    Good(T),
    Absent,
    Raw(Val),
}

#[derive(Debug, Clone, Copy, arbitrary::Arbitrary)]
enum Issuer {
    Configured,
    WithoutSlash,
    Foreign,
}

#[derive(Debug, arbitrary::Arbitrary)]
enum Aud {
    One(Audience),
    Many(Vec<Audience>),
}

#[derive(Debug, arbitrary::Arbitrary)]
struct ClaimsSpec {
    iss: Claim<Issuer>,
    aud: Claim<Aud>,
    exp: Claim<Time>,
    nbf: Option<Claim<Time>>,
    iat: Option<Claim<Time>>,
    sub: Claim<String>,
    scope: Option<Claim<String>>,
    scp: Option<Claim<Vec<String>>>,
    permissions: Option<Claim<Vec<String>>>,
    /// More members after these, by name: registered names repeat a claim.
    more: Vec<(Result<ClaimName, String>, Val)>,
    /// Whether the extra members go first.
    more_first: bool,
}

#[derive(Debug, arbitrary::Arbitrary)]
enum SignatureSpec {
    /// As signed.
    Valid,
    /// ES256 only: `(r, s)` → `(r, n − s)`, a second valid signature.
    HighS,
    /// One bit flipped.
    Flip(u16, u8),
    /// Shortened.
    Truncate(u16),
    /// Replaced by arbitrary bytes.
    Replace(Vec<u8>),
}

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    signer: Signer,
    header: HeaderSpec,
    claims: ClaimsSpec,
    signature: SignatureSpec,
}

/// Members written in order, duplicates kept.
fn object(members: &[(String, Value)]) -> String {
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
        .collect();
    format!("{{{}}}", body.join(","))
}

fn claim<T>(claim: &Claim<T>, good: impl Fn(&T) -> Value) -> Option<Value> {
    match claim {
        Claim::Good(t) => Some(good(t)),
        Claim::Absent => None,
        Claim::Raw(v) => Some(v.json()),
    }
}

/// Whether `value` is of the type authd requires for claim `name`.
fn well_typed(name: &str, value: &Value) -> bool {
    let strings = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
    match name {
        "iss" => value.is_string(),
        "sub" | "jti" | "sid" | "scope" | "azp" | "client_id" => {
            value.is_null() || value.is_string()
        }
        "aud" | "scp" => value.is_null() || value.is_string() || strings(value),
        "exp" | "nbf" | "iat" => value.is_null() || value.is_number(),
        "permissions" => value.is_null() || strings(value),
        _ => true,
    }
}

/// The P-256 group order.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// `n − s` for a big-endian `s < n`.
fn negate_s(s: &mut [u8]) {
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(P256_N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        s[i] = d.rem_euclid(256) as u8;
    }
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}

fuzz_target!(|input: Input| {
    let f = fixture();
    let signer = input.signer;

    // === the header ===
    let mut header: Vec<(String, Value)> = Vec::new();
    let alg = match &input.header.alg {
        AlgSpec::OfSigner => Value::from(signer.alg()),
        AlgSpec::Named(name) => Value::from(name.as_str()),
        AlgSpec::Raw(v) => v.json(),
    };
    header.push(("alg".to_owned(), alg.clone()));
    let kid = match &input.header.kid {
        KidSpec::OfSigner => Some(Value::from(signer.kid())),
        KidSpec::Named(name) => Some(Value::from(name.as_str())),
        KidSpec::Absent => None,
        KidSpec::Raw(v) => Some(v.json()),
    };
    if let Some(kid) = &kid {
        header.push(("kid".to_owned(), kid.clone()));
    }
    if let Some(typ) = &input.header.typ {
        header.push(("typ".to_owned(), typ.json()));
    }
    for (name, value) in &input.header.members {
        header.push((name.as_str().to_owned(), value.json()));
    }

    // === the claims ===
    let c = &input.claims;
    let mut registered: Vec<(String, Value)> = Vec::new();
    let mut push = |name: &str, value: Option<Value>| {
        if let Some(value) = value {
            registered.push((name.to_owned(), value));
        }
    };
    push(
        "iss",
        claim(&c.iss, |i| match i {
            Issuer::Configured => Value::from(ISS),
            Issuer::WithoutSlash => Value::from(ISS.trim_end_matches('/')),
            Issuer::Foreign => Value::from("https://evil.example.com/"),
        }),
    );
    push(
        "aud",
        claim(&c.aud, |a| match a {
            Aud::One(one) => Value::from(one.as_str()),
            Aud::Many(many) => many.iter().map(|a| Value::from(a.as_str())).collect(),
        }),
    );
    push("exp", claim(&c.exp, |t| t.json()));
    push("nbf", c.nbf.as_ref().and_then(|t| claim(t, |t| t.json())));
    push("iat", c.iat.as_ref().and_then(|t| claim(t, |t| t.json())));
    push("sub", claim(&c.sub, |s| Value::from(s.as_str())));
    push(
        "scope",
        c.scope
            .as_ref()
            .and_then(|s| claim(s, |s| Value::from(s.as_str()))),
    );
    push(
        "scp",
        c.scp
            .as_ref()
            .and_then(|s| claim(s, |s| Value::from(s.clone()))),
    );
    push(
        "permissions",
        c.permissions
            .as_ref()
            .and_then(|s| claim(s, |s| Value::from(s.clone()))),
    );
    let more: Vec<(String, Value)> = c
        .more
        .iter()
        .map(|(name, v)| {
            let name = match name {
                Ok(registered) => registered.as_str().to_owned(),
                Err(other) => other.clone(),
            };
            (name, v.json())
        })
        .collect();
    let claims: Vec<(String, Value)> = if c.more_first {
        more.into_iter().chain(registered).collect()
    } else {
        registered.into_iter().chain(more).collect()
    };

    // === sign, then perhaps spoil the signature ===
    let header_json = object(&header);
    let claims_json = object(&claims);
    let input_b64 = format!("{}.{}", b64(&header_json), b64(&claims_json));
    let mut signature = f.sign(signer, input_b64.as_bytes());
    let original = signature.clone();
    match &input.signature {
        SignatureSpec::Valid => {}
        SignatureSpec::HighS => {
            if signature.len() == 64 {
                negate_s(&mut signature[32..]);
            }
        }
        SignatureSpec::Flip(at, bit) => {
            let at = usize::from(*at) % signature.len();
            signature[at] ^= 1 << (bit % 8);
        }
        SignatureSpec::Truncate(by) => {
            let keep = signature.len() - 1 - usize::from(*by) % signature.len();
            signature.truncate(keep);
        }
        SignatureSpec::Replace(bytes) => signature = bytes.clone(),
    }
    let mutated = signature != original && !matches!(input.signature, SignatureSpec::HighS);
    let token = format!("{input_b64}.{}", b64(&signature));

    let Ok(verified) = f.verify(&token) else {
        return;
    };

    // === what an accepted token must be ===
    authd_fuzz::assert_acceptable(&verified);
    assert!(!mutated, "a mutated signature verified: {token}");
    assert!(
        signer.is_genuine(),
        "an impostor's signature verified: {token}"
    );
    assert_eq!(
        alg,
        Value::from(signer.alg()),
        "signed with another alg than its header names"
    );
    let kid = kid.as_ref().and_then(Value::as_str).unwrap_or_default();
    let fits = match signer {
        Signer::Rsa | Signer::RsaPss => {
            kid == "ps-1" || (kid == "rsa-1" && signer.alg() == "RS256")
        }
        Signer::Ec => kid == "ec-1",
        Signer::Ed => kid == "ed-1",
        Signer::ImpostorRsa | Signer::ImpostorEc => false,
    };
    assert!(fits, "verified with a key its kid {kid:?} does not name");

    let mut names: Vec<&str> = header.iter().map(|(k, _)| k.as_str()).collect();
    for refused in ["crit", "jku", "x5u", "jwk", "x5c"] {
        assert!(
            header.iter().all(|(k, v)| k != refused || v.is_null()),
            "accepted a {refused} header: {header_json}"
        );
    }
    names.sort_unstable();
    for read in ["alg", "kid", "crit", "jku", "x5u", "jwk", "x5c"] {
        assert!(
            names.iter().filter(|n| **n == read).count() <= 1,
            "accepted a duplicate {read} header: {header_json}"
        );
    }
    let mut claim_names: Vec<&str> = claims.iter().map(|(k, _)| k.as_str()).collect();
    claim_names.sort_unstable();
    assert!(
        claim_names.windows(2).all(|w| w[0] != w[1]),
        "accepted a duplicate claim: {claims_json}"
    );
    for (name, value) in &claims {
        assert!(well_typed(name, value), "accepted {name} = {value}");
        let leeway = (NOW + LEEWAY) as f64;
        if matches!(name.as_str(), "nbf" | "iat") {
            let at = value.as_f64().unwrap_or(f64::MIN);
            assert!(
                at <= leeway,
                "accepted {name} = {value}, past the clock and leeway"
            );
        }
        if name == "exp" {
            let at = value.as_f64().expect("exp is required");
            assert!(at >= (NOW - LEEWAY) as f64, "accepted exp = {value}");
        }
    }

    // The cache, missed then hit, says what the uncached verifier says.
    for _ in 0..2 {
        let cached = f.verify_cached(&token).expect("the cached verifier agrees");
        assert_eq!(*cached, *verified);
    }
});
