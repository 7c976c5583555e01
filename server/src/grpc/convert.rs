//! Conversions between domain types and `auth.v1` messages.

use authd_proto::pb;
use prost_types::{ListValue, Struct, Timestamp, Value as PbValue, value::Kind};
use serde_json::{Map, Value};

use crate::{
    error::Error,
    store::Profile,
    verify::{VerifiedToken, VerifyRequest},
};

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
        attributes: Some(to_struct(p.attributes)),
    }
}

pub(crate) fn verify_request(message: pb::VerifyTokenRequest) -> VerifyRequest {
    VerifyRequest {
        token: message.token,
        required_scopes: message.required_scopes,
        audience: message.audience,
    }
}

pub(crate) fn verified_token(token: VerifiedToken) -> pb::VerifyTokenResponse {
    pb::VerifyTokenResponse {
        subject: token.subject,
        issuer: token.issuer,
        audiences: token.audiences,
        scopes: token.scopes,
        permissions: token.permissions,
        session_id: token.session_id.unwrap_or_default(),
        token_id: token.token_id.unwrap_or_default(),
        issued_at: token.issued_at.map(timestamp),
        expires_at: Some(timestamp(token.expires_at)),
        claims: Some(to_struct(token.claims)),
        authorized_party: token.authorized_party.unwrap_or_default(),
    }
}

pub(crate) fn timestamp(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 0 }
}

/// A JSON object as a `google.protobuf.Struct`.
pub(crate) fn to_struct(map: Map<String, Value>) -> Struct {
    Struct {
        fields: map.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
    }
}

fn to_value(value: Value) -> PbValue {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(to_value).collect(),
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
        let s = to_struct(map);
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
