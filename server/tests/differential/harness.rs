//! authd's Verifier beside `jsonwebtoken::decode` (12, aws-lc-rs) on the same
//! tokens and the same keys, with the equivalent `Validation`: algorithms
//! pinned per key as authd pins them, `iss`, `aud`, leeway, `exp` required,
//! `nbf` checked. Shared by the property test (`server/tests/differential.rs`)
//! and the fuzz target `differential` (`fuzz/fuzz_targets/differential.rs`).
//!
//! A token is described by a [`Spec`], decoded from bytes so that proptest
//! and libFuzzer drive the same generator. Where the two libraries disagree
//! on accept/refuse, the token must show one of the [`Difference`]s — each a
//! deliberate choice with its reason — in the direction it explains;
//! anything else is a finding.

use std::{collections::HashMap, sync::Arc, time::Duration};

use authd::{
    Config, Verifier, VerifyRequest,
    config::{IssuerConfig, JwksConfig},
    dangerous::SigningKey,
    jwks::{Algorithm, IssuerKeys, Jwk, StaticKeys},
    verify::IssuerPolicy,
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Value, json};

pub const ISS: &str = "https://tenant.example.auth0.com/";
pub const AUD: &str = "https://api.example.com";
pub const AUD2: &str = "https://other.example.com";
pub const LEEWAY: i64 = 30;
const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// Where authd and jsonwebtoken part on purpose. Each variant says who is
/// stricter and why; the list is short on purpose too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Difference {
    /// authd refuses any `crit`; jsonwebtoken accepts `crit: ["b64"]` with
    /// `b64: true`. authd implements no extension header, so it has none it
    /// could honour (RFC 7515 §4.1.11).
    Crit,
    /// authd refuses `jku`, `x5u`, `jwk` and `x5c`; jsonwebtoken parses and
    /// ignores them. A token must never look like it may choose its key.
    KeyChoosingHeader,
    /// authd refuses a claim given twice (RFC 7519 §4: "MUST be unique");
    /// jsonwebtoken refuses only repeats of `exp`, `nbf`, `iss`, `aud`, `sub`,
    /// and lets the last one win elsewhere.
    DuplicateClaim,
    /// authd refuses a claim it interprets (`sub`, `iat`, `scope`,
    /// `permissions`, …) holding the wrong JSON type; jsonwebtoken checks the
    /// types of `exp`, `nbf`, `iss`, `aud` only. authd answers those claims
    /// to callers, who must get what RFC 7519 and Auth0 say they are.
    ClaimOfWrongType,
    /// authd wants `iss` to be one string (RFC 7519 §4.1.1); jsonwebtoken
    /// also takes an array holding the issuer.
    IssuerArray,
    /// authd refuses an `iat` in the future (beyond leeway); jsonwebtoken
    /// does not read `iat`. A token from the future is a clock or forgery
    /// problem, and revocation by subject compares `iat`.
    IatInFuture,
    /// A fractional NumericDate: authd compares the exact value with the
    /// clock's whole second (`exp` rounded down, `nbf`/`iat` rounded up, so
    /// never valid longer or sooner than written); jsonwebtoken rounds to the
    /// nearest second, which can accept up to half a second outside.
    FractionalTime,
    /// jsonwebtoken refuses `b64` that is not `true`, even without `crit`;
    /// authd ignores it: outside `crit`, a header member not understood is
    /// ignored (RFC 7515 §4), and the signing input is the ordinary one.
    B64Header,
    /// jsonwebtoken refuses header members it parses but authd does not
    /// read (`cty`, …) when they hold the wrong type or repeat; authd
    /// ignores members it does not use (RFC 7515 §4), and refuses repeats of
    /// those it reads (`alg`, `kid`, `typ`, `crit`, `jku`, …).
    UnreadHeaderMember,
    /// jsonwebtoken reads `exp`/`nbf` only as a `u64`: it refuses a negative
    /// or larger value, or `null`; authd takes any JSON number (RFC 7519 §2)
    /// — a far `exp` is the issuer's signed choice, a negative `nbf` is the
    /// past — and reads `null` as absent, as for every optional claim.
    NumericDateNotU64,
}

impl Difference {
    /// Whether authd is the side that refuses.
    pub fn authd_refuses(self) -> bool {
        !matches!(
            self,
            Difference::B64Header | Difference::UnreadHeaderMember | Difference::NumericDateNotU64
        )
    }
}

/// Reads choices from bytes; past the end every choice is 0 (the valid one).
pub struct Choices<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Choices<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Choices { bytes, at: 0 }
    }

    fn pick(&mut self, n: u8) -> u8 {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b % n
    }
}

/// A token to build: each field picks one variant (0 is the valid one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub signer: u8,
    pub alg: u8,
    pub kid: u8,
    pub typ: u8,
    pub header_extra: u8,
    pub iss: u8,
    pub aud: u8,
    pub exp: u8,
    pub nbf: u8,
    pub iat: u8,
    pub sub: u8,
    pub scope: u8,
    pub permissions: u8,
    pub duplicate: u8,
    pub signature: u8,
    pub flip: u8,
}

impl Spec {
    pub fn from_choices(c: &mut Choices<'_>) -> Spec {
        Spec {
            signer: c.pick(6),
            alg: c.pick(10),
            kid: c.pick(9),
            typ: c.pick(4),
            header_extra: c.pick(11),
            iss: c.pick(7),
            aud: c.pick(9),
            exp: c.pick(12),
            nbf: c.pick(10),
            iat: c.pick(5),
            sub: c.pick(4),
            scope: c.pick(3),
            permissions: c.pick(3),
            duplicate: c.pick(8),
            signature: c.pick(7),
            flip: c.pick(255),
        }
    }

    /// The deliberate differences this token shows.
    pub fn differences(&self) -> Vec<Difference> {
        use Difference::*;
        let mut found = Vec::new();
        match self.header_extra {
            1 | 2 | 10 => found.push(Crit),
            3..=6 => found.push(KeyChoosingHeader),
            7 => found.push(B64Header),
            _ => {}
        }
        if self.typ == 3 || self.header_extra == 9 {
            found.push(UnreadHeaderMember);
        }
        if self.iss == 4 {
            found.push(IssuerArray);
        }
        if matches!(self.exp, 7 | 8 | 11) || matches!(self.nbf, 6 | 9) || self.iat == 4 {
            found.push(FractionalTime);
        }
        if matches!(self.exp, 9 | 10) || matches!(self.nbf, 7 | 8) {
            found.push(NumericDateNotU64);
        }
        if matches!(self.iat, 2 | 4) {
            found.push(IatInFuture);
        }
        if self.sub == 2 || self.scope == 2 || self.permissions == 2 || self.iat == 3 {
            found.push(ClaimOfWrongType);
        }
        if self.duplicate != 0 {
            found.push(DuplicateClaim);
        }
        found
    }
}

/// The keys: the issuer's four, and two impostors claiming genuine kids.
struct Keys {
    signers: [SigningKey; 6],
}

/// Both verifiers over one key set.
pub struct Harness {
    keys: Keys,
    jwks: Vec<(String, jsonwebtoken::jwk::Jwk, Algorithm)>,
    verifier: Verifier,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness").finish_non_exhaustive()
    }
}

/// What went wrong on one token.
#[derive(Debug)]
pub struct Disagreement {
    pub spec: Spec,
    pub token: String,
    pub authd: Result<(), String>,
    pub jsonwebtoken: Result<(), String>,
}

impl std::fmt::Display for Disagreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "authd {:?}, jsonwebtoken {:?}, for {:?} (shows {:?}): {}",
            self.authd,
            self.jsonwebtoken,
            self.spec,
            self.spec.differences(),
            self.token
        )
    }
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The P-256 group order.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// `s` → `n − s` (big-endian, `s < n`): a second valid ECDSA signature.
pub fn negate_s(s: &mut [u8]) {
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(P256_N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        s[i] = d.rem_euclid(256) as u8;
    }
}

/// A JSON object with its members in order, repeats kept.
fn object(members: &[(&str, Value)]) -> String {
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(*k)))
        .collect();
    format!("{{{}}}", body.join(","))
}

#[allow(clippy::expect_used)]
impl Harness {
    pub fn new() -> Harness {
        let key = |alg, kid| SigningKey::generate(alg, kid).expect("key");
        let keys = Keys {
            signers: [
                key(Algorithm::RS256, "rsa-1"),
                key(Algorithm::PS256, "ps-1"),
                key(Algorithm::ES256, "ec-1"),
                key(Algorithm::EdDSA, "ed-1"),
                key(Algorithm::RS256, "rsa-1"),
                key(Algorithm::ES256, "ec-1"),
            ],
        };
        let genuine = &keys.signers[..4];
        let jwks = genuine
            .iter()
            .map(|k| {
                let jwk = serde_json::from_value(k.public_jwk()).expect("jwk");
                (k.kid().to_owned(), jwk, k.alg())
            })
            .collect();
        let authd_jwks: Vec<Jwk> = genuine
            .iter()
            .map(|k| serde_json::from_value(k.public_jwk()).expect("jwk"))
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let issuer = IssuerConfig {
            algorithms: ALGORITHMS.to_vec(),
            leeway_seconds: LEEWAY as u64,
            ..IssuerConfig::new(ISS, vec![AUD.to_owned(), AUD2.to_owned()])
        };
        let jwks_config = JwksConfig {
            min_refetch_interval_seconds: 1 << 40,
            max_stale_seconds: 1 << 40,
            ..JwksConfig::default()
        };
        let issuer_keys = IssuerKeys::new(
            ISS.into(),
            ALGORITHMS.to_vec(),
            Box::new(StaticKeys(authd_jwks)),
            jwks_config,
        );
        assert!(runtime.block_on(issuer_keys.refresh_now(Duration::from_secs(5))));
        let mut config = Config::default();
        config.verify.cache_max_entries = 0;
        let verifier = Verifier::new(
            HashMap::from([(ISS.to_owned(), IssuerPolicy::new(&issuer, issuer_keys))]),
            &config,
        );
        Harness {
            keys,
            jwks,
            verifier,
            runtime,
        }
    }

    /// The token `spec` describes, its times relative to `now`.
    pub fn build(&self, spec: &Spec, now: i64) -> String {
        let signer = &self.keys.signers[usize::from(spec.signer)];
        let algs = [
            "RS256", "PS256", "ES256", "EdDSA", "RS384", "ES384", "HS256", "none", "rs256",
        ];
        let alg = match spec.alg {
            0 => Value::from(signer.alg().as_str()),
            n => Value::from(algs[usize::from(n - 1)]),
        };
        let mut header: Vec<(&str, Value)> = vec![("alg", alg.clone())];
        match spec.kid {
            0 => header.push(("kid", Value::from(signer.kid()))),
            1..=5 => {
                let kids = ["rsa-1", "ps-1", "ec-1", "ed-1", "nope"];
                header.push(("kid", Value::from(kids[usize::from(spec.kid - 1)])));
            }
            6 => {}
            7 => header.push(("kid", json!(7))),
            _ => header.push(("kid", Value::Null)),
        }
        match spec.typ {
            0 => header.push(("typ", json!("JWT"))),
            1 => {}
            2 => header.push(("typ", json!("at+jwt"))),
            // authd reads `typ` (a string, the token's type) since it refuses
            // proofs and logout tokens; `cty` it still ignores.
            _ => header.push(("cty", json!(5))),
        }
        match spec.header_extra {
            1 => header.extend([("crit", json!(["exp"])), ("exp", json!(1))]),
            2 => header.extend([("crit", json!(["b64"])), ("b64", json!(true))]),
            3 => header.push(("jku", json!("https://evil.example.com/jwks.json"))),
            4 => header.push(("x5u", json!("https://evil.example.com/cert.pem"))),
            5 => header.push(("jwk", self.keys.signers[0].public_jwk())),
            6 => header.push(("x5c", json!(["MIIB"]))),
            7 => header.push(("b64", json!(false))),
            8 => header.push(("alg", alg)),
            9 => header.extend([("cty", json!("JWT")), ("cty", json!("JWT"))]),
            10 => header.push(("crit", json!([]))),
            _ => {}
        }

        let t = |offset: i64| json!(now + offset);
        let f = |offset: f64| json!(now as f64 + offset);
        let mut claims: Vec<(&str, Value)> = Vec::new();
        match spec.iss {
            0 => claims.push(("iss", json!(ISS))),
            1 => claims.push(("iss", json!(ISS.trim_end_matches('/')))),
            2 => claims.push(("iss", json!("https://evil.example.com/"))),
            3 => {}
            4 => claims.push(("iss", json!([ISS]))),
            5 => claims.push(("iss", json!(42))),
            _ => claims.push(("iss", Value::Null)),
        }
        let userinfo = format!("{ISS}userinfo");
        match spec.aud {
            0 => claims.push(("aud", json!([AUD, userinfo]))),
            1 => claims.push(("aud", json!(AUD))),
            2 => claims.push(("aud", json!(AUD2))),
            3 => claims.push(("aud", json!("https://someone-else.example.com"))),
            4 => claims.push(("aud", json!([]))),
            5 => {}
            6 => claims.push(("aud", json!(7))),
            7 => claims.push(("aud", json!([AUD, 7]))),
            _ => claims.push(("aud", Value::Null)),
        }
        match spec.exp {
            0 => claims.push(("exp", t(3600))),
            1 => claims.push(("exp", t(-3600))),
            2 => claims.push(("exp", t(-LEEWAY))),
            3 => claims.push(("exp", t(-LEEWAY - 1))),
            4 => {}
            5 => claims.push(("exp", json!("soon"))),
            6 => claims.push(("exp", Value::Null)),
            7 => claims.push(("exp", f(-LEEWAY as f64 - 0.4))),
            8 => claims.push(("exp", f(-LEEWAY as f64 - 0.6))),
            9 => claims.push(("exp", json!(1e30))),
            10 => claims.push(("exp", json!(-5))),
            _ => claims.push(("exp", f(3600.5))),
        }
        match spec.nbf {
            0 => {}
            1 => claims.push(("nbf", t(-10))),
            2 => claims.push(("nbf", t(LEEWAY))),
            3 => claims.push(("nbf", t(LEEWAY + 1))),
            4 => claims.push(("nbf", t(3600))),
            5 => claims.push(("nbf", json!("x"))),
            6 => claims.push(("nbf", f(LEEWAY as f64 + 0.4))),
            7 => claims.push(("nbf", json!(-5))),
            8 => claims.push(("nbf", Value::Null)),
            _ => claims.push(("nbf", f(LEEWAY as f64 + 0.6))),
        }
        match spec.iat {
            0 => claims.push(("iat", t(-10))),
            1 => {}
            2 => claims.push(("iat", t(LEEWAY + 1))),
            3 => claims.push(("iat", json!("x"))),
            _ => claims.push(("iat", f(LEEWAY as f64 + 0.5))),
        }
        match spec.sub {
            0 => claims.push(("sub", json!("auth0|alice"))),
            1 => {}
            2 => claims.push(("sub", json!(true))),
            _ => claims.push(("sub", Value::Null)),
        }
        match spec.scope {
            0 => claims.push(("scope", json!("openid read:orders"))),
            1 => {}
            _ => claims.push(("scope", json!(["read:orders"]))),
        }
        match spec.permissions {
            0 => claims.push(("permissions", json!(["write:orders"]))),
            1 => {}
            _ => claims.push(("permissions", json!("write:orders"))),
        }
        claims.push(("x", json!(1)));
        match spec.duplicate {
            1 => claims.push(("exp", t(7200))),
            2 => claims.push(("sub", json!("auth0|mallory"))),
            3 => claims.push(("iss", json!(ISS))),
            4 => claims.push(("x", json!(2))),
            5 => claims.push(("scope", json!("admin"))),
            6 => claims.push(("aud", json!(AUD))),
            7 => claims.push(("nbf", t(-5))),
            _ => {}
        }

        let input = format!("{}.{}", b64(object(&header)), b64(object(&claims)));
        let mut signature = signer.sign_bytes(input.as_bytes());
        match spec.signature {
            1 => {
                let at = usize::from(spec.flip) % signature.len();
                signature[at] ^= 1 << (spec.flip % 8);
            }
            2 => signature.truncate(signature.len() / 2),
            3 => signature.clear(),
            4 if signature.len() == 64 && signer.alg() == Algorithm::ES256 => {
                negate_s(&mut signature[32..]);
            }
            5 => signature = vec![spec.flip; signature.len()],
            6 => {
                // Signed, then the claims swapped for others.
                let forged = object(&[("iss", json!(ISS)), ("aud", json!(AUD)), ("exp", t(3600))]);
                let header_b64 = input.split('.').next().unwrap_or_default();
                return format!("{header_b64}.{}.{}", b64(forged), b64(signature));
            }
            _ => {}
        }
        format!("{input}.{}", b64(signature))
    }

    /// authd's answer.
    pub fn authd(&self, token: &str) -> Result<(), String> {
        let request = VerifyRequest {
            token: token.to_owned(),
            ..VerifyRequest::default()
        };
        self.runtime
            .block_on(self.verifier.verify(&request))
            .map(|_: Arc<_>| ())
            .map_err(|e| format!("{:?}: {e}", e.reason()))
    }

    /// jsonwebtoken's answer, with the key the kid names and the Validation
    /// equivalent to the issuer's configuration.
    pub fn jsonwebtoken(&self, token: &str) -> Result<(), String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("header: {e}"))?;
        let kid = header.kid.unwrap_or_default();
        let (_, jwk, alg) = self
            .jwks
            .iter()
            .find(|(k, _, _)| *k == kid)
            .ok_or_else(|| format!("no key {kid:?}"))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key: {e}"))?;
        // authd pins a key to its JWK's `alg` among the configured ones; the
        // fixture's JWKs all name theirs.
        let pinned = match alg {
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::PS256 => jsonwebtoken::Algorithm::PS256,
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            _ => jsonwebtoken::Algorithm::EdDSA,
        };
        let mut validation = Validation::new(pinned);
        validation.leeway = LEEWAY as u64;
        validation.validate_nbf = true;
        validation.set_issuer(&[ISS]);
        validation.set_audience(&[AUD, AUD2]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Builds `spec`'s token and compares both answers; a disagreement that
    /// none of the token's [`Difference`]s explains is returned.
    pub fn compare(&self, spec: &Spec) -> Result<(bool, bool), Box<Disagreement>> {
        // Both libraries read the clock: retry when the second turned.
        let (token, authd, jwt) = loop {
            let now = unix_now();
            let token = self.build(spec, now);
            let (authd, jwt) = (self.authd(&token), self.jsonwebtoken(&token));
            if unix_now() == now {
                break (token, authd, jwt);
            }
        };
        if authd.is_ok() != jwt.is_ok() {
            let explained = spec
                .differences()
                .iter()
                .any(|d| d.authd_refuses() == authd.is_err());
            if !explained {
                return Err(Box::new(Disagreement {
                    spec: *spec,
                    token,
                    authd,
                    jsonwebtoken: jwt,
                }));
            }
        }
        Ok((authd.is_ok(), jwt.is_ok()))
    }
}
