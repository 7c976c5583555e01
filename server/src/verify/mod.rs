//! The VerifyToken pipeline (DESIGN.md, "Verification pipeline"):
//!
//! 1. cheap rejections: empty, oversized, not three base64url segments;
//! 2. the issuer by exact `iss`, the key by `kid`, the algorithm from the
//!    issuer's configuration and the key — never from the token alone;
//! 3. the signature;
//! 4. `exp`/`nbf`/`iat` with leeway, `aud`, required scopes.

mod cache;
pub(crate) mod token;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use authd_jose::{
    binding::{Confirmation, split_authorization},
    typ::{media_type, names, never_an_access_token},
};
use serde_json::{Map, Value};

use crate::{
    config::{Config, IssuerConfig},
    dpop::{DpopGuard, Presentation},
    error::{Error, truncate},
    jwks::{Algorithm, IssuerKeys},
    revocation::{Revocations, SignedIdentity},
};

/// What the caller asks of a token.
#[derive(Debug, Clone, Default)]
pub struct VerifyRequest {
    /// The token: the `Authorization` value as the protected service received
    /// it (`Bearer …`, `DPoP …`) or the bare token.
    pub token: String,
    /// Scopes or permissions the token must all hold.
    pub required_scopes: Vec<String>,
    /// An audience the token must carry; one of the issuer's configured ones.
    pub audience: Option<String>,
    /// The request's `DPoP` header, when it had one.
    pub dpop_proof: Option<String>,
    /// The request's method, for the proof's `htm`.
    pub http_method: String,
    /// The request's URI, for the proof's `htu`.
    pub http_uri: String,
    /// The client certificate (DER) the protected service received, for
    /// certificate-bound tokens.
    pub client_certificate: Option<Vec<u8>>,
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// `sub`.
    pub subject: String,
    /// `iss`.
    pub issuer: String,
    /// `aud`, as a list.
    pub audiences: Vec<String>,
    /// `scope` split on spaces, or `scp`.
    pub scopes: Vec<String>,
    /// `permissions`.
    pub permissions: Vec<String>,
    /// `sid`.
    pub session_id: Option<String>,
    /// `jti`.
    pub token_id: Option<String>,
    /// `iat`, unix seconds.
    pub issued_at: Option<i64>,
    /// `exp`, unix seconds.
    pub expires_at: i64,
    /// `azp` or `client_id`.
    pub authorized_party: Option<String>,
    /// `cnf`: what the token is bound to; `None` for a bearer token.
    pub binding: Option<Confirmation>,
    /// Every other claim.
    pub claims: Map<String, Value>,
}

impl VerifiedToken {
    /// What revocations may match in `token`, the compact token this was
    /// verified from.
    pub fn signed_identity<'a>(&'a self, token: &'a str) -> SignedIdentity<'a> {
        SignedIdentity {
            issuer: &self.issuer,
            subject: &self.subject,
            session_id: self.session_id.as_deref(),
            issued_at: self.issued_at,
            token,
        }
    }
}

/// A token whose signature verified with its issuer's keys under one of
/// the issuer's configured algorithms (never `none` nor a MAC), its claims
/// not yet checked: what `crate::logout` checks a logout token from.
#[derive(Debug, Clone)]
pub struct SignedToken {
    /// `iss`, a configured issuer.
    pub issuer: String,
    /// The header `typ`.
    pub typ: Option<String>,
    /// `sub`.
    pub subject: Option<String>,
    /// `aud`, as a list.
    pub audiences: Vec<String>,
    /// `exp`, unix seconds.
    pub expires_at: Option<f64>,
    /// `iat`, unix seconds.
    pub issued_at: Option<f64>,
    /// `jti`.
    pub token_id: Option<String>,
    /// `sid`.
    pub session_id: Option<String>,
    /// The issuer's clock leeway, seconds.
    pub leeway: i64,
    /// Every other claim (`events`, `nonce`, …).
    pub other: Map<String, Value>,
}

/// One configured issuer: its rules and its keys.
#[derive(Debug)]
pub struct IssuerPolicy {
    algorithms: Vec<Algorithm>,
    audiences: Vec<String>,
    leeway: i64,
    dpop_algorithms: Vec<Algorithm>,
    token_types: TokenTypes,
    /// The claim holding the issuer's session id when it is not `sid`.
    session_claim: Option<String>,
    keys: Arc<IssuerKeys>,
    /// `authd_verify_total` of this issuer's valid tokens, registered once.
    valid: metrics::Counter,
}

impl IssuerPolicy {
    /// The policy of `config`, verifying with `keys`.
    pub fn new(config: &IssuerConfig, keys: Arc<IssuerKeys>) -> Self {
        IssuerPolicy {
            algorithms: config.algorithms.clone(),
            audiences: config.audiences.clone(),
            leeway: i64::try_from(config.leeway_seconds).unwrap_or(i64::MAX),
            dpop_algorithms: config.dpop_algorithms.clone(),
            token_types: TokenTypes::new(&config.token_types),
            session_claim: config
                .backchannel_logout
                .as_ref()
                .map(|b| b.session_claim.clone())
                .filter(|claim| claim != "sid"),
            valid: metrics::counter!(
                "authd_verify_total",
                "issuer" => keys.issuer().clone(),
                "outcome" => "valid",
                "reason" => "OK",
            ),
            keys,
        }
    }

    /// The issuer's keys.
    pub fn keys(&self) -> &Arc<IssuerKeys> {
        &self.keys
    }

    /// The accepted audiences.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The algorithms DPoP proofs with this issuer's tokens may use.
    pub fn dpop_algorithms(&self) -> &[Algorithm] {
        &self.dpop_algorithms
    }
}

/// Verifies access tokens of the configured issuers.
#[derive(Debug)]
pub struct Verifier {
    issuers: HashMap<String, IssuerPolicy>,
    max_token_bytes: usize,
    revocations: Arc<Revocations>,
    dpop: DpopGuard,
    cache: Option<cache::VerifiedCache>,
    cache_hits: metrics::Counter,
    cache_misses: metrics::Counter,
}

impl Verifier {
    /// A verifier over `issuers` (keyed by exact `iss`), with no revocations.
    pub fn new(issuers: HashMap<String, IssuerPolicy>, config: &Config) -> Self {
        Self::with_revocations(issuers, config, Revocations::new())
    }

    /// A verifier that also refuses what `revocations` holds.
    pub fn with_revocations(
        issuers: HashMap<String, IssuerPolicy>,
        config: &Config,
        revocations: Arc<Revocations>,
    ) -> Self {
        let v = &config.verify;
        Verifier {
            issuers,
            max_token_bytes: v.max_token_bytes,
            revocations,
            dpop: DpopGuard::new(&config.dpop, None),
            cache: (v.cache_max_entries > 0).then(|| {
                cache::VerifiedCache::new(
                    v.cache_max_entries,
                    v.cache_max_bytes,
                    i64::try_from(v.cache_max_ttl_seconds).unwrap_or(i64::MAX),
                    v.cache_admit_after,
                )
            }),
            cache_hits: metrics::counter!("authd_verify_cache_hits_total"),
            cache_misses: metrics::counter!("authd_verify_cache_misses_total"),
        }
    }

    /// Derives DPoP nonces from `secret` (`dpop.nonce_secret`), so that
    /// replicas sharing it accept each other's nonces.
    pub fn with_nonce_secret(mut self, config: &Config, secret: &[u8]) -> Self {
        self.dpop = DpopGuard::new(&config.dpop, Some(secret));
        self
    }

    /// The replica's DPoP state.
    pub fn dpop(&self) -> &DpopGuard {
        &self.dpop
    }

    /// How many verified tokens are cached.
    pub fn cached_entries(&self) -> usize {
        self.cache.as_ref().map_or(0, cache::VerifiedCache::len)
    }

    /// The revocations it checks.
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// The configured issuers.
    pub fn issuers(&self) -> impl Iterator<Item = &IssuerPolicy> {
        self.issuers.values()
    }

    /// Verifies `request` now.
    pub async fn verify(&self, request: &VerifyRequest) -> Result<Arc<VerifiedToken>, Error> {
        let now = unix_now_precise();
        self.verify_at_precise(request, now.floor() as i64, now)
            .await
    }

    /// Verifies `request` as of `now` (unix seconds), counted in
    /// `authd_verify_total` by issuer (a configured one, else `unknown`),
    /// outcome and reason.
    pub async fn verify_at(
        &self,
        request: &VerifyRequest,
        now: i64,
    ) -> Result<Arc<VerifiedToken>, Error> {
        self.verify_at_precise(request, now, now as f64).await
    }

    /// [`Self::verify_at`] with the clock also as fractional seconds, which
    /// DPoP proofs' `iat` is compared with.
    async fn verify_at_precise(
        &self,
        request: &VerifyRequest,
        now: i64,
        now_precise: f64,
    ) -> Result<Arc<VerifiedToken>, Error> {
        let mut issuer = None;
        let result = self
            .verify_counted(request, now, now_precise, &mut issuer)
            .await;
        match (&result, issuer) {
            (Ok(_), Some(policy)) => policy.valid.increment(1),
            (result, issuer) => {
                let reason = result
                    .as_ref()
                    .err()
                    .map_or(crate::Reason::Internal, Error::reason);
                let outcome = if reason.is_undecided() {
                    "unavailable"
                } else {
                    "refused"
                };
                let issuer: metrics::SharedString = match issuer {
                    Some(policy) => policy.keys.issuer().clone().into(),
                    None => "unknown".into(),
                };
                metrics::counter!(
                    "authd_verify_total",
                    "issuer" => issuer,
                    "outcome" => outcome,
                    "reason" => reason.as_str(),
                )
                .increment(1);
            }
        }
        result
    }

    /// [`Self::verify_at`], naming the configured issuer once it is known.
    async fn verify_counted<'a>(
        &'a self,
        request: &VerifyRequest,
        now: i64,
        now_precise: f64,
        issuer: &mut Option<&'a IssuerPolicy>,
    ) -> Result<Arc<VerifiedToken>, Error> {
        let (scheme, token) = split_authorization(&request.token);
        self.check_size(token)?;
        let presented = Presentation {
            scheme,
            token,
            proof: request.dpop_proof.as_deref(),
            method: &request.http_method,
            uri: &request.http_uri,
            client_certificate: request.client_certificate.as_deref(),
        };
        let key = self.cache.as_ref().map(|_| cache::key(token));
        if let (Some(cache), Some(key)) = (&self.cache, &key)
            && let Some(entry) = cache.get(key, now)
        {
            self.cache_hits.increment(1);
            let hit = &entry.token;
            let policy = self
                .issuers
                .get(&hit.issuer)
                .ok_or_else(|| Error::WrongIssuer(truncate(&hit.issuer, 256)))?;
            *issuer = Some(policy);
            let expected = expected_audiences(policy, request)?;
            if now > hit.expires_at.saturating_add(policy.leeway) {
                return Err(Error::TokenExpired {
                    expired_at: hit.expires_at,
                });
            }
            self.dpop.check(
                hit.binding.as_ref(),
                &presented,
                &policy.dpop_algorithms,
                now_precise,
            )?;
            recheck(hit, expected, &request.required_scopes)?;
            self.revocations.check(&hit.signed_identity(token))?;
            return Ok(Arc::clone(hit));
        }
        if self.cache.is_some() {
            self.cache_misses.increment(1);
        }
        let (claims, typ, policy) = self.authenticate(token, issuer).await?;
        policy.token_types.check(typ.as_deref(), &claims)?;
        // The cached entry is checked against the issuer's audiences; a
        // request's own audience and scopes are checked on every hit.
        let mut verified = check_claims(claims, policy.leeway, &policy.audiences, now)?;
        if let Some(claim) = &policy.session_claim {
            // The issuer's session id under another name (an Auth0 Action's
            // namespaced claim): what a back-channel logout's `sid` revokes.
            verified.session_id = verified
                .claims
                .get(claim)
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        let verified = Arc::new(verified);
        if let (Some(cache), Some(key)) = (&self.cache, key) {
            cache.insert(key, &verified, token.len(), now);
        }
        self.dpop.check(
            verified.binding.as_ref(),
            &presented,
            &policy.dpop_algorithms,
            now_precise,
        )?;
        let expected = expected_audiences(policy, request)?;
        recheck(&verified, expected, &request.required_scopes)?;
        self.revocations.check(&verified.signed_identity(token))?;
        Ok(verified)
    }

    /// Checks that a caller is a trusted service: its `caller_token` (from
    /// the `authorization` metadata) verifies and carries `permission`.
    /// Anything short of that is [`Error::CallerNotTrusted`], except an
    /// issuer outage, which stays `UNAVAILABLE`.
    pub async fn verify_service(
        &self,
        caller_token: Option<&str>,
        permission: &str,
    ) -> Result<Arc<VerifiedToken>, Error> {
        let Some(token) = caller_token else {
            return Err(Error::CallerNotTrusted(
                "no service token in the authorization metadata".to_owned(),
            ));
        };
        let request = VerifyRequest {
            token: token.to_owned(),
            required_scopes: vec![permission.to_owned()],
            ..VerifyRequest::default()
        };
        self.verify(&request).await.map_err(|error| match error {
            Error::KeysUnavailable { .. } => error,
            other => Error::CallerNotTrusted(format!(
                "service token refused: {}",
                other.reason().as_str()
            )),
        })
    }

    /// Verifies an OpenID Connect id token from `issuer` for `client_id`
    /// (its `aud`), with `nonce` when the login used one.
    pub async fn verify_id_token(
        &self,
        id_token: &str,
        issuer: &str,
        client_id: &str,
        nonce: Option<&str>,
    ) -> Result<VerifiedToken, Error> {
        self.check_size(id_token)?;
        let (claims, _, policy) = self.authenticate(id_token, &mut None).await?;
        if claims.iss != issuer {
            return Err(Error::WrongIssuer(truncate(&claims.iss, 256)));
        }
        let verified = check_claims(claims, policy.leeway, &[client_id.to_owned()], unix_now())?;
        // A session the issuer or an operator ended (its `sid`, or its user
        // after the id token was issued) does not start again here.
        self.revocations
            .check_begun(&verified.signed_identity(id_token))?;
        if let Some(nonce) = nonce.filter(|n| !n.is_empty())
            && verified.claims.get("nonce").and_then(|v| v.as_str()) != Some(nonce)
        {
            return Err(Error::MalformedToken(
                "the id token's nonce does not match".to_owned(),
            ));
        }
        Ok(verified)
    }

    /// A token signed by a configured issuer (steps 1–3 of VerifyToken),
    /// with its claims as they are: for tokens other than access tokens,
    /// whose rules are their reader's.
    pub async fn authenticate_signed(&self, token: &str) -> Result<SignedToken, Error> {
        self.check_size(token)?;
        let (claims, typ, policy) = self.authenticate(token, &mut None).await?;
        let audiences = match claims.aud {
            None => Vec::new(),
            Some(token::OneOrMany::One(aud)) => vec![aud],
            Some(token::OneOrMany::Many(auds)) => auds,
        };
        Ok(SignedToken {
            issuer: claims.iss,
            typ,
            subject: claims.sub,
            audiences,
            expires_at: claims.exp,
            issued_at: claims.iat,
            token_id: claims.jti,
            session_id: claims.sid,
            leeway: policy.leeway,
            other: claims.extra,
        })
    }

    /// Step 1: refuses empty and oversized tokens before any parsing.
    fn check_size(&self, token: &str) -> Result<(), Error> {
        if token.is_empty() {
            return Err(Error::TokenMissing);
        }
        if token.len() > self.max_token_bytes {
            return Err(Error::TokenTooLarge {
                len: token.len(),
                max: self.max_token_bytes,
            });
        }
        Ok(())
    }

    /// Steps 2–3 on a token [`Self::check_size`] passed: shape, issuer,
    /// algorithm, key and signature. The claims and header `typ` returned
    /// are authentic but not yet checked.
    async fn authenticate<'a>(
        &'a self,
        token: &str,
        issuer: &mut Option<&'a IssuerPolicy>,
    ) -> Result<(token::Claims, Option<String>, &'a IssuerPolicy), Error> {
        let parsed = token::parse(token)?;
        let policy = self
            .issuers
            .get(&parsed.claims.iss)
            .ok_or_else(|| Error::WrongIssuer(truncate(&parsed.claims.iss, 256)))?;
        *issuer = Some(policy);
        let alg = Algorithm::from_name(&parsed.header.alg)
            .filter(|alg| policy.algorithms.contains(alg))
            .ok_or_else(|| Error::AlgorithmNotAllowed {
                alg: truncate(&parsed.header.alg, 32),
            })?;
        let kid = parsed.header.kid.as_deref().unwrap_or_default();
        let key = policy.keys.get(kid).await?;
        if !key.supports(alg) {
            return Err(Error::AlgorithmNotAllowed {
                alg: alg.to_string(),
            });
        }
        if !key.verify(alg, parsed.signing_input, &parsed.signature) {
            return Err(Error::BadSignature);
        }
        Ok((parsed.claims, parsed.header.typ, policy))
    }
}

/// The token without its `Authorization` scheme (`Bearer`, `DPoP`, any
/// case) and surrounding white space.
pub(crate) fn strip_bearer(token: &str) -> &str {
    split_authorization(token).1
}

/// The `typ`s an issuer's access tokens may carry (`[[issuers]]
/// token_types`), and whether RFC 9068's profile is enforced.
#[derive(Debug)]
struct TokenTypes {
    accepted: Vec<String>,
    /// Only `at+jwt`: the `typ` and RFC 9068's claims are required.
    strict: bool,
}

impl TokenTypes {
    fn new(configured: &[String]) -> TokenTypes {
        let accepted: Vec<String> = configured
            .iter()
            .map(|typ| media_type(typ).to_ascii_lowercase())
            .collect();
        let strict = !accepted.iter().any(|typ| typ == "jwt");
        TokenTypes { accepted, strict }
    }

    /// Refuses a token whose header `typ` is not accepted (an absent `typ`
    /// counts as `JWT`), any token that is a proof, logout token or security
    /// event, and under the RFC 9068 profile a token missing its claims.
    fn check(&self, typ: Option<&str>, claims: &token::Claims) -> Result<(), Error> {
        let refused = |typ: &str| Error::TokenTypeNotAllowed {
            typ: truncate(typ, 64),
        };
        if claims.extra.contains_key("events") {
            return Err(refused("events"));
        }
        let named = typ.unwrap_or("JWT");
        if never_an_access_token(named)
            || !self.accepted.iter().any(|accepted| names(named, accepted))
        {
            return Err(refused(named));
        }
        if self.strict {
            let missing = [
                ("sub", claims.sub.is_none()),
                ("client_id", claims.client_id.is_none()),
                ("iat", claims.iat.is_none()),
                ("jti", claims.jti.is_none()),
                ("aud", claims.aud.is_none()),
                ("exp", claims.exp.is_none()),
            ]
            .into_iter()
            .find(|(_, missing)| *missing);
            if let Some((claim, _)) = missing {
                return Err(Error::MalformedToken(format!(
                    "an at+jwt access token must carry {claim} (RFC 9068)"
                )));
            }
        }
        Ok(())
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn unix_now_precise() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// NumericDate may be fractional (RFC 7519 §2); whole seconds are enough.
/// Rounded down: right for `exp` (never valid later than written).
fn seconds(value: f64) -> i64 {
    // `as` saturates for out-of-range floats, which is the wanted behaviour.
    value.floor() as i64
}

/// `nbf` and `iat` are rounded up instead, so that a token is never valid
/// sooner than written: against a clock of whole seconds, rounding down
/// accepted `nbf = now + leeway + 0.6`.
fn seconds_up(value: f64) -> i64 {
    value.ceil() as i64
}

/// The audiences a request accepts: its own (which must be configured for
/// the issuer) or all the issuer's.
fn expected_audiences<'a>(
    policy: &'a IssuerPolicy,
    request: &'a VerifyRequest,
) -> Result<&'a [String], Error> {
    match &request.audience {
        Some(wanted) if policy.audiences.contains(wanted) => Ok(std::slice::from_ref(wanted)),
        Some(_) => Err(Error::InvalidRequest {
            field: "audience",
            problem: "not an audience configured for the token's issuer".to_owned(),
        }),
        None => Ok(&policy.audiences),
    }
}

/// What a verified (possibly cached) token must still satisfy for this
/// request: one of the expected audiences, every required scope. Expiry is
/// checked before it: by [`check_claims`] on a miss, on the hit itself.
fn recheck(token: &VerifiedToken, expected: &[String], required: &[String]) -> Result<(), Error> {
    if !token.audiences.iter().any(|a| expected.contains(a)) {
        return Err(Error::WrongAudience {
            expected: expected.to_vec(),
        });
    }
    let missing: Vec<String> = required
        .iter()
        .filter(|wanted| !token.scopes.contains(wanted) && !token.permissions.contains(wanted))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(Error::InsufficientScope { missing });
    }
    Ok(())
}

/// The token's own claims: `exp` (required), `nbf`/`iat` with leeway, and
/// an `aud` among `expected_audiences`. What a request adds (its audience,
/// its required scopes) is [`recheck`]'s, on hits and misses alike.
fn check_claims(
    claims: token::Claims,
    leeway: i64,
    expected_audiences: &[String],
    now: i64,
) -> Result<VerifiedToken, Error> {
    let expires_at = claims
        .exp
        .map(seconds)
        .ok_or_else(|| Error::MalformedToken("claim exp is required".to_owned()))?;
    if now > expires_at.saturating_add(leeway) {
        return Err(Error::TokenExpired {
            expired_at: expires_at,
        });
    }
    for not_before in [claims.nbf, claims.iat]
        .into_iter()
        .flatten()
        .map(seconds_up)
    {
        if not_before > now.saturating_add(leeway) {
            return Err(Error::TokenNotYetValid { not_before });
        }
    }
    let audience_ok = claims
        .aud
        .as_ref()
        .is_some_and(|aud| expected_audiences.iter().any(|e| aud.contains(e)));
    if !audience_ok {
        return Err(Error::WrongAudience {
            expected: expected_audiences.to_vec(),
        });
    }

    let scopes: Vec<String> = match (&claims.scope, claims.scp) {
        (Some(scope), _) => scope.split_ascii_whitespace().map(str::to_owned).collect(),
        (None, Some(scp)) => scp.into_vec(),
        (None, None) => Vec::new(),
    };
    let permissions = claims.permissions.unwrap_or_default();
    let mut extra = claims.extra;
    let binding = Confirmation::from_claim(extra.get("cnf"))?;
    extra.remove("cnf");
    Ok(VerifiedToken {
        subject: claims.sub.unwrap_or_default(),
        issuer: claims.iss,
        audiences: claims
            .aud
            .map(token::OneOrMany::into_vec)
            .unwrap_or_default(),
        scopes,
        permissions,
        session_id: claims.sid,
        token_id: claims.jti,
        issued_at: claims.iat.map(seconds),
        expires_at,
        authorized_party: claims.azp.or(claims.client_id),
        binding,
        claims: extra,
    })
}

#[cfg(test)]
mod tests;
