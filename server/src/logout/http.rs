//! `POST /backchannel-logout` and `POST /events/auth0` on authd's port,
//! over HTTP/1.1 (the transport serves HTTP/1.1 requests here, gRPC over
//! HTTP/2 elsewhere).
//!
//! The endpoint is anonymous by design: the signed logout token is the
//! credential. Bounded: the body (16 KiB) before it is parsed, the requests
//! in flight (64; more are 503 at once), a rate per issuer (by the `iss` a
//! token claims; over it, 503 with `Retry-After: 1`), and every token is
//! checked before anything is written. Answers (§2.8): 200 once the revocation is stored,
//! 400 with an OAuth error body for a token authd does not accept, 503 when
//! the store does not take the revocation — a deviation from the
//! specification's 400, so that the issuer retries a logout authd could not
//! record yet. Every answer carries `Cache-Control: no-store`.

use std::sync::Arc;

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use tokio::sync::Semaphore;

use super::{
    LogoutError, Logouts, Received,
    events::{AccountEvents, EventsError},
};

/// The path issuers post logout tokens to.
pub const PATH: &str = "/backchannel-logout";

/// The path Auth0 Event Streams deliver to.
pub const EVENTS_PATH: &str = "/events/auth0";

/// The largest event delivery read (a batch of user objects).
const MAX_EVENTS_BODY: usize = 256 * 1024;

/// The largest request body read (a logout token is ~1 KiB).
const MAX_BODY: usize = 16 * 1024;

/// Logout requests served at once; more are answered 503 at once.
const IN_FLIGHT: usize = 64;

#[derive(Clone)]
struct Receiver {
    logouts: Arc<Logouts>,
    events: Arc<AccountEvents>,
    in_flight: Arc<Semaphore>,
}

/// The HTTP/1.1 routes of authd's port.
pub fn router(logouts: Arc<Logouts>, events: Arc<AccountEvents>) -> Router {
    let receiver = Receiver {
        logouts,
        events,
        in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
    };
    Router::new()
        .route(PATH, post(receive).layer(DefaultBodyLimit::max(MAX_BODY)))
        .route(
            EVENTS_PATH,
            post(receive_events).layer(DefaultBodyLimit::max(MAX_EVENTS_BODY)),
        )
        .fallback(|| async { answer(StatusCode::NOT_FOUND, Some("no such endpoint")) })
        .with_state(receiver)
}

async fn receive_events(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let events = &receiver.events;
    if !events.is_on() {
        return answer(
            StatusCode::NOT_FOUND,
            Some("no issuer has [issuers.events]"),
        );
    }
    let Ok(_permit) = receiver.in_flight.try_acquire() else {
        counted_events("unknown", "overloaded", 1);
        return answer(StatusCode::SERVICE_UNAVAILABLE, None);
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let issuer = match events.issuer_for(authorization) {
        Ok(issuer) => issuer.to_owned(),
        Err(_) => {
            counted_events("unknown", "unauthorized", 1);
            let mut response = answer(StatusCode::UNAUTHORIZED, None);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"authd-events\""),
            );
            return response;
        }
    };
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| {
            v == "application/json"
                || v == "application/cloudevents+json"
                || v == "application/cloudevents-batch+json"
        });
    if !json {
        counted_events(&issuer, "refused", 1);
        return answer(
            StatusCode::BAD_REQUEST,
            Some("the body must be CloudEvents JSON"),
        );
    }
    match events.receive(&issuer, &body).await {
        Ok(delivered) => {
            counted_events(&issuer, "revoked", delivered.revoked);
            counted_events(&issuer, "duplicate", delivered.duplicate);
            counted_events(&issuer, "ignored", delivered.ignored);
            answer(StatusCode::OK, None)
        }
        Err(EventsError::Refused(why)) => {
            counted_events(&issuer, "refused", 1);
            answer(StatusCode::BAD_REQUEST, Some(&why))
        }
        Err(EventsError::Unauthorized) => answer(StatusCode::UNAUTHORIZED, None),
        Err(EventsError::Unavailable) => {
            counted_events(&issuer, "unavailable", 1);
            let mut response = answer(StatusCode::SERVICE_UNAVAILABLE, None);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            response
        }
    }
}

/// `authd_account_events_total{issuer, outcome}`.
fn counted_events(issuer: &str, outcome: &'static str, events: usize) {
    if events > 0 {
        metrics::counter!(
            "authd_account_events_total",
            "issuer" => issuer.to_owned(),
            "outcome" => outcome,
        )
        .increment(events as u64);
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    if !receiver.logouts.is_on() {
        return answer(
            StatusCode::NOT_FOUND,
            Some("no issuer has [issuers.backchannel_logout]"),
        );
    }
    let Ok(_permit) = receiver.in_flight.try_acquire() else {
        counted("unknown", "overloaded");
        return answer(StatusCode::SERVICE_UNAVAILABLE, None);
    };
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        counted("unknown", "refused");
        return answer(
            StatusCode::BAD_REQUEST,
            Some("the body must be application/x-www-form-urlencoded"),
        );
    }
    let mut tokens = url::form_urlencoded::parse(&body)
        .filter(|(name, _)| name == "logout_token")
        .map(|(_, value)| value);
    let (Some(token), None) = (tokens.next(), tokens.next()) else {
        counted("unknown", "refused");
        return answer(
            StatusCode::BAD_REQUEST,
            Some("exactly one logout_token parameter is required"),
        );
    };
    if !receiver.logouts.admit(&token) {
        counted("unknown", "rate_limited");
        let mut response = answer(StatusCode::SERVICE_UNAVAILABLE, None);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    match receiver.logouts.receive(&token).await {
        Ok((issuer, Received::Revoked(_))) => {
            counted(&issuer, "revoked");
            answer(StatusCode::OK, None)
        }
        Ok((issuer, Received::AlreadyHeld)) => {
            counted(&issuer, "duplicate");
            answer(StatusCode::OK, None)
        }
        Err(LogoutError::Refused(why)) => {
            tracing::info!(%why, "back-channel logout token refused");
            counted("unknown", "refused");
            answer(StatusCode::BAD_REQUEST, Some(&why))
        }
        Err(LogoutError::Unavailable) => {
            counted("unknown", "unavailable");
            let mut response = answer(StatusCode::SERVICE_UNAVAILABLE, None);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            response
        }
    }
}

/// `authd_backchannel_logout_total{issuer, outcome}`; `issuer` is a
/// configured one, or `unknown` when the token did not verify.
fn counted(issuer: &str, outcome: &'static str) {
    metrics::counter!(
        "authd_backchannel_logout_total",
        "issuer" => issuer.to_owned(),
        "outcome" => outcome,
    )
    .increment(1);
}

/// An answer with `Cache-Control: no-store`; with an OAuth error body
/// (`invalid_request`) when `error` is given.
fn answer(status: StatusCode, error: Option<&str>) -> Response {
    let mut response = match error {
        Some(description) => (
            status,
            axum::Json(serde_json::json!({
                "error": "invalid_request",
                "error_description": crate::error::truncate(description, 300),
            })),
        )
            .into_response(),
        None => status.into_response(),
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
