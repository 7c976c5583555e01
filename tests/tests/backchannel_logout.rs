//! OpenID Connect back-channel logout at `POST /backchannel-logout`, over
//! HTTP/1.1 on authd's own port beside gRPC: a logout token from the
//! Auth0-shaped issuer ends that session's tokens and refreshes; sub-only
//! logouts are stamped with the token's `iat`; forged, expired, old,
//! wrong-audience, HS256, ID-token and access-token submissions are refused
//! and revoke nothing; replays cost nothing; the body and the form are
//! bounded; VerifyToken refuses logout tokens. And a real logout at
//! oidc-provider (`features.backchannelLogout`, tests/issuer-dpop): the token
//! it sends ends the session on two replicas, a refresh after it is refused
//! too, and the exact token replayed changes nothing.

use std::time::Duration;

use anyhow::{Context, Result};
use authd_client::ErrorReason;
use authd_proto::pb::{self, create_session_request::Grant, refresh_session_request::Credential};
use authd_tests::{Authd, CLIENT_ID, Issuer, REDIRECT_URI};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::json;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

fn config(issuer: &Issuer) -> String {
    issuer.sessions_config(&format!(
        "[sessions]\nreuse_access_token_seconds = 0\n\
         [issuers.backchannel_logout]\nclient_ids = [\"{CLIENT_ID}\"]\nmax_age_seconds = 120\n"
    ))
}

/// A logout token from the issuer's real signing key: its token endpoint
/// with the claims of §2.4 (`claims` merged last; `null` removes one).
async fn logout_token(
    issuer: &Issuer,
    sub: &str,
    sid: Option<&str>,
    extra: &[(&str, &str)],
    claims: serde_json::Value,
) -> Result<String> {
    let mut merged = json!({
        "events": { EVENT: {} },
        "scope": null, "permissions": null, "azp": null,
    });
    if let (Some(into), Some(from)) = (merged.as_object_mut(), claims.as_object()) {
        into.extend(from.clone());
    }
    let merged = merged.to_string();
    let jti = authd::secrets::random_handle();
    let mut form = vec![
        ("sub", sub),
        ("audience", CLIENT_ID),
        ("jti", jti.as_str()),
        ("claims", merged.as_str()),
    ];
    if let Some(sid) = sid {
        form.push(("sid", sid));
    }
    // What `extra` names replaces the default.
    form.retain(|(name, _)| !extra.iter().any(|(other, _)| other == name));
    form.extend_from_slice(extra);
    issuer.token(&form).await
}

async fn post(authd: &Authd, content_type: &str, body: String) -> Result<(u16, String, String)> {
    let http = reqwest::Client::builder().http1_only().build()?;
    let response = http
        .post(format!("{}/backchannel-logout", authd.uri()))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok((status, cache, response.text().await?))
}

async fn logout(authd: &Authd, token: &str) -> Result<(u16, String)> {
    let body = format!("logout_token={}", urlencode(token));
    let (status, cache, text) = post(authd, "application/x-www-form-urlencoded", body).await?;
    assert_eq!(cache, "no-store", "every answer is no-store");
    Ok((status, text))
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn sid_of(token: &str) -> Result<String> {
    let payload = token.split('.').nth(1).context("jwt")?;
    let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?;
    claims["sid"].as_str().map(str::to_owned).context("sid")
}

async fn login(issuer: &Issuer, authd: &Authd, user: &str) -> Result<pb::NewSession> {
    let (code, code_verifier) = issuer.authorize(user, "n-1").await?;
    let request = pb::CreateSessionRequest {
        grant: Some(Grant::AuthorizationCode(pb::AuthorizationCodeGrant {
            code,
            redirect_uri: REDIRECT_URI.to_owned(),
            code_verifier,
            nonce: "n-1".to_owned(),
        })),
        issuer: String::new(),
    };
    authd
        .client()
        .await?
        .raw()
        .create_session(request)
        .await?
        .into_inner()
        .session
        .context("session")
}

async fn verify_reason(authd: &Authd, token: &str) -> Option<ErrorReason> {
    authd
        .client()
        .await
        .expect("client")
        .verify_token(token, &[])
        .await
        .err()
        .and_then(|e| e.reason())
}

async fn refresh(authd: &Authd, handle: &str) -> Option<ErrorReason> {
    let request = pb::RefreshSessionRequest {
        credential: Some(Credential::SessionHandle(handle.to_owned())),
        issuer: String::new(),
    };
    let mut client = authd.client().await.expect("client");
    client
        .raw()
        .refresh_session(request)
        .await
        .err()
        .and_then(|s| authd_client::AuthError::from(s).reason())
}

#[tokio::test]
async fn a_logout_token_ends_its_session_everywhere_and_nothing_forged_does() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&config(&issuer)).await?;
    let alice = login(&issuer, &authd, "alice").await?;
    let bob = login(&issuer, &authd, "bob").await?;
    let alice_sid = sid_of(&alice.access_token)?;
    let bob_sid = sid_of(&bob.access_token)?;

    // Refused, each for its own reason, revoking nothing.
    let valid_for_bob = logout_token(&issuer, "auth0|bob", Some(&bob_sid), &[], json!({})).await?;
    let mut forged = valid_for_bob.clone();
    forged.replace_range(forged.len() - 6.., "AAAAAA");
    let hs256 = {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"logout+jwt"}"#);
        let payload_part = valid_for_bob.split('.').nth(1).context("payload")?;
        format!(
            "{header}.{payload_part}.{}",
            URL_SAFE_NO_PAD.encode([7u8; 32])
        )
    };
    let refused = [
        ("forged signature", forged),
        ("HS256", hs256),
        (
            "expired",
            logout_token(
                &issuer,
                "auth0|bob",
                Some(&bob_sid),
                &[("expires_in", "-60")],
                json!({}),
            )
            .await?,
        ),
        (
            "issued too long ago",
            logout_token(
                &issuer,
                "auth0|bob",
                Some(&bob_sid),
                &[("iat_offset", "-600")],
                json!({}),
            )
            .await?,
        ),
        (
            "another audience",
            logout_token(
                &issuer,
                "auth0|bob",
                Some(&bob_sid),
                &[("audience", "some-other-app")],
                json!({}),
            )
            .await?,
        ),
        (
            "no events",
            logout_token(
                &issuer,
                "auth0|bob",
                Some(&bob_sid),
                &[],
                json!({"events": null}),
            )
            .await?,
        ),
        (
            "a nonce",
            logout_token(
                &issuer,
                "auth0|bob",
                Some(&bob_sid),
                &[],
                json!({"nonce": "n-1"}),
            )
            .await?,
        ),
        (
            "no jti",
            logout_token(
                &issuer,
                "auth0|bob",
                Some(&bob_sid),
                &[],
                json!({"jti": null}),
            )
            .await?,
        ),
        ("an ID token", bob.id_token.clone()),
        ("an access token", bob.access_token.clone()),
        ("not a token", "not.a.token".to_owned()),
    ];
    for (what, token) in &refused {
        let (status, body) = logout(&authd, token).await?;
        assert_eq!(status, 400, "{what}: {body}");
        assert!(body.contains("invalid_request"), "{what}: {body}");
    }
    // The form itself.
    let (status, _, _) = post(
        &authd,
        "application/json",
        json!({"logout_token": valid_for_bob}).to_string(),
    )
    .await?;
    assert_eq!(status, 400);
    let twice = format!(
        "logout_token={0}&logout_token={0}",
        urlencode(&valid_for_bob)
    );
    let (status, _, _) = post(&authd, "application/x-www-form-urlencoded", twice).await?;
    assert_eq!(status, 400);
    let (status, _, _) = post(
        &authd,
        "application/x-www-form-urlencoded",
        "logout_token=".to_owned() + &"x".repeat(40_000),
    )
    .await?;
    assert_eq!(status, 413, "the body is bounded before it is read whole");
    assert_eq!(
        verify_reason(&authd, &bob.access_token).await,
        None,
        "nothing was revoked"
    );

    // VerifyToken never takes a logout token for an access token.
    assert_eq!(
        verify_reason(&authd, &valid_for_bob).await,
        Some(ErrorReason::TokenTypeNotAllowed)
    );

    // alice logs out at the issuer: her session's tokens and refreshes end.
    let token = logout_token(&issuer, "auth0|alice", Some(&alice_sid), &[], json!({})).await?;
    let (status, body) = logout(&authd, &token).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        verify_reason(&authd, &alice.access_token).await,
        Some(ErrorReason::SessionRevoked)
    );
    assert_eq!(
        refresh(&authd, &alice.session_handle).await,
        Some(ErrorReason::SessionRevoked)
    );
    // Her session ended there as RevokeSession ends one: its refresh token
    // revoked at the issuer, once, and forgotten by authd.
    assert_eq!(issuer.stats().await?["revoke"], 1, "revoked at the issuer");
    assert_eq!(
        refresh(&authd, &alice.session_handle).await,
        Some(ErrorReason::SessionRevoked)
    );
    assert_eq!(issuer.stats().await?["revoke"], 1, "and only once");
    // The same token again, or another app's token for the same logout:
    // acknowledged, nothing new.
    let held = authd.verifier().revocations().status().0;
    assert_eq!(logout(&authd, &token).await?.0, 200);
    let twin = logout_token(&issuer, "auth0|alice", Some(&alice_sid), &[], json!({})).await?;
    assert_eq!(logout(&authd, &twin).await?.0, 200);
    assert_eq!(authd.verifier().revocations().status().0, held);
    assert_eq!(verify_reason(&authd, &bob.access_token).await, None);

    // A sub-only logout refuses bob's tokens up to the logout's iat.
    let older = issuer.token(&[("sub", "auth0|bob")]).await?;
    let sub_only = logout_token(&issuer, "auth0|bob", None, &[], json!({})).await?;
    assert_eq!(logout(&authd, &sub_only).await?.0, 200);
    for token in [&older, &bob.access_token] {
        assert_eq!(
            verify_reason(&authd, token).await,
            Some(ErrorReason::SessionRevoked)
        );
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let newer = issuer.token(&[("sub", "auth0|bob")]).await?;
    assert_eq!(
        verify_reason(&authd, &newer).await,
        None,
        "tokens issued after pass"
    );
    // gRPC on the same port still serves.
    assert_eq!(verify_reason(&authd, &newer).await, None);
    Ok(())
}

#[tokio::test]
async fn without_configuration_the_endpoint_is_not_there() -> Result<()> {
    let issuer = Issuer::start().await?;
    let authd = Authd::start(&issuer.sessions_config("")).await?;
    let token = logout_token(&issuer, "auth0|alice", Some("sid-1"), &[], json!({})).await?;
    assert_eq!(logout(&authd, &token).await?.0, 404);
    let http = reqwest::Client::builder().http1_only().build()?;
    let other = http.get(format!("{}/anything", authd.uri())).send().await?;
    assert_eq!(other.status().as_u16(), 404);
    Ok(())
}

const STREAM_TOKEN: &str = "event-stream-token-0123456789";

async fn deliver(
    authd: &Authd,
    bearer: Option<&str>,
    body: serde_json::Value,
) -> Result<(u16, String)> {
    let http = reqwest::Client::builder().http1_only().build()?;
    let mut request = http
        .post(format!("{}/events/auth0", authd.uri()))
        .header("content-type", "application/cloudevents+json")
        .body(body.to_string());
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await?;
    Ok((response.status().as_u16(), response.text().await?))
}

fn cloud_event(id: &str, kind: &str, object: serde_json::Value, at: &str) -> serde_json::Value {
    json!({
        "specversion": "1.0", "id": id, "type": kind,
        "source": "urn:auth0:tenant.auth0.com", "time": at,
        "datacontenttype": "application/json",
        "data": {"object": object}
    })
}

/// RFC 3339 for unix seconds `at`.
fn rfc3339(at: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(at).expect("time");
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

#[tokio::test]
async fn auth0_account_events_revoke_deleted_and_blocked_users() -> Result<()> {
    let issuer = Issuer::start().await?;
    let toml = format!(
        "{}[issuers.events]\nbearer_token = {{ value = \"{STREAM_TOKEN}\" }}\n",
        config(&issuer)
    );
    let authd = Authd::start(&toml).await?;
    let alice = issuer.token(&[("sub", "auth0|alice")]).await?;
    let bob = issuer.token(&[("sub", "auth0|bob")]).await?;
    let carol = issuer.token(&[("sub", "auth0|carol")]).await?;
    let now = authd::store::unix_now();
    let blocked = cloud_event(
        "evt_1",
        "user.updated",
        json!({"user_id": "auth0|alice", "blocked": true, "email": "alice@authd.test"}),
        &rfc3339(now),
    );

    // Without the stream's token, or with another: 401, nothing revoked.
    for bearer in [None, Some("not-the-stream-token-at-all")] {
        let (status, _) = deliver(&authd, bearer, blocked.clone()).await?;
        assert_eq!(status, 401);
    }
    // Malformed deliveries: 400, nothing of them done.
    let mut no_time = blocked.clone();
    no_time["time"] = json!(null);
    for bad in [
        json!("text"),
        json!([blocked.clone(), no_time]),
        json!({"specversion": "1.0"}),
    ] {
        let (status, body) = deliver(&authd, Some(STREAM_TOKEN), bad.clone()).await?;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    assert_eq!(verify_reason(&authd, &alice).await, None);

    // A batch: alice blocked, bob deleted, carol updated (not blocked), an
    // unknown type: the first two revoked, the rest acknowledged.
    let batch = json!([
        blocked,
        cloud_event(
            "evt_2",
            "user.deleted",
            json!({"user_id": "auth0|bob"}),
            &rfc3339(now)
        ),
        cloud_event(
            "evt_3",
            "user.updated",
            json!({"user_id": "auth0|carol", "blocked": false}),
            &rfc3339(now)
        ),
        cloud_event(
            "evt_4",
            "organization.created",
            json!({"id": "org_1"}),
            &rfc3339(now)
        ),
    ]);
    let (status, body) = deliver(&authd, Some(STREAM_TOKEN), batch.clone()).await?;
    assert_eq!(status, 200, "{body}");
    for token in [&alice, &bob] {
        assert_eq!(
            verify_reason(&authd, token).await,
            Some(ErrorReason::SessionRevoked)
        );
    }
    assert_eq!(verify_reason(&authd, &carol).await, None);
    // Redelivered: acknowledged, no new revocation.
    let held = authd.verifier().revocations().status().0;
    assert_eq!(deliver(&authd, Some(STREAM_TOKEN), batch).await?.0, 200);
    assert_eq!(authd.verifier().revocations().status().0, held);
    // An old event replayed with a new id revokes nothing newer than its time.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = issuer.token(&[("sub", "auth0|alice")]).await?;
    let replayed = cloud_event(
        "evt_9",
        "user.updated",
        json!({"user_id": "auth0|alice", "blocked": true}),
        &rfc3339(now - 3600),
    );
    assert_eq!(deliver(&authd, Some(STREAM_TOKEN), replayed).await?.0, 200);
    assert_eq!(verify_reason(&authd, &fresh).await, None);
    Ok(())
}

#[tokio::test]
async fn a_real_logout_at_oidc_provider_ends_the_session_on_two_replicas() -> Result<()> {
    let issuer = authd_tests::dpop::DpopIssuer::start().await?;
    let toml = format!(
        "{}[issuers.backchannel_logout]\nclient_ids = [\"logout-app\"]\n\
         [sessions]\nrevocation_poll_ms = 200\n",
        issuer.config_entry()
    );
    let a = Authd::start(&toml).await?;
    let b = Authd::start_with_store(&toml, std::sync::Arc::clone(a.store())).await?;
    issuer
        .control(
            "backchannel-logout-uri",
            json!({"uri": format!("{}/backchannel-logout", a.uri())}),
        )
        .await?;
    let alice = issuer.control("login", json!({"user": "alice"})).await?;
    let bob = issuer.control("login", json!({"user": "bob"})).await?;
    let token = |v: &serde_json::Value, name: &str| v[name].as_str().unwrap_or_default().to_owned();
    let alice_token = token(&alice, "access_token");
    assert_eq!(sid_of(&alice_token)?, token(&alice, "sid"));
    for replica in [&a, &b] {
        assert_eq!(verify_reason(replica, &alice_token).await, None);
    }

    // alice logs out at the identity provider, which posts its logout token.
    let out = issuer.control("logout", json!({"user": "alice"})).await?;
    assert_eq!(out["statuses"], json!([200]), "{out}");
    assert_eq!(
        verify_reason(&a, &alice_token).await,
        Some(ErrorReason::SessionRevoked)
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while verify_reason(&b, &alice_token).await != Some(ErrorReason::SessionRevoked) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica b still accepts alice's token"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Her refresh token outlives the logout at oidc-provider; what it mints
    // carries the ended session's sid, and is refused.
    let after = issuer
        .refresh_logout_app(&token(&alice, "refresh_token"))
        .await?;
    assert_eq!(
        verify_reason(&b, &after).await,
        Some(ErrorReason::SessionRevoked)
    );
    // bob's session was not part of it.
    assert_eq!(verify_reason(&b, &token(&bob, "access_token")).await, None);

    // The exact token replayed: acknowledged, nothing new.
    let sent = out["logout_tokens"][0].as_str().context("the token sent")?;
    let held = a.verifier().revocations().status().0;
    assert_eq!(logout(&a, sent).await?.0, 200);
    assert_eq!(a.verifier().revocations().status().0, held);
    // And VerifyToken never takes it for an access token.
    assert_eq!(
        verify_reason(&a, sent).await,
        Some(ErrorReason::TokenTypeNotAllowed)
    );
    Ok(())
}

#[tokio::test]
async fn a_flood_is_held_to_the_issuers_rate() -> Result<()> {
    let issuer = Issuer::start().await?;
    let toml = issuer.sessions_config(&format!(
        "[issuers.backchannel_logout]\nclient_ids = [\"{CLIENT_ID}\"]\nmax_per_second = 3\n"
    ));
    let authd = Authd::start(&toml).await?;
    let bob = login(&issuer, &authd, "bob").await?;
    let mut forged = logout_token(
        &issuer,
        "auth0|bob",
        Some(&sid_of(&bob.access_token)?),
        &[],
        json!({}),
    )
    .await?;
    forged.replace_range(forged.len() - 6.., "AAAAAA");
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(logout(&authd, &forged).await?.0);
    }
    assert_eq!(&statuses[..3], &[400, 400, 400], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 503), "{statuses:?}");
    // A token claiming no configured issuer spends its own bucket.
    let stranger = format!(
        "e30.{}.c2ln",
        URL_SAFE_NO_PAD.encode(br#"{"iss":"https://elsewhere.example/"}"#)
    );
    assert_eq!(logout(&authd, &stranger).await?.0, 400);
    assert_eq!(verify_reason(&authd, &bob.access_token).await, None);
    // The rate refills: a genuine logout gets through a second later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let genuine = logout_token(
        &issuer,
        "auth0|bob",
        Some(&sid_of(&bob.access_token)?),
        &[],
        json!({}),
    )
    .await?;
    assert_eq!(logout(&authd, &genuine).await?.0, 200);
    assert_eq!(
        verify_reason(&authd, &bob.access_token).await,
        Some(ErrorReason::SessionRevoked)
    );
    Ok(())
}
