//! The fixed world the fuzz targets share: one issuer, configured for RS256,
//! PS256, ES256 and EdDSA, whose key set holds the keys in `keys/` (no HTTP,
//! no refetch), a fixed clock, and helpers that sign with those keys.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
    time::Duration,
};

use authd::{
    Config, Error, VerifiedToken, Verifier, VerifyRequest,
    config::{IssuerConfig, JwksConfig},
    jwks::{Algorithm, IssuerKeys, Jwk, StaticKeys},
    verify::IssuerPolicy,
};
use aws_lc_rs::{
    rand::SystemRandom,
    signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};

/// The issuer the verifier trusts.
pub const ISS: &str = "https://tenant.example.auth0.com/";
/// The audiences it accepts.
pub const AUDIENCES: [&str; 2] = ["https://api.example.com", "https://other.example.com"];
/// The clock every verification runs at (unix seconds).
pub const NOW: i64 = 1_800_000_000;
/// The issuer's leeway on `exp`, `nbf` and `iat`.
pub const LEEWAY: i64 = 30;
/// The algorithms the issuer is configured for.
pub const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// Who signs a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum Signer {
    /// The RSA key, RS256, kid `rsa-1` (its JWK says `alg: RS256`).
    Rsa,
    /// The same RSA key published again without `alg`, kid `ps-1`: RS256 or PS256.
    RsaPss,
    /// The P-256 key, ES256, kid `ec-1`.
    Ec,
    /// The Ed25519 key, EdDSA, kid `ed-1`.
    Ed,
    /// Another RSA key that claims kid `rsa-1`: never in the key set.
    ImpostorRsa,
    /// Another P-256 key that claims kid `ec-1`: never in the key set.
    ImpostorEc,
}

impl Signer {
    /// Every signer.
    pub const ALL: [Signer; 6] = [
        Signer::Rsa,
        Signer::RsaPss,
        Signer::Ec,
        Signer::Ed,
        Signer::ImpostorRsa,
        Signer::ImpostorEc,
    ];

    /// The JOSE algorithm it signs with.
    pub fn alg(self) -> &'static str {
        match self {
            Signer::Rsa | Signer::ImpostorRsa => "RS256",
            Signer::RsaPss => "PS256",
            Signer::Ec | Signer::ImpostorEc => "ES256",
            Signer::Ed => "EdDSA",
        }
    }

    /// The kid its tokens carry.
    pub fn kid(self) -> &'static str {
        match self {
            Signer::Rsa | Signer::ImpostorRsa => "rsa-1",
            Signer::RsaPss => "ps-1",
            Signer::Ec | Signer::ImpostorEc => "ec-1",
            Signer::Ed => "ed-1",
        }
    }

    /// Whether its public key is in the issuer's key set under its kid.
    pub fn is_genuine(self) -> bool {
        !matches!(self, Signer::ImpostorRsa | Signer::ImpostorEc)
    }
}

struct Keys {
    rsa: RsaKeyPair,
    ec: EcdsaKeyPair,
    ed: Ed25519KeyPair,
    impostor_rsa: RsaKeyPair,
    impostor_ec: EcdsaKeyPair,
}

/// The shared world; see [`fixture`].
pub struct Fixture {
    keys: Keys,
    jwks: Vec<Value>,
    uncached: Verifier,
    cached: Verifier,
    runtime: tokio::runtime::Runtime,
    rng: SystemRandom,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture").finish_non_exhaustive()
    }
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The fixture, built on first use (keys parsed, key set installed).
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(Fixture::new)
}

#[allow(clippy::expect_used)]
impl Fixture {
    fn new() -> Fixture {
        let ec_key = |der: &[u8]| {
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                .expect("P-256 key")
        };
        let keys = Keys {
            rsa: RsaKeyPair::from_pkcs8(include_bytes!("../keys/rsa-2048.pk8")).expect("RSA key"),
            ec: ec_key(include_bytes!("../keys/ec-p256.pk8")),
            ed: Ed25519KeyPair::from_pkcs8_maybe_unchecked(include_bytes!("../keys/ed25519.pk8"))
                .expect("Ed25519 key"),
            impostor_rsa: RsaKeyPair::from_pkcs8(include_bytes!("../keys/impostor-rsa-2048.pk8"))
                .expect("RSA key"),
            impostor_ec: ec_key(include_bytes!("../keys/impostor-ec-p256.pk8")),
        };
        let rsa_public = keys.rsa.public_key();
        let (n, e) = (
            b64(rsa_public.modulus().big_endian_without_leading_zero()),
            b64(rsa_public.exponent().big_endian_without_leading_zero()),
        );
        let point = keys.ec.public_key().as_ref();
        let jwks = vec![
            json!({"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig", "n": n, "e": e}),
            json!({"kty": "RSA", "kid": "ps-1", "n": n, "e": e}),
            json!({"kty": "EC", "kid": "ec-1", "alg": "ES256", "use": "sig", "crv": "P-256",
                   "x": b64(&point[1..33]), "y": b64(&point[33..])}),
            json!({"kty": "OKP", "kid": "ed-1", "alg": "EdDSA", "crv": "Ed25519",
                   "x": b64(keys.ed.public_key().as_ref())}),
        ];
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let parsed: Vec<Jwk> = jwks
            .iter()
            .map(|j| serde_json::from_value(j.clone()).expect("jwk"))
            .collect();
        let build = |cache_max_entries: usize| {
            let issuer = IssuerConfig {
                algorithms: ALGORITHMS.to_vec(),
                leeway_seconds: LEEWAY as u64,
                ..IssuerConfig::new(ISS, AUDIENCES.iter().map(|a| (*a).to_owned()).collect())
            };
            // No refetch ever: an unknown kid is refused from the one set.
            let jwks_config = JwksConfig {
                min_refetch_interval_seconds: 1 << 40,
                max_stale_seconds: 1 << 40,
                ..JwksConfig::default()
            };
            let keys = IssuerKeys::new(
                ISS.into(),
                ALGORITHMS.to_vec(),
                Box::new(StaticKeys(parsed.clone())),
                jwks_config,
            );
            assert!(runtime.block_on(keys.refresh_now(Duration::from_secs(5))));
            let mut config = Config::default();
            config.verify.cache_max_entries = cache_max_entries;
            let policies = HashMap::from([(ISS.to_owned(), IssuerPolicy::new(&issuer, keys))]);
            Verifier::new(policies, &config)
        };
        let uncached = build(0);
        let cached = build(1024);
        Fixture {
            keys,
            jwks,
            uncached,
            cached,
            runtime,
            rng: SystemRandom::new(),
        }
    }

    /// The issuer's key set as its JWKS document would list it.
    pub fn jwks(&self) -> &[Value] {
        &self.jwks
    }

    /// A signature by `signer` over `message`.
    pub fn sign(&self, signer: Signer, message: &[u8]) -> Vec<u8> {
        let rsa = |pair: &RsaKeyPair, encoding: &'static dyn signature::RsaEncoding| {
            let mut out = vec![0; pair.public_modulus_len()];
            pair.sign(encoding, &self.rng, message, &mut out)
                .expect("RSA signature");
            out
        };
        let ec = |pair: &EcdsaKeyPair| {
            pair.sign(&self.rng, message)
                .expect("ECDSA signature")
                .as_ref()
                .to_vec()
        };
        match signer {
            Signer::Rsa => rsa(&self.keys.rsa, &signature::RSA_PKCS1_SHA256),
            Signer::RsaPss => rsa(&self.keys.rsa, &signature::RSA_PSS_SHA256),
            Signer::ImpostorRsa => rsa(&self.keys.impostor_rsa, &signature::RSA_PKCS1_SHA256),
            Signer::Ec => ec(&self.keys.ec),
            Signer::ImpostorEc => ec(&self.keys.impostor_ec),
            Signer::Ed => self.keys.ed.sign(message).as_ref().to_vec(),
        }
    }

    /// `header.payload.signature`, each part base64url, signed by `signer`.
    pub fn token(&self, signer: Signer, header: &[u8], payload: &[u8]) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let signature = self.sign(signer, input.as_bytes());
        format!("{input}.{}", b64(signature))
    }

    /// Verifies `token` at [`NOW`] with the verifier whose cache is off.
    pub fn verify(&self, token: &str) -> Result<Arc<VerifiedToken>, Error> {
        self.verify_with(&self.uncached, token)
    }

    /// Verifies `token` at [`NOW`] with the verifier that caches results.
    pub fn verify_cached(&self, token: &str) -> Result<Arc<VerifiedToken>, Error> {
        self.verify_with(&self.cached, token)
    }

    fn verify_with(&self, verifier: &Verifier, token: &str) -> Result<Arc<VerifiedToken>, Error> {
        let request = VerifyRequest {
            token: token.to_owned(),
            ..VerifyRequest::default()
        };
        self.runtime.block_on(verifier.verify_at(&request, NOW))
    }
}

/// Panics unless an accepted token holds what any accepted token must: the
/// configured issuer, a configured audience, and an `exp` not past at
/// [`NOW`] (with leeway).
pub fn assert_acceptable(verified: &VerifiedToken) {
    assert_eq!(verified.issuer, ISS, "accepted a foreign issuer");
    assert!(
        verified
            .audiences
            .iter()
            .any(|a| AUDIENCES.contains(&a.as_str())),
        "accepted without a configured audience: {:?}",
        verified.audiences
    );
    assert!(
        NOW <= verified.expires_at.saturating_add(LEEWAY),
        "accepted an expired token: exp {}",
        verified.expires_at
    );
}

/// A sample of well-formed tokens: one valid per genuine signer, and a few
/// that each fail one check. For seed corpora.
pub fn sample_tokens(f: &Fixture) -> Vec<String> {
    let claims = |exp: i64| {
        json!({
            "iss": ISS, "sub": "auth0|alice", "aud": [AUDIENCES[0], format!("{ISS}userinfo")],
            "iat": NOW - 10, "exp": exp, "scope": "openid read:orders",
            "permissions": ["write:orders"], "azp": "client-1", "sid": "session-1",
        })
        .to_string()
    };
    let header = |s: Signer| json!({"alg": s.alg(), "typ": "JWT", "kid": s.kid()}).to_string();
    let mut tokens: Vec<String> = Signer::ALL
        .iter()
        .map(|s| f.token(*s, header(*s).as_bytes(), claims(NOW + 3600).as_bytes()))
        .collect();
    tokens.push(f.token(
        Signer::Rsa,
        header(Signer::Rsa).as_bytes(),
        claims(NOW - 3600).as_bytes(),
    ));
    tokens.push(f.token(
        Signer::Rsa,
        br#"{"alg":"RS256","kid":"rsa-1","crit":["exp"]}"#,
        claims(NOW + 3600).as_bytes(),
    ));
    tokens.push(format!(
        "{}.{}.",
        b64(r#"{"alg":"none"}"#),
        b64(claims(NOW + 3600))
    ));
    tokens
}
