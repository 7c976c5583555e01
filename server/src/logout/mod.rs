//! OpenID Connect Back-Channel Logout 1.0 (final, errata set 1): the
//! identity provider tells authd that a session ended (the user logged out,
//! changed a password, was deleted or blocked; the IdP session expired or was
//! revoked), and authd revokes it everywhere: in the store, so every replica
//! holds it after its next poll, and on the feed every caller's cache
//! watches.
//!
//! A logout token is accepted only when every check of §2.6 holds: signed
//! by the issuer's keys with one of its configured (asymmetric) algorithms;
//! `typ` absent, `JWT` or `logout+jwt`; `iss` a configured issuer with
//! `[issuers.backchannel_logout]`; `aud` one of its `client_ids`; `iat`
//! within `max_age_seconds`; `exp` not passed; a `jti`; `sub` and/or `sid`;
//! an `events` object whose member
//! `http://schemas.openid.net/event/backchannel-logout` is an object; no
//! `nonce` (an ID token is not a logout token). A refused token revokes
//! nothing.
//!
//! What it revokes: `sid` → the issuer's session (its access tokens, and
//! authd's sessions begun with it, which refresh no more); `sub` alone → the
//! user's tokens issued, and sessions begun, up to the logout token's `iat`
//! — never the time it arrived, so an old token replayed cannot end newer
//! sessions. A token seen before (its `jti`), or one whose revocation is
//! already held (N applications pointing at authd get N tokens per logout),
//! costs no new revocation.
//!
//! [`events`] receives the identity provider's account events (Auth0 Event
//! Streams): a deleted or blocked user is revoked the same way.

pub mod events;
pub mod http;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::Instant,
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

use serde_json::Value;

use crate::{
    config::Config,
    revocation::{Revocations, revocation},
    store::{Revocation, RevocationKind, Store, unix_now},
    verify::{SignedToken, Verifier},
};

/// The event a logout token carries (§2.4).
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// `jti`s remembered per replica to recognise a replayed token at once.
const SEEN_JTIS: usize = 65_536;

/// The longest `jti`, `sid` or `sub` taken from a logout token.
const MAX_CLAIM_BYTES: usize = 1024;

/// One issuer's back-channel logout rules.
#[derive(Debug, Clone)]
struct Policy {
    client_ids: Vec<String>,
    max_age_seconds: i64,
    max_per_second: f64,
}

/// The bucket of tokens whose `iss` names no issuer receiving logouts
/// (forged or misdirected ones): its rate is the lowest configured.
const UNKNOWN: &str = "";

/// A token bucket: `rate` a second, as many at once.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, now: Instant) -> Bucket {
        Bucket {
            rate,
            tokens: rate,
            at: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a logout token did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A new revocation of this kind was stored and applied.
    Revoked(RevocationKind),
    /// Seen before, or its revocation is already held: nothing new.
    AlreadyHeld,
}

/// Why a logout token was not acted on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogoutError {
    /// Not a logout token authd accepts (400); says which check failed.
    #[error("{0}")]
    Refused(String),
    /// The store did not take the revocation (503: the issuer may retry).
    #[error("the revocation could not be stored")]
    Unavailable,
}

/// The back-channel logout receiver.
#[derive(Debug)]
pub struct Logouts {
    verifier: Arc<Verifier>,
    store: Arc<dyn Store>,
    revocations: Arc<Revocations>,
    policies: HashMap<String, Policy>,
    revocation_ttl: i64,
    seen: Seen<(String, String)>,
    /// One bucket per issuer receiving logouts, and [`UNKNOWN`]'s: bounded
    /// by the configuration, whatever tokens claim.
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// A bounded memory of what was accepted (a logout's `(iss, jti)`, an
/// event's id), oldest forgotten first; shared between callers.
#[derive(Debug)]
pub(crate) struct Seen<K> {
    capacity: usize,
    held: Mutex<(VecDeque<K>, HashSet<K>)>,
}

impl<K: Clone + Eq + std::hash::Hash> Seen<K> {
    pub(crate) fn new(capacity: usize) -> Self {
        Seen {
            capacity,
            held: Mutex::new((VecDeque::new(), HashSet::new())),
        }
    }

    pub(crate) fn contains(&self, key: &K) -> bool {
        lock(&self.held).1.contains(key)
    }

    pub(crate) fn insert(&self, key: K) {
        let mut held = lock(&self.held);
        let (order, set) = &mut *held;
        if set.insert(key.clone()) {
            order.push_back(key);
            while order.len() > self.capacity {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
        }
    }
}

impl Logouts {
    /// The receiver of `config`'s issuers that have
    /// `[issuers.backchannel_logout]`.
    pub fn new(config: &Config, verifier: Arc<Verifier>, store: Arc<dyn Store>) -> Logouts {
        let policies: HashMap<String, Policy> = config
            .issuers
            .iter()
            .filter_map(|issuer| {
                let logout = issuer.backchannel_logout.as_ref()?;
                Some((
                    issuer.issuer.clone(),
                    Policy {
                        client_ids: logout.client_ids.clone(),
                        max_age_seconds: i64::try_from(logout.max_age_seconds).unwrap_or(i64::MAX),
                        max_per_second: f64::from(logout.max_per_second.max(1)),
                    },
                ))
            })
            .collect();
        let revocations = Arc::clone(verifier.revocations());
        // Every configured issuer's series exist from the start, so alerts
        // and dashboards see zeros rather than nothing.
        for issuer in config
            .issuers
            .iter()
            .filter(|i| i.backchannel_logout.is_some())
        {
            for outcome in ["revoked", "duplicate"] {
                metrics::counter!(
                    "authd_backchannel_logout_total",
                    "issuer" => issuer.issuer.clone(),
                    "outcome" => outcome,
                )
                .absolute(0);
            }
        }
        for outcome in ["refused", "unavailable", "overloaded", "rate_limited"] {
            metrics::counter!(
                "authd_backchannel_logout_total",
                "issuer" => "unknown",
                "outcome" => outcome,
            )
            .absolute(0);
        }
        let now = Instant::now();
        let mut buckets: HashMap<String, Bucket> = policies
            .iter()
            .map(|(issuer, p)| (issuer.clone(), Bucket::new(p.max_per_second, now)))
            .collect();
        let lowest = policies
            .values()
            .map(|p| p.max_per_second)
            .fold(f64::INFINITY, f64::min);
        if lowest.is_finite() {
            buckets.insert(UNKNOWN.to_owned(), Bucket::new(lowest, now));
        }
        Logouts {
            buckets: Mutex::new(buckets),
            verifier,
            store,
            revocations,
            policies,
            revocation_ttl: i64::try_from(config.sessions.revocation_ttl_seconds)
                .unwrap_or(i64::MAX),
            seen: Seen::new(SEEN_JTIS),
        }
    }

    /// Whether any issuer sends logout tokens here.
    pub fn is_on(&self) -> bool {
        !self.policies.is_empty()
    }

    /// Whether `logout_token` may be checked now: its issuer's rate (by the
    /// `iss` it claims, not yet verified: a forged token spends its claimed
    /// issuer's rate at most, or the unknown bucket's) allows one more.
    pub fn admit(&self, logout_token: &str) -> bool {
        let claimed = claimed_issuer(logout_token)
            .filter(|iss| self.policies.contains_key(iss))
            .unwrap_or_default();
        let mut buckets = lock(&self.buckets);
        buckets
            .get_mut(&claimed)
            .is_none_or(|bucket| bucket.take(Instant::now()))
    }

    /// Checks `logout_token` and revokes what it names.
    pub async fn receive(&self, logout_token: &str) -> Result<(String, Received), LogoutError> {
        let signed = self
            .verifier
            .authenticate_signed(logout_token)
            .await
            .map_err(|e| LogoutError::Refused(format!("the logout token does not verify: {e}")))?;
        let issuer = signed.issuer.clone();
        let policy = self.policies.get(&issuer).ok_or_else(|| {
            LogoutError::Refused(format!(
                "issuer {issuer} has no [issuers.backchannel_logout]"
            ))
        })?;
        let now = unix_now();
        let logout =
            check(&signed, policy, now).map_err(|why| LogoutError::Refused(why.to_owned()))?;
        let key = (issuer.clone(), logout.jti.clone());
        if self.seen.contains(&key) {
            return Ok((issuer, Received::AlreadyHeld));
        }
        let revocation = match (&logout.sid, &logout.sub) {
            (Some(sid), _) => {
                if self.revocations.holds_session(&issuer, sid) {
                    self.seen.insert(key);
                    return Ok((issuer, Received::AlreadyHeld));
                }
                revocation(
                    RevocationKind::SessionId,
                    &issuer,
                    sid,
                    now + self.revocation_ttl,
                )
            }
            (None, Some(sub)) => {
                if self
                    .revocations
                    .subject_revoked_until(&issuer, sub)
                    .is_some_and(|until| until >= logout.iat)
                {
                    self.seen.insert(key);
                    return Ok((issuer, Received::AlreadyHeld));
                }
                Revocation {
                    kind: RevocationKind::Subject,
                    issuer: issuer.clone(),
                    value: sub.clone(),
                    // Stamped with the logout's time, not this moment's.
                    at_ms: logout.iat.saturating_mul(1000),
                    expires_at: now + self.revocation_ttl,
                }
            }
            (None, None) => {
                return Err(LogoutError::Refused("sub or sid is required".to_owned()));
            }
        };
        if let Err(error) = self.store.put_revocation(&revocation).await {
            tracing::warn!(%error, %issuer, "a back-channel logout could not be stored; the issuer may retry");
            return Err(LogoutError::Unavailable);
        }
        self.revocations.apply(std::slice::from_ref(&revocation));
        self.seen.insert(key);
        tracing::info!(%issuer, kind = ?revocation.kind, "back-channel logout: revoked");
        Ok((issuer, Received::Revoked(revocation.kind)))
    }
}

/// The `iss` a compact token claims, unverified (only to pick its rate).
fn claimed_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    if payload.len() > 16 * 1024 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

/// What a logout token names, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Logout {
    jti: String,
    iat: i64,
    sid: Option<String>,
    sub: Option<String>,
}

/// Every check of §2.6 but the signature (done) and the issuer (known).
fn check(signed: &SignedToken, policy: &Policy, now: i64) -> Result<Logout, &'static str> {
    match signed.typ.as_deref().map(authd_jose::typ::media_type) {
        None => {}
        Some(typ) if typ.eq_ignore_ascii_case("JWT") || typ.eq_ignore_ascii_case("logout+jwt") => {}
        Some(_) => return Err("typ must be absent, JWT or logout+jwt"),
    }
    if !signed
        .audiences
        .iter()
        .any(|aud| policy.client_ids.contains(aud))
    {
        return Err("aud names none of backchannel_logout.client_ids");
    }
    let leeway = signed.leeway;
    let iat = signed
        .issued_at
        .filter(|iat| iat.is_finite())
        .ok_or("iat is required")? as i64;
    if iat > now + leeway {
        return Err("iat is in the future");
    }
    if now - iat > policy.max_age_seconds + leeway {
        return Err("iat is older than backchannel_logout.max_age_seconds");
    }
    let exp = signed
        .expires_at
        .filter(|exp| exp.is_finite())
        .ok_or("exp is required")?;
    if (exp as i64) + leeway <= now {
        return Err("the logout token expired");
    }
    let jti = signed
        .token_id
        .clone()
        .filter(|jti| !jti.is_empty() && jti.len() <= MAX_CLAIM_BYTES)
        .ok_or("jti is required")?;
    if signed.other.contains_key("nonce") {
        return Err("a logout token carries no nonce (this is an ID token)");
    }
    let event = signed
        .other
        .get("events")
        .and_then(Value::as_object)
        .and_then(|events| events.get(LOGOUT_EVENT))
        .ok_or("events must hold the back-channel logout event")?;
    if !event.is_object() {
        return Err("the back-channel logout event must be a JSON object");
    }
    let bounded = |value: &Option<String>| {
        value
            .clone()
            .filter(|v| !v.is_empty() && v.len() <= MAX_CLAIM_BYTES)
    };
    let (sid, sub) = (bounded(&signed.session_id), bounded(&signed.subject));
    if sid.is_none() && sub.is_none() {
        return Err("sub or sid is required");
    }
    Ok(Logout { jti, iat, sid, sub })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn policy() -> Policy {
        Policy {
            client_ids: vec!["app-1".to_owned(), "app-2".to_owned()],
            max_age_seconds: 120,
            max_per_second: 10.0,
        }
    }

    #[test]
    fn a_bucket_allows_its_rate_and_a_burst_of_as_many() {
        let start = Instant::now();
        let mut bucket = Bucket::new(10.0, start);
        let taken = (0..25).filter(|_| bucket.take(start)).count();
        assert_eq!(taken, 10, "the burst");
        let later = start + std::time::Duration::from_millis(500);
        assert_eq!((0..25).filter(|_| bucket.take(later)).count(), 5);
        let much_later = start + std::time::Duration::from_secs(60);
        assert_eq!((0..25).filter(|_| bucket.take(much_later)).count(), 10);
    }

    #[test]
    fn the_claimed_issuer_is_read_without_trusting_it() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"https://i/","sub":"x"}"#);
        assert_eq!(
            claimed_issuer(&format!("e30.{payload}.sig")).as_deref(),
            Some("https://i/")
        );
        for junk in ["", "a.b.c", "e30.e30.x", "no-dots"] {
            assert_eq!(claimed_issuer(junk), None, "{junk}");
        }
    }

    fn token(changes: impl FnOnce(&mut SignedToken)) -> SignedToken {
        let mut other = Map::new();
        other.insert("events".to_owned(), json!({ LOGOUT_EVENT: {} }));
        let mut signed = SignedToken {
            issuer: "https://tenant.example.auth0.com/".to_owned(),
            typ: Some("logout+jwt".to_owned()),
            subject: Some("auth0|alice".to_owned()),
            audiences: vec!["app-2".to_owned()],
            expires_at: Some((NOW + 120) as f64),
            issued_at: Some((NOW - 5) as f64),
            token_id: Some("jti-1".to_owned()),
            session_id: Some("sid-1".to_owned()),
            leeway: 5,
            other,
        };
        changes(&mut signed);
        signed
    }

    #[test]
    fn a_logout_token_that_passes_every_check_names_its_session() {
        assert_eq!(
            check(&token(|_| {}), &policy(), NOW),
            Ok(Logout {
                jti: "jti-1".to_owned(),
                iat: NOW - 5,
                sid: Some("sid-1".to_owned()),
                sub: Some("auth0|alice".to_owned()),
            })
        );
        for typ in [None, Some("JWT"), Some("application/logout+jwt")] {
            let ok = token(|t| t.typ = typ.map(str::to_owned));
            assert!(check(&ok, &policy(), NOW).is_ok(), "{typ:?}");
        }
        let sub_only = token(|t| t.session_id = None);
        assert!(check(&sub_only, &policy(), NOW).is_ok());
    }

    #[test]
    fn each_check_refuses_on_its_own() {
        let refused: Vec<(&str, SignedToken)> = vec![
            ("typ", token(|t| t.typ = Some("at+jwt".to_owned()))),
            ("typ", token(|t| t.typ = Some("secevent+jwt".to_owned()))),
            (
                "aud",
                token(|t| t.audiences = vec!["https://api".to_owned()]),
            ),
            ("aud", token(|t| t.audiences = vec![])),
            ("iat", token(|t| t.issued_at = None)),
            ("iat", token(|t| t.issued_at = Some((NOW + 60) as f64))),
            ("iat", token(|t| t.issued_at = Some((NOW - 200) as f64))),
            ("iat", token(|t| t.issued_at = Some(f64::NAN))),
            ("exp", token(|t| t.expires_at = None)),
            ("exp", token(|t| t.expires_at = Some((NOW - 10) as f64))),
            ("jti", token(|t| t.token_id = None)),
            ("jti", token(|t| t.token_id = Some(String::new()))),
            ("jti", token(|t| t.token_id = Some("j".repeat(2000)))),
            (
                "nonce",
                token(|t| {
                    t.other.insert("nonce".to_owned(), json!("n-0S6"));
                }),
            ),
            (
                "events",
                token(|t| {
                    t.other.remove("events");
                }),
            ),
            (
                "events",
                token(|t| {
                    t.other
                        .insert("events".to_owned(), json!({"other-event": {}}));
                }),
            ),
            (
                "event",
                token(|t| {
                    t.other
                        .insert("events".to_owned(), json!({ LOGOUT_EVENT: "yes" }));
                }),
            ),
            (
                "sub or sid",
                token(|t| {
                    t.subject = None;
                    t.session_id = None;
                }),
            ),
        ];
        for (what, signed) in refused {
            let why = check(&signed, &policy(), NOW).expect_err(what);
            assert!(
                why.contains(what.split(' ').next().unwrap_or(what)),
                "{what}: {why}"
            );
        }
    }
}
