//! A JSON request written straight as protobuf wire bytes, for flat
//! messages (strings, booleans, integers, enums, lists of them): most of
//! authd's requests. Anything else — a nested message, bytes, a float, a
//! null, a number written as a string, a field named twice, an unknown field,
//! anything malformed — it declines, and the caller uses `prost-reflect`'s
//! mapping, which then accepts it or says precisely what is wrong. The
//! tests hold every answer it gives to that mapping's.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::Declined;

/// A member's value as far as this writes it: a string (borrowed from the
/// body when it holds no escape), a boolean, an integer or a list of them.
/// Anything else fails the parse, which declines.
#[derive(Debug)]
enum Flat<'a> {
    Str(Cow<'a, str>),
    Bool(bool),
    Int(i64),
    Uint(u64),
    List(Vec<Flat<'a>>),
}

impl Flat<'_> {
    fn as_i64(&self) -> Option<i64> {
        match self {
            Flat::Int(v) => Some(*v),
            Flat::Uint(v) => i64::try_from(*v).ok(),
            _ => None,
        }
    }

    fn as_u64(&self) -> Option<u64> {
        match self {
            Flat::Int(v) => u64::try_from(*v).ok(),
            Flat::Uint(v) => Some(*v),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Flat<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FlatValue;
        impl<'de> Visitor<'de> for FlatValue {
            type Value = Flat<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, a boolean, an integer or a list of them")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Flat<'de>, E> {
                Ok(Flat::Str(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Flat<'de>, E> {
                Ok(Flat::Str(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Flat<'de>, E> {
                Ok(Flat::Str(Cow::Owned(v)))
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flat<'de>, E> {
                Ok(Flat::Bool(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Flat<'de>, E> {
                Ok(Flat::Int(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Flat<'de>, E> {
                Ok(Flat::Uint(v))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Flat<'de>, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(2));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Flat::List(items))
            }
        }
        deserializer.deserialize_any(FlatValue)
    }
}

/// A JSON object's members in order, duplicates kept (so that they can be
/// declined rather than silently merged). A name is read as a `Flat`
/// string (JSON object keys are strings), borrowed like the values.
struct Members<'a>(Vec<(Flat<'a>, Flat<'a>)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object;
        impl<'de> Visitor<'de> for Object {
            type Value = Members<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Object)
    }
}

/// `json` as an encoded `desc`, appended to `out`, when it is a flat
/// message this writes; on `Declined`, `out` may hold part of it.
pub(super) fn transcode(
    desc: &MessageDescriptor,
    json: &[u8],
    out: &mut BytesMut,
) -> Result<(), Declined> {
    let Members(members) = serde_json::from_slice(json).map_err(|_| Declined)?;
    let mut fields: Vec<(FieldDescriptor, Flat<'_>)> = Vec::with_capacity(members.len());
    for (name, value) in members {
        let Flat::Str(name) = name else {
            return Err(Declined);
        };
        let field = desc
            .get_field_by_json_name(&name)
            .or_else(|| desc.get_field_by_name(&name))
            .ok_or(Declined)?;
        // A field named twice (or by both its names), or two members of
        // one oneof: the fallback's to judge.
        if fields.iter().any(|(f, _)| {
            f.number() == field.number()
                || f.containing_oneof().is_some_and(|o| {
                    !o.is_synthetic() && field.containing_oneof().is_some_and(|p| p == o)
                })
        }) {
            return Err(Declined);
        }
        fields.push((field, value));
    }
    fields.sort_by_key(|(f, _)| f.number());
    out.reserve(json.len());
    for (field, value) in &fields {
        if field.is_map() {
            return Err(Declined);
        }
        if field.is_list() {
            let Flat::List(items) = value else {
                return Err(Declined);
            };
            for item in items {
                one(field, item, out, true)?;
            }
        } else {
            one(field, value, out, field.supports_presence())?;
        }
    }
    Ok(())
}

fn key(out: &mut BytesMut, number: u32, wire_type: u8) {
    varint(out, (u64::from(number) << 3) | u64::from(wire_type));
}

fn varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// One value of `field`; a default value of a field without presence is
/// left out, as the encoder of the parsed message would.
#[allow(clippy::cast_sign_loss)]
fn one(
    field: &FieldDescriptor,
    value: &Flat<'_>,
    out: &mut BytesMut,
    keep_default: bool,
) -> Result<(), Declined> {
    let number = field.number();
    match (field.kind(), value) {
        (Kind::String, Flat::Str(s)) => {
            if s.is_empty() && !keep_default {
                return Ok(());
            }
            key(out, number, 2);
            varint(out, s.len() as u64);
            out.put_slice(s.as_bytes());
        }
        (Kind::Bool, Flat::Bool(b)) => {
            if !b && !keep_default {
                return Ok(());
            }
            key(out, number, 0);
            varint(out, u64::from(*b));
        }
        (Kind::Int32, Flat::Int(_) | Flat::Uint(_)) => {
            let v = value
                .as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .ok_or(Declined)?;
            if v == 0 && !keep_default {
                return Ok(());
            }
            key(out, number, 0);
            // Negative int32 values are sign-extended to 64 bits.
            varint(out, i64::from(v) as u64);
        }
        (Kind::Uint32, Flat::Int(_) | Flat::Uint(_)) => {
            let v = value
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or(Declined)?;
            if v == 0 && !keep_default {
                return Ok(());
            }
            key(out, number, 0);
            varint(out, u64::from(v));
        }
        (Kind::Enum(e), Flat::Str(name)) => {
            let v = e.get_value_by_name(name).ok_or(Declined)?.number();
            if v == 0 && !keep_default {
                return Ok(());
            }
            key(out, number, 0);
            varint(out, i64::from(v) as u64);
        }
        // Bytes, floats, 64-bit integers, nested messages, nulls, numbers
        // as strings and enums by number: the fallback's.
        _ => return Err(Declined),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;
    use prost_reflect::{DeserializeOptions, DynamicMessage};
    use serde_json::Value;

    fn oracle(desc: &MessageDescriptor, json: &[u8]) -> Option<DynamicMessage> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let message = DynamicMessage::deserialize_with_options(
            desc.clone(),
            &mut de,
            &DeserializeOptions::new().deny_unknown_fields(true),
        )
        .ok()?;
        de.end().ok()?;
        Some(message)
    }

    /// Whatever the fast path writes, the oracle accepts and means the same.
    fn agree(name: &str, json: &str) -> bool {
        let pool = super::super::descriptors().expect("pool");
        let desc = pool.get_message_by_name(name).expect("message");
        let mut out = BytesMut::new();
        match transcode(&desc, json.as_bytes(), &mut out) {
            Ok(()) => {
                let fast = DynamicMessage::decode(desc.clone(), out.freeze()).expect("decodes");
                let slow = oracle(&desc, json.as_bytes()).unwrap_or_else(|| {
                    panic!("the fast path accepted what the mapping refuses: {json}")
                });
                // The same message: the same proto3 JSON (defaults left
                // out, presence kept), and the same fields on the wire.
                let as_json = |m: &DynamicMessage| serde_json::to_value(m).expect("json");
                assert_eq!(as_json(&fast), as_json(&slow), "{json}");
                let again = DynamicMessage::decode(desc.clone(), slow.encode_to_vec().as_slice())
                    .expect("decodes");
                assert_eq!(as_json(&fast), as_json(&again), "{json}");
                true
            }
            Err(Declined) => false,
        }
    }

    #[test]
    fn flat_requests_are_written_as_the_mapping_reads_them() {
        let verify = "auth.v1.VerifyTokenRequest";
        assert!(agree(
            verify,
            r#"{"token":"eyJ.x.y","requiredScopes":["a","b"]}"#
        ));
        assert!(agree(
            verify,
            r#"{"token":"t","required_scopes":["a"],"audience":""}"#
        ));
        assert!(agree(
            verify,
            r#"{"token":"t\u00e9\n\"","httpMethod":"","dpopProof":"p"}"#
        ));
        assert!(agree(verify, r#"{}"#));
        // Names and strings with escapes are read as the mapping reads them.
        assert!(agree(
            verify,
            r#"{"tok\u0065n":"t\/u","required\u0053copes":["\u0061"]}"#
        ));
        assert!(agree(
            "auth.v1.PollDeviceLoginRequest",
            r#"{"deviceCode":"d","interval":5}"#
        ));
        assert!(agree(
            "auth.v1.StartDeviceLoginRequest",
            r#"{"scopes":["read:orders"],"audience":"x"}"#
        ));
        assert!(agree(
            "auth.v1.RefreshSessionRequest",
            r#"{"sessionHandle":"h"}"#
        ));
        assert!(agree(
            "auth.v1.RevokeSessionRequest",
            r#"{"userId":"auth0|u"}"#
        ));
    }

    #[test]
    fn what_it_does_not_write_it_declines() {
        let verify = "auth.v1.VerifyTokenRequest";
        for json in [
            r#"{"token":"t","tokn":"x"}"#,
            r#"{"token":"t","token":"u"}"#,
            r#"{"requiredScopes":["a"],"required_scopes":["b"]}"#,
            r#"{"token":null}"#,
            r#"{"token":7}"#,
            r#"{"clientCertificate":"AAEC"}"#,
            r#"{"requiredScopes":"a"}"#,
            r#"{"requiredScopes":[["a"]]}"#,
            r#"{"requiredScopes":[{"a":1}]}"#,
            r#"{"token":{"a":"t"}}"#,
            r#"{"token":1.5}"#,
            r#"[]"#,
            r#"{"token":"t"} trailing"#,
            r#"not json"#,
        ] {
            assert!(!agree(verify, json), "{json}");
        }
        assert!(!agree(
            "auth.v1.PollDeviceLoginRequest",
            r#"{"interval":"5"}"#
        ));
        assert!(!agree(
            "auth.v1.PollDeviceLoginRequest",
            r#"{"interval":-1}"#
        ));
        assert!(!agree(
            "auth.v1.RevokeSessionRequest",
            r#"{"userId":"u","sessionHandle":"h"}"#
        ));
    }

    fn json_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (0u64..10).prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            Just(serde_json::json!({"a": [1]})),
            ".{0,12}".prop_map(Value::String),
            prop::collection::vec(".{0,6}".prop_map(Value::String), 0..3).prop_map(Value::Array),
        ]
    }

    proptest! {
        #[test]
        fn never_accepts_what_the_mapping_refuses_nor_means_otherwise(
            members in prop::collection::vec((prop_oneof![
                Just("token".to_owned()), Just("requiredScopes".to_owned()),
                Just("required_scopes".to_owned()), Just("audience".to_owned()),
                Just("dpopProof".to_owned()), Just("httpMethod".to_owned()),
                Just("interval".to_owned()), Just("deviceCode".to_owned()),
                Just("userId".to_owned()), Just("sessionHandle".to_owned()),
                Just("scopes".to_owned()), Just("other".to_owned()),
            ], json_value()), 0..5),
            which in 0usize..5,
        ) {
            let name = [
                "auth.v1.VerifyTokenRequest",
                "auth.v1.PollDeviceLoginRequest",
                "auth.v1.RevokeSessionRequest",
                "auth.v1.StartDeviceLoginRequest",
                "auth.v1.RefreshSessionRequest",
            ][which];
            let body: String = format!(
                "{{{}}}",
                members
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            agree(name, &body);
        }
    }
}
