//! Parsing a JWS compact JWT without trusting it: segments, header, claims.
//!
//! Nothing here checks a signature; [`super::Verifier`] does that before any
//! claim is believed.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{
    Deserialize, Deserializer,
    de::{IgnoredAny, MapAccess, SeqAccess, Visitor},
};
use serde_json::{Map, Value};

use crate::error::{Error, truncate};

/// The JOSE header members authd reads. Members that would let a token pick
/// its own key (`jku`, `x5u`, `jwk`, `x5c`) are refused, never followed.
#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    pub(crate) alg: String,
    #[serde(default)]
    pub(crate) kid: Option<String>,
    #[serde(default)]
    pub(crate) typ: Option<String>,
    #[serde(default)]
    crit: Option<Vec<String>>,
    #[serde(default)]
    jku: Option<IgnoredAny>,
    #[serde(default)]
    x5u: Option<IgnoredAny>,
    #[serde(default)]
    jwk: Option<IgnoredAny>,
    #[serde(default)]
    x5c: Option<IgnoredAny>,
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// By hand: `#[serde(untagged)]` would buffer the value to try each form.
impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor;

        impl<'de> Visitor<'de> for OneOrManyVisitor {
            type Value = OneOrMany;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an array of strings")
            }

            fn visit_str<E: serde::de::Error>(self, one: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(one.to_owned()))
            }

            fn visit_string<E: serde::de::Error>(self, one: String) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(one))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut many = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
                while let Some(one) = seq.next_element()? {
                    many.push(one);
                }
                Ok(OneOrMany::Many(many))
            }
        }

        deserializer.deserialize_any(OneOrManyVisitor)
    }
}

impl OneOrMany {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }

    pub(crate) fn contains(&self, wanted: &str) -> bool {
        match self {
            OneOrMany::One(one) => one == wanted,
            OneOrMany::Many(many) => many.iter().any(|m| m == wanted),
        }
    }
}

/// The registered and Auth0 claims authd interprets; every other claim stays
/// in `extra`. A claim of the wrong type, or any claim twice, makes the whole
/// token malformed.
///
/// Deserialized by hand rather than with `#[serde(flatten)]`, which buffers
/// every claim into an intermediate tree first: this is the hot path.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    pub(crate) iss: String,
    pub(crate) sub: Option<String>,
    pub(crate) aud: Option<OneOrMany>,
    pub(crate) exp: Option<f64>,
    pub(crate) nbf: Option<f64>,
    pub(crate) iat: Option<f64>,
    pub(crate) jti: Option<String>,
    pub(crate) sid: Option<String>,
    pub(crate) scope: Option<String>,
    pub(crate) scp: Option<OneOrMany>,
    pub(crate) permissions: Option<Vec<String>>,
    pub(crate) azp: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) extra: Map<String, Value>,
}

impl<'de> Deserialize<'de> for Claims {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ClaimsVisitor)
    }
}

struct ClaimsVisitor;

/// The claims read so far, one bit per interpreted claim.
#[derive(Default)]
struct Seen(u16);

impl Seen {
    /// Sets `slot` from the next value (`null` leaves it unset), refusing a
    /// second occurrence of claim number `bit`, `name`.
    fn read<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
        &mut self,
        map: &mut A,
        slot: &mut Option<T>,
        bit: u16,
        name: &'static str,
    ) -> Result<(), A::Error> {
        if self.0 & (1 << bit) != 0 {
            return Err(serde::de::Error::duplicate_field(name));
        }
        self.0 |= 1 << bit;
        *slot = map.next_value()?;
        Ok(())
    }
}

impl<'de> Visitor<'de> for ClaimsVisitor {
    type Value = Claims;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claims, A::Error> {
        let mut c = Claims::default();
        let (mut iss, mut seen) = (None, Seen::default());
        // Keys borrow from the input when they hold no escapes.
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "iss" => seen.read(&mut map, &mut iss, 0, "iss")?,
                "sub" => seen.read(&mut map, &mut c.sub, 1, "sub")?,
                "aud" => seen.read(&mut map, &mut c.aud, 2, "aud")?,
                "exp" => seen.read(&mut map, &mut c.exp, 3, "exp")?,
                "nbf" => seen.read(&mut map, &mut c.nbf, 4, "nbf")?,
                "iat" => seen.read(&mut map, &mut c.iat, 5, "iat")?,
                "jti" => seen.read(&mut map, &mut c.jti, 6, "jti")?,
                "sid" => seen.read(&mut map, &mut c.sid, 7, "sid")?,
                "scope" => seen.read(&mut map, &mut c.scope, 8, "scope")?,
                "scp" => seen.read(&mut map, &mut c.scp, 9, "scp")?,
                "permissions" => seen.read(&mut map, &mut c.permissions, 10, "permissions")?,
                "azp" => seen.read(&mut map, &mut c.azp, 11, "azp")?,
                "client_id" => seen.read(&mut map, &mut c.client_id, 12, "client_id")?,
                other => {
                    if c.extra.contains_key(other) {
                        return Err(serde::de::Error::custom(format_args!(
                            "duplicate claim `{}`",
                            truncate(other, 64)
                        )));
                    }
                    let value: Value = map.next_value()?;
                    c.extra.insert(key.into_owned(), value);
                }
            }
        }
        c.iss = iss.ok_or_else(|| serde::de::Error::missing_field("iss"))?;
        Ok(c)
    }
}

/// A token split and decoded, not yet verified.
#[derive(Debug)]
pub(crate) struct Unverified<'a> {
    pub(crate) header: Header,
    pub(crate) claims: Claims,
    /// `base64url(header) . base64url(payload)`: what the signature covers.
    pub(crate) signing_input: &'a [u8],
    pub(crate) signature: Vec<u8>,
}

fn malformed(detail: impl Into<String>) -> Error {
    Error::MalformedToken(detail.into())
}

fn decode_segment(segment: &[u8], what: &str) -> Result<Vec<u8>, Error> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| malformed(format!("{what} is not base64url")))
}

fn json_error(what: &str, error: serde_json::Error) -> Error {
    malformed(format!("{what}: {}", truncate(&error.to_string(), 160)))
}

/// Splits and decodes `token`. Checks the shape and the header's safety, not
/// the signature.
pub(crate) fn parse(token: &str) -> Result<Unverified<'_>, Error> {
    let bytes = token.as_bytes();
    let mut dots = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'.')
        .map(|(i, _)| i);
    let (Some(first), Some(second), None) = (dots.next(), dots.next(), dots.next()) else {
        return Err(malformed("a JWT has exactly three segments"));
    };
    let (header_b64, payload_b64, signature_b64) = (
        &bytes[..first],
        &bytes[first + 1..second],
        &bytes[second + 1..],
    );
    if header_b64.is_empty() || payload_b64.is_empty() || signature_b64.is_empty() {
        return Err(malformed("empty segment"));
    }

    let header_json = decode_segment(header_b64, "header")?;
    let header: Header =
        serde_json::from_slice(&header_json).map_err(|e| json_error("header", e))?;
    for (present, name) in [
        (header.jku.is_some(), "jku"),
        (header.x5u.is_some(), "x5u"),
        (header.jwk.is_some(), "jwk"),
        (header.x5c.is_some(), "x5c"),
    ] {
        if present {
            return Err(malformed(format!("header member {name} is not accepted")));
        }
    }
    if let Some(crit) = &header.crit {
        // authd understands no extension header, so any `crit` entry is one it
        // must refuse (RFC 7515 §4.1.11).
        let names: Vec<_> = crit.iter().map(|c| truncate(c, 32)).collect();
        return Err(malformed(format!(
            "unsupported critical header {}",
            names.join(",")
        )));
    }

    let payload_json = decode_segment(payload_b64, "payload")?;
    let claims: Claims =
        serde_json::from_slice(&payload_json).map_err(|e| json_error("claims", e))?;
    let signature = decode_segment(signature_b64, "signature")?;
    Ok(Unverified {
        header,
        claims,
        signing_input: &bytes[..second],
        signature,
    })
}
