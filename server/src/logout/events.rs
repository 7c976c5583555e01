//! Account events of the identity provider: Auth0 Event Streams' webhook
//! delivery (CloudEvents 1.0 JSON, one event or a batch) at `POST
//! /events/auth0`, authenticated by the stream's bearer token (compared in
//! constant time; the token also tells which issuer the events are of).
//!
//! `user.deleted`, and `user.updated` whose user is `blocked`, revoke the
//! user (`data.object.user_id`) at the event's `time`: tokens issued and
//! sessions begun until then are refused. Any other event type is
//! acknowledged and ignored. An event seen before (its `id`), or whose
//! revocation is already held, costs nothing.

use std::sync::Arc;

use serde_json::Value;

use super::Seen;
use crate::{
    config::Config,
    revocation::Revocations,
    secrets::Secret,
    store::{Revocation, RevocationKind, Store, unix_now},
};

/// Events in one delivery at most.
pub const MAX_BATCH: usize = 100;

/// Event ids remembered per replica.
const SEEN_EVENTS: usize = 65_536;

/// The longest event id or user id taken from an event.
const MAX_ID_BYTES: usize = 512;

/// What one delivery did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Users revoked.
    pub revoked: usize,
    /// Events seen before, or whose revocation was held already.
    pub duplicate: usize,
    /// Events of other types, acknowledged.
    pub ignored: usize,
}

/// Why a delivery was not acted on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventsError {
    /// No or another bearer token (401).
    #[error("the bearer token is not the event stream's")]
    Unauthorized,
    /// Not CloudEvents authd reads (400); nothing of the delivery was done.
    #[error("{0}")]
    Refused(String),
    /// The store did not take a revocation (503: the stream retries).
    #[error("the revocation could not be stored")]
    Unavailable,
}

/// The account-events receiver.
#[derive(Debug)]
pub struct AccountEvents {
    /// `(issuer, bearer token)` of every issuer with `[issuers.events]`.
    streams: Vec<(String, Secret)>,
    store: Arc<dyn Store>,
    revocations: Arc<Revocations>,
    revocation_ttl: i64,
    seen: Seen<String>,
}

/// One event that revokes: its id, user and time (unix milliseconds).
struct Revoking {
    id: String,
    user: String,
    at_ms: i64,
}

impl AccountEvents {
    /// The receiver of `config`'s issuers with `[issuers.events]`; an error
    /// names a bearer token that cannot be read.
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        revocations: Arc<Revocations>,
    ) -> Result<AccountEvents, String> {
        let mut streams = Vec::new();
        for (i, issuer) in config.issuers.iter().enumerate() {
            if let Some(events) = &issuer.events {
                let token = events
                    .bearer_token
                    .read()
                    .map_err(|e| format!("issuers[{i}].events.bearer_token: {e}"))?;
                if token.trim().len() < 16 {
                    return Err(format!(
                        "issuers[{i}].events.bearer_token: at least 16 characters"
                    ));
                }
                streams.push((issuer.issuer.clone(), Secret::new(token.trim())));
            }
        }
        Ok(AccountEvents {
            streams,
            store,
            revocations,
            revocation_ttl: i64::try_from(config.sessions.revocation_ttl_seconds)
                .unwrap_or(i64::MAX),
            seen: Seen::new(SEEN_EVENTS),
        })
    }

    /// Whether any issuer streams events here.
    pub fn is_on(&self) -> bool {
        !self.streams.is_empty()
    }

    /// The issuer whose stream's token `authorization` (`Bearer …`) is,
    /// compared in constant time with every configured token.
    pub fn issuer_for(&self, authorization: Option<&str>) -> Result<&str, EventsError> {
        let presented = authorization
            .and_then(|value| {
                let (scheme, token) = value.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or(EventsError::Unauthorized)?;
        let mut found = None;
        for (issuer, token) in &self.streams {
            let same = aws_lc_rs::constant_time::verify_slices_are_equal(
                token.expose().as_bytes(),
                presented.as_bytes(),
            )
            .is_ok();
            if same && found.is_none() {
                found = Some(issuer.as_str());
            }
        }
        found.ok_or(EventsError::Unauthorized)
    }

    /// Reads one delivery of `issuer`'s stream and revokes what it names.
    pub async fn receive(&self, issuer: &str, body: &[u8]) -> Result<Delivered, EventsError> {
        let refused = |why: &str| EventsError::Refused(why.to_owned());
        let value: Value =
            serde_json::from_slice(body).map_err(|_| refused("the body is not JSON"))?;
        let events = match value {
            Value::Array(events) if events.len() <= MAX_BATCH => events,
            Value::Array(_) => {
                return Err(EventsError::Refused(format!(
                    "at most {MAX_BATCH} events per delivery"
                )));
            }
            event @ Value::Object(_) => vec![event],
            _ => return Err(refused("a CloudEvent or an array of them")),
        };
        // Every event is read before anything is revoked.
        let mut delivered = Delivered::default();
        let mut revoking = Vec::new();
        for event in &events {
            match read(event).map_err(refused)? {
                Some(event) => revoking.push(event),
                None => delivered.ignored += 1,
            }
        }
        let now = unix_now();
        for event in revoking {
            let seen = self.seen.contains(&event.id);
            let held = self
                .revocations
                .subject_revoked_until(issuer, &event.user)
                .is_some_and(|until| until >= event.at_ms.div_euclid(1000));
            if seen || held {
                delivered.duplicate += 1;
                self.seen.insert(event.id);
                continue;
            }
            let revocation = Revocation {
                kind: RevocationKind::Subject,
                issuer: issuer.to_owned(),
                value: event.user,
                at_ms: event.at_ms,
                expires_at: now + self.revocation_ttl,
            };
            if let Err(error) = self.store.put_revocation(&revocation).await {
                tracing::warn!(%error, %issuer, "an account event could not be stored; the stream retries");
                return Err(EventsError::Unavailable);
            }
            self.revocations.apply(std::slice::from_ref(&revocation));
            self.seen.insert(event.id);
            delivered.revoked += 1;
        }
        Ok(delivered)
    }
}

/// One CloudEvent: `Some` when it revokes its user, `None` when it is of a
/// type (or a user update) that does not.
fn read(event: &Value) -> Result<Option<Revoking>, &'static str> {
    let text = |name: &str| event.get(name).and_then(Value::as_str);
    if text("specversion") != Some("1.0") {
        return Err("specversion must be 1.0");
    }
    let id = text("id")
        .filter(|id| !id.is_empty() && id.len() <= MAX_ID_BYTES)
        .ok_or("every event needs an id")?;
    let kind = text("type").ok_or("every event needs a type")?;
    let object = event.get("data").and_then(|d| d.get("object"));
    let revokes = match kind {
        "user.deleted" => true,
        "user.updated" => object
            .and_then(|o| o.get("blocked"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        _ => false,
    };
    if !revokes {
        return Ok(None);
    }
    let user = object
        .and_then(|o| o.get("user_id"))
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty() && u.len() <= MAX_ID_BYTES)
        .ok_or("data.object.user_id is required")?;
    let at = text("time")
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .ok_or("time (RFC 3339) is required")?;
    let at_ms =
        i64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|_| "time is out of range")?;
    Ok(Some(Revoking {
        id: id.to_owned(),
        user: user.to_owned(),
        at_ms,
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(kind: &str, object: Value) -> Value {
        json!({
            "specversion": "1.0", "id": "evt_1", "type": kind,
            "source": "urn:auth0:tenant.auth0.com", "time": "2026-12-04T18:00:00.250Z",
            "data": {"object": object}
        })
    }

    #[test]
    fn deletions_and_blocks_revoke_and_the_rest_is_ignored() {
        let deleted = read(&event("user.deleted", json!({"user_id": "auth0|alice"})))
            .expect("reads")
            .expect("revokes");
        assert_eq!(deleted.user, "auth0|alice");
        assert_eq!(deleted.at_ms, 1_796_407_200_250);
        let blocked = read(&event(
            "user.updated",
            json!({"user_id": "auth0|bob", "blocked": true}),
        ))
        .expect("reads");
        assert!(blocked.is_some());
        for ignored in [
            event(
                "user.updated",
                json!({"user_id": "auth0|bob", "blocked": false}),
            ),
            event("user.updated", json!({"user_id": "auth0|bob"})),
            event("user.created", json!({"user_id": "auth0|carol"})),
            event("organization.created", json!({})),
        ] {
            assert!(read(&ignored).expect("reads").is_none(), "{ignored}");
        }
    }

    #[test]
    fn what_a_revoking_event_lacks_is_refused() {
        let mut no_time = event("user.deleted", json!({"user_id": "auth0|alice"}));
        no_time.as_object_mut().map(|o| o.remove("time"));
        let mut bad_time = event("user.deleted", json!({"user_id": "auth0|alice"}));
        bad_time["time"] = json!("yesterday");
        let mut no_id = event("user.deleted", json!({"user_id": "auth0|alice"}));
        no_id["id"] = json!("");
        let mut old_spec = event("user.deleted", json!({"user_id": "auth0|alice"}));
        old_spec["specversion"] = json!("0.3");
        for refused in [
            no_time,
            bad_time,
            no_id,
            old_spec,
            event("user.deleted", json!({})),
            event("user.deleted", json!({"user_id": 42})),
        ] {
            assert!(read(&refused).is_err(), "{refused}");
        }
    }
}
