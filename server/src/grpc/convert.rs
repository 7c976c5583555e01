//! Conversions between domain types and `auth.v1` messages.

use authd_proto::pb;
use prost_types::{ListValue, Struct, Timestamp, Value as PbValue, value::Kind};
use serde_json::{Map, Value};

use crate::{
    error::Error,
    issuer::DeviceAuthorization,
    revocation::{WatchEvent, Watched},
    secrets::Secret,
    session::{DeviceLoginState, Grant, NewSession, Refreshed},
    store::{Profile, RevocationKind},
    verify::{VerifiedToken, VerifyRequest},
};

pub(crate) fn grant(grant: Option<pb::create_session_request::Grant>) -> Option<Grant> {
    use pb::create_session_request::Grant as G;
    Some(match grant? {
        G::AuthorizationCode(code) => Grant::AuthorizationCode {
            code: code.code,
            redirect_uri: code.redirect_uri,
            code_verifier: code.code_verifier,
            nonce: code.nonce,
        },
        G::ExistingTokens(tokens) => Grant::ExistingTokens {
            refresh_token: Secret::new(tokens.refresh_token),
            id_token: Secret::new(tokens.id_token),
            access_token: Some(Secret::new(tokens.access_token)).filter(|t| !t.expose().is_empty()),
            nonce: tokens.nonce,
        },
    })
}

fn non_zero_timestamp(seconds: i64) -> Option<Timestamp> {
    (seconds > 0).then(|| timestamp(seconds))
}

pub(crate) fn new_session(s: NewSession) -> pb::NewSession {
    let record = s.record;
    pb::NewSession {
        session_handle: s.handle.expose().to_owned(),
        session: Some(pb::Session {
            session_id: record.id,
            user_id: record.user_id,
            issuer: record.issuer,
            created_at: non_zero_timestamp(record.created_at),
            refreshed_at: non_zero_timestamp(record.refreshed_at),
            expires_at: non_zero_timestamp(record.expires_at),
        }),
        access_token: s.access_token.expose().to_owned(),
        access_token_expires_at: non_zero_timestamp(record.access_token_expires_at),
        id_token: s
            .id_token
            .map(|t| t.expose().to_owned())
            .unwrap_or_default(),
        profile: Some(profile(s.profile)),
    }
}

pub(crate) fn refreshed(r: Refreshed) -> pb::RefreshSessionResponse {
    pb::RefreshSessionResponse {
        access_token: r.access_token.expose().to_owned(),
        expires_at: non_zero_timestamp(r.expires_at),
        id_token: r
            .id_token
            .map(|t| t.expose().to_owned())
            .unwrap_or_default(),
        refresh_token: r
            .refresh_token
            .map(|t| t.expose().to_owned())
            .unwrap_or_default(),
        scopes: r.scopes,
    }
}

pub(crate) fn device_started(d: DeviceAuthorization) -> pb::StartDeviceLoginResponse {
    pb::StartDeviceLoginResponse {
        device_code: d.device_code,
        user_code: d.user_code,
        verification_uri: d.verification_uri,
        verification_uri_complete: d.verification_uri_complete.unwrap_or_default(),
        interval: u32::try_from(d.interval).unwrap_or(u32::MAX),
        expires_in: u32::try_from(d.expires_in).unwrap_or(u32::MAX),
    }
}

pub(crate) fn device_state(state: DeviceLoginState) -> pb::PollDeviceLoginResponse {
    use pb::DeviceLoginState as S;
    let (state, interval, session) = match state {
        DeviceLoginState::Pending { interval } => (S::Pending, interval, None),
        DeviceLoginState::SlowDown { interval } => (S::SlowDown, interval, None),
        DeviceLoginState::Denied => (S::Denied, 0, None),
        DeviceLoginState::Expired => (S::Expired, 0, None),
        DeviceLoginState::Approved(session) => (S::Approved, 0, Some(new_session(*session))),
    };
    pb::PollDeviceLoginResponse {
        state: state as i32,
        interval: u32::try_from(interval).unwrap_or(u32::MAX),
        session,
    }
}

/// A required `oneof` left empty.
pub(crate) fn missing(field: &'static str) -> Error {
    Error::InvalidRequest {
        field,
        problem: "is required".to_owned(),
    }
}

pub(crate) fn profile(p: Profile) -> pb::Profile {
    pb::Profile {
        user_id: p.user_id,
        email: p.email.unwrap_or_default(),
        email_verified: p.email_verified,
        name: p.name.unwrap_or_default(),
        nickname: p.nickname.unwrap_or_default(),
        picture: p.picture.unwrap_or_default(),
        created_at: Some(timestamp(p.created_at)),
        updated_at: Some(timestamp(p.updated_at)),
        attributes: Some(to_struct(&p.attributes)),
    }
}

pub(crate) fn verify_request(message: pb::VerifyTokenRequest) -> VerifyRequest {
    VerifyRequest {
        token: message.token,
        required_scopes: message.required_scopes,
        audience: message.audience,
        dpop_proof: (!message.dpop_proof.is_empty()).then_some(message.dpop_proof),
        http_method: message.http_method,
        http_uri: message.http_uri,
        client_certificate: (!message.client_certificate.is_empty())
            .then_some(message.client_certificate),
    }
}

pub(crate) fn verified_token(token: &VerifiedToken) -> pb::VerifyTokenResponse {
    pb::VerifyTokenResponse {
        subject: token.subject.clone(),
        issuer: token.issuer.clone(),
        audiences: token.audiences.clone(),
        scopes: token.scopes.clone(),
        permissions: token.permissions.clone(),
        session_id: token.session_id.clone().unwrap_or_default(),
        token_id: token.token_id.clone().unwrap_or_default(),
        issued_at: token.issued_at.map(timestamp),
        expires_at: Some(timestamp(token.expires_at)),
        claims: Some(to_struct(&token.claims)),
        authorized_party: token.authorized_party.clone().unwrap_or_default(),
        binding: token.binding.as_ref().map(|binding| pb::TokenBinding {
            jkt: binding.jkt.clone().unwrap_or_default(),
            x5t_s256: binding.x5t_s256.clone().unwrap_or_default(),
        }),
    }
}

pub(crate) fn watched(watched: Watched) -> pb::WatchRevocationsResponse {
    use pb::watch_revocations_response::Event;
    let event = match watched.event {
        WatchEvent::Revocation(r) => Event::Revocation(pb::Revocation {
            kind: match r.kind {
                RevocationKind::SessionId => pb::RevocationKind::SessionId,
                RevocationKind::Subject => pb::RevocationKind::Subject,
                RevocationKind::SignedDigest => pb::RevocationKind::SignedDigest,
                RevocationKind::TokenHash => pb::RevocationKind::TokenHash,
            }
            .into(),
            issuer: r.issuer.clone(),
            value: r.value.clone(),
            revoked_at: Some(Timestamp {
                seconds: r.at_ms.div_euclid(1000),
                nanos: (r.at_ms.rem_euclid(1000) * 1_000_000) as i32,
            }),
            expires_at: Some(timestamp(r.expires_at)),
        }),
        WatchEvent::Heartbeat { interval } => Event::Heartbeat(pb::Heartbeat {
            interval_ms: u32::try_from(interval.as_millis()).unwrap_or(u32::MAX),
        }),
    };
    pb::WatchRevocationsResponse {
        event: Some(event),
        cursor: watched.cursor.to_string(),
    }
}

pub(crate) fn timestamp(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 0 }
}

/// A JSON object as a `google.protobuf.Struct`.
pub(crate) fn to_struct(map: &Map<String, Value>) -> Struct {
    Struct {
        fields: map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
    }
}

fn to_value(value: &Value) -> PbValue {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(to_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(to_struct(map)),
    };
    PbValue { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_claims_become_a_struct() {
        let Value::Object(map) = json!({"org": {"id": 7, "tags": ["a", null, true]}}) else {
            unreachable!()
        };
        let s = to_struct(&map);
        let Some(Kind::StructValue(org)) = &s.fields["org"].kind else {
            panic!("org is a struct")
        };
        assert_eq!(org.fields["id"].kind, Some(Kind::NumberValue(7.0)));
        let Some(Kind::ListValue(tags)) = &org.fields["tags"].kind else {
            panic!("tags is a list")
        };
        assert_eq!(tags.values.len(), 3);
    }
}
