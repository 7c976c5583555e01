//! An answer's protobuf wire bytes written straight as proto3 JSON, guided
//! by the message's descriptor, without building a `DynamicMessage`: the
//! Connect JSON answer path's cost was mostly that message. What this does
//! not know (`Any`, `FieldMask`, malformed input) it declines, and the
//! caller falls back to `prost-reflect`'s mapping, which the tests hold it
//! to, value for value.

use base64::{Engine, engine::general_purpose::STANDARD};
use prost_reflect::{Kind, MessageDescriptor};

use super::Declined;

type Out<T> = Result<T, Declined>;

/// How the answers of one message type are written, made once from its
/// descriptor (at start, for each RPC's answer): each field's number, shape,
/// kind and JSON key already escaped, and the plans of the messages it holds.
#[derive(Debug)]
pub(super) struct Plan {
    desc: MessageDescriptor,
    well_known: bool,
    fields: Vec<FieldPlan>,
}

#[derive(Debug)]
struct FieldPlan {
    number: u32,
    /// `"jsonName":`
    key: Vec<u8>,
    kind: Kind,
    shape: Shape,
    /// The plan of the message type the field holds (a map's: its
    /// values'); `None` for other kinds, and beyond `PLAN_DEPTH` (a
    /// recursive type), where one is made when met.
    nested: Option<Plan>,
}

/// The message type a field of `kind` and `shape` holds: its own, or a
/// map's value type.
fn held_message(kind: &Kind, shape: Shape) -> Option<MessageDescriptor> {
    match (kind, shape) {
        (Kind::Message(entry), Shape::Map) => match entry.map_entry_value_field().kind() {
            Kind::Message(value) => Some(value),
            _ => None,
        },
        (Kind::Message(m), _) => Some(m.clone()),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Single { presence: bool },
    List,
    Map,
}

/// How deep plans are made ahead; a deeper message is planned when met.
const PLAN_DEPTH: usize = 6;

impl Plan {
    pub(super) fn new(desc: &MessageDescriptor) -> Plan {
        Plan::to_depth(desc, PLAN_DEPTH)
    }

    fn to_depth(desc: &MessageDescriptor, depth: usize) -> Plan {
        let well_known = desc.full_name().starts_with("google.protobuf.");
        let fields = if well_known {
            Vec::new()
        } else {
            desc.fields()
                .map(|field| {
                    let kind = field.kind();
                    let shape = if field.is_map() {
                        Shape::Map
                    } else if field.is_list() {
                        Shape::List
                    } else {
                        Shape::Single {
                            presence: field.supports_presence(),
                        }
                    };
                    let nested = held_message(&kind, shape)
                        .filter(|_| depth > 0)
                        .map(|m| Plan::to_depth(&m, depth - 1));
                    let mut key = Vec::new();
                    string(field.json_name(), &mut key);
                    key.push(b':');
                    FieldPlan {
                        number: field.number(),
                        key,
                        kind,
                        shape,
                        nested,
                    }
                })
                .collect()
        };
        Plan {
            desc: desc.clone(),
            well_known,
            fields,
        }
    }

    /// The message type this plan writes.
    pub(super) fn descriptor(&self) -> &MessageDescriptor {
        &self.desc
    }
}

/// `bytes` (an encoded message of `plan`'s type) as proto3 JSON, the way
/// `prost-reflect` serializes it with its default options.
pub(super) fn transcode(plan: &Plan, bytes: &[u8]) -> Out<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 2 + 16);
    message(plan, bytes, &mut out, 0)?;
    Ok(out)
}

/// Nesting beyond this declines (the fallback has its own bound).
const MAX_DEPTH: usize = 64;

/// One field occurrence on the wire.
#[derive(Debug, Clone, Copy)]
enum Raw<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

fn varint(buf: &mut &[u8]) -> Out<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().ok_or(Declined)?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(Declined)
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Out<&'a [u8]> {
    if buf.len() < n {
        return Err(Declined);
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

/// Every field occurrence of an encoded message, in wire order.
fn fields(buf: &[u8]) -> Out<Vec<(u32, Raw<'_>)>> {
    each_field(buf).collect()
}

/// Each field occurrence of `bytes`, in wire order, read as it is needed;
/// nothing is read past a malformed one.
fn each_field(mut bytes: &[u8]) -> impl Iterator<Item = Out<(u32, Raw<'_>)>> {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        let next = field(&mut bytes);
        if next.is_err() {
            bytes = &[];
        }
        Some(next)
    })
}

/// The field occurrence at the start of `buf`.
fn field<'a>(buf: &mut &'a [u8]) -> Out<(u32, Raw<'a>)> {
    let key = varint(buf)?;
    let number = u32::try_from(key >> 3).map_err(|_| Declined)?;
    let raw = match key & 7 {
        0 => Raw::Varint(varint(buf)?),
        1 => Raw::Fixed64(u64::from_le_bytes(
            take(buf, 8)?.try_into().map_err(|_| Declined)?,
        )),
        2 => {
            let len = usize::try_from(varint(buf)?).map_err(|_| Declined)?;
            Raw::Bytes(take(buf, len)?)
        }
        5 => Raw::Fixed32(u32::from_le_bytes(
            take(buf, 4)?.try_into().map_err(|_| Declined)?,
        )),
        _ => return Err(Declined),
    };
    if number == 0 {
        return Err(Declined);
    }
    Ok((number, raw))
}

fn message(plan: &Plan, bytes: &[u8], out: &mut Vec<u8>, depth: usize) -> Out<()> {
    if depth > MAX_DEPTH {
        return Err(Declined);
    }
    if plan.well_known {
        return well_known(&plan.desc, bytes, out, depth);
    }
    let seen = fields(bytes)?;
    out.push(b'{');
    let mut first = true;
    for field in &plan.fields {
        let number = field.number;
        let mut values = seen.iter().filter(|(n, _)| *n == number).map(|(_, r)| *r);
        let Some(one) = values.next() else {
            continue;
        };
        match field.shape {
            Shape::Map => {
                let entries: Vec<Raw<'_>> = std::iter::once(one).chain(values).collect();
                key(field, &mut first, out);
                map(field, &entries, out, depth)?;
            }
            Shape::List => {
                let all: Vec<Raw<'_>> = std::iter::once(one).chain(values).collect();
                key(field, &mut first, out);
                list(field, &all, out, depth)?;
            }
            Shape::Single { presence } => {
                if let Kind::Message(m) = &field.kind {
                    // A message's occurrences merge, which is what parsing
                    // their concatenation does.
                    let Raw::Bytes(only) = one else {
                        return Err(Declined);
                    };
                    let merged;
                    let whole = match values.next() {
                        None => only,
                        Some(second) => {
                            let mut all = only.to_vec();
                            for raw in std::iter::once(second).chain(values) {
                                let Raw::Bytes(b) = raw else {
                                    return Err(Declined);
                                };
                                all.extend_from_slice(b);
                            }
                            merged = all;
                            &merged[..]
                        }
                    };
                    key(field, &mut first, out);
                    nested(field, m, whole, out, depth + 1)?;
                    continue;
                }
                // The last occurrence wins.
                let last = values.next_back().unwrap_or(one);
                if !presence && is_default(&field.kind, last)? {
                    continue;
                }
                key(field, &mut first, out);
                scalar(&field.kind, last, out)?;
            }
        }
    }
    out.push(b'}');
    Ok(())
}

/// A message held by `field`, written by its plan (made now when the
/// type nests deeper than plans are made ahead).
fn nested(
    field: &FieldPlan,
    desc: &MessageDescriptor,
    bytes: &[u8],
    out: &mut Vec<u8>,
    depth: usize,
) -> Out<()> {
    match &field.nested {
        Some(plan) => message(plan, bytes, out, depth),
        None => message(&Plan::to_depth(desc, 0), bytes, out, depth),
    }
}

fn key(field: &FieldPlan, first: &mut bool, out: &mut Vec<u8>) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    out.extend_from_slice(&field.key);
}

/// `s` as a JSON string, escaped as `serde_json` escapes it (`prost-reflect`'s
/// writer): `"` and `\`, the short forms of backspace, form feed, newline,
/// carriage return and tab, other control characters as `\u00xx`, the rest
/// as is. Runs that need no escape are found eight bytes at a time and copied
/// whole.
fn string(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8)
            && let Ok(word) = <[u8; 8]>::try_from(word)
            && !any_to_escape(u64::from_le_bytes(word))
        {
            i += 8;
            continue;
        }
        for &b in &bytes[i..bytes.len().min(i + 8)] {
            if b >= 0x20 && b != b'"' && b != b'\\' {
                i += 1;
                continue;
            }
            out.extend_from_slice(&bytes[start..i]);
            escape(b, out);
            i += 1;
            start = i;
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether any of the eight bytes of `word` is a control character, `"` or
/// `\` (the classic "has a byte less than n" and "has a zero byte" tests;
/// exact for "any", and bytes of 0x80 and above never match).
fn any_to_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    (control | zero(word ^ (ONES * u64::from(b'"'))) | zero(word ^ (ONES * u64::from(b'\\')))) != 0
}

fn escape(b: u8, out: &mut Vec<u8>) {
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        _ => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        }
    }
}

/// Whether a field without presence holds its default (proto3 leaves it
/// out of JSON, as `prost-reflect` does).
fn is_default(kind: &Kind, raw: Raw<'_>) -> Out<bool> {
    Ok(match (kind, raw) {
        (Kind::String | Kind::Bytes, Raw::Bytes(b)) => b.is_empty(),
        (_, Raw::Varint(v)) => v == 0,
        (_, Raw::Fixed64(v)) => v == 0,
        (_, Raw::Fixed32(v)) => v == 0,
        _ => return Err(Declined),
    })
}

/// Each value of a repeated field: packed scalars expanded.
fn list(field: &FieldPlan, all: &[Raw<'_>], out: &mut Vec<u8>, depth: usize) -> Out<()> {
    let kind = &field.kind;
    out.push(b'[');
    let mut first = true;
    let mut item = |raw: Raw<'_>, out: &mut Vec<u8>| -> Out<()> {
        if !first {
            out.push(b',');
        }
        first = false;
        match kind {
            Kind::Message(m) => {
                let Raw::Bytes(b) = raw else {
                    return Err(Declined);
                };
                nested(field, m, b, out, depth + 1)
            }
            other => scalar(other, raw, out),
        }
    };
    for raw in all {
        match (kind, *raw) {
            (Kind::String | Kind::Bytes | Kind::Message(_), _)
            | (_, Raw::Varint(_))
            | (_, Raw::Fixed32(_))
            | (_, Raw::Fixed64(_)) => item(*raw, out)?,
            // Packed: a run of varints or fixed-width values.
            (_, Raw::Bytes(mut packed)) => {
                while !packed.is_empty() {
                    let value = match fixed_width(kind) {
                        Some(8) => Raw::Fixed64(u64::from_le_bytes(
                            take(&mut packed, 8)?.try_into().map_err(|_| Declined)?,
                        )),
                        Some(_) => Raw::Fixed32(u32::from_le_bytes(
                            take(&mut packed, 4)?.try_into().map_err(|_| Declined)?,
                        )),
                        None => Raw::Varint(varint(&mut packed)?),
                    };
                    item(value, out)?;
                }
            }
        }
    }
    out.push(b']');
    Ok(())
}

fn fixed_width(kind: &Kind) -> Option<usize> {
    match kind {
        Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => Some(8),
        Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => Some(4),
        _ => None,
    }
}

/// A map field: an object whose keys are the entries' keys as strings.
fn map(field: &FieldPlan, entries: &[Raw<'_>], out: &mut Vec<u8>, depth: usize) -> Out<()> {
    let Kind::Message(entry) = &field.kind else {
        return Err(Declined);
    };
    let (key_field, value_field) = (entry.map_entry_key_field(), entry.map_entry_value_field());
    // Later entries with the same key replace earlier ones.
    let mut pairs: Vec<(String, Option<Raw<'_>>)> = Vec::with_capacity(entries.len());
    for raw in entries {
        let Raw::Bytes(bytes) = raw else {
            return Err(Declined);
        };
        let (mut k, mut v) = (None, None);
        for (number, raw) in fields(bytes)? {
            match number {
                1 => k = Some(raw),
                2 => v = Some(raw),
                _ => {}
            }
        }
        keep_last(&mut pairs, map_key(&key_field.kind(), k)?, v);
    }
    object(pairs, out, |value, out| match (value_field.kind(), value) {
        (Kind::Message(m), Some(Raw::Bytes(b))) => nested(field, &m, b, out, depth + 1),
        (Kind::Message(m), None) => nested(field, &m, &[], out, depth + 1),
        (kind, Some(raw)) => scalar(&kind, raw, out),
        (kind, None) => default_scalar(&kind, out),
    })
}

/// Map entries in order of their keys' first appearance, a later entry of a
/// key replacing the earlier one's value.
fn keep_last<K: PartialEq, V>(pairs: &mut Vec<(K, V)>, key: K, value: V) {
    match pairs.iter_mut().find(|(k, _)| *k == key) {
        Some(pair) => pair.1 = value,
        None => pairs.push((key, value)),
    }
}

/// `pairs` as a JSON object, each value written by `value`.
fn object<K: AsRef<str>, V>(
    pairs: Vec<(K, V)>,
    out: &mut Vec<u8>,
    mut value: impl FnMut(V, &mut Vec<u8>) -> Out<()>,
) -> Out<()> {
    out.push(b'{');
    for (i, (key, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(key.as_ref(), out);
        out.push(b':');
        value(v, out)?;
    }
    out.push(b'}');
    Ok(())
}

fn map_key(kind: &Kind, raw: Option<Raw<'_>>) -> Out<String> {
    Ok(match (kind, raw) {
        (Kind::String, Some(Raw::Bytes(b))) => {
            std::str::from_utf8(b).map_err(|_| Declined)?.to_owned()
        }
        (Kind::String, None) => String::new(),
        (Kind::Bool, r) => (matches!(r, Some(Raw::Varint(v)) if v != 0)).to_string(),
        (kind, None) => {
            let mut out = Vec::new();
            default_scalar(kind, &mut out)?;
            String::from_utf8(out)
                .map_err(|_| Declined)?
                .trim_matches('"')
                .to_owned()
        }
        (kind, Some(raw)) => {
            let mut out = Vec::new();
            scalar(kind, raw, &mut out)?;
            String::from_utf8(out)
                .map_err(|_| Declined)?
                .trim_matches('"')
                .to_owned()
        }
    })
}

fn default_scalar(kind: &Kind, out: &mut Vec<u8>) -> Out<()> {
    match kind {
        Kind::String | Kind::Bytes => scalar(kind, Raw::Bytes(&[]), out),
        Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => scalar(kind, Raw::Fixed64(0), out),
        Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => scalar(kind, Raw::Fixed32(0), out),
        _ => scalar(kind, Raw::Varint(0), out),
    }
}

fn number<T: serde::Serialize>(value: T, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, &value);
}

/// A 64-bit integer as proto3 JSON writes it: a decimal string.
fn quoted(value: impl itoa::Integer, out: &mut Vec<u8>) {
    out.push(b'"');
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    out.push(b'"');
}

/// `n` as exactly `width` decimal digits (`n` < 10^width).
fn digits(mut n: u32, width: usize, out: &mut Vec<u8>) {
    let at = out.len();
    out.resize(at + width, b'0');
    for slot in out[at..].iter_mut().rev() {
        // A digit: n % 10 < 10.
        #[allow(clippy::cast_possible_truncation)]
        let digit = (n % 10) as u8;
        *slot = b'0' + digit;
        n /= 10;
    }
}

/// A `Timestamp` of years 0001 to 9999 as RFC 3339 in UTC, the way
/// `prost-types` displays it (and `prost-reflect` writes it): fractional
/// seconds left out when zero, else in 3, 6 or 9 digits.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]
fn timestamp(seconds: i64, nanos: u32, out: &mut Vec<u8>) {
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400) as u32;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u32;
    out.push(b'"');
    digits(year, 4, out);
    out.push(b'-');
    digits(month, 2, out);
    out.push(b'-');
    digits(day, 2, out);
    out.push(b'T');
    digits(of_day / 3_600, 2, out);
    out.push(b':');
    digits(of_day / 60 % 60, 2, out);
    out.push(b':');
    digits(of_day % 60, 2, out);
    if nanos != 0 {
        out.push(b'.');
        if nanos.is_multiple_of(1_000_000) {
            digits(nanos / 1_000_000, 3, out);
        } else if nanos.is_multiple_of(1_000) {
            digits(nanos / 1_000, 6, out);
        } else {
            digits(nanos, 9, out);
        }
    }
    out.extend_from_slice(b"Z\"");
}

fn float(value: f64, is_f32: bool, out: &mut Vec<u8>) {
    if value.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 {
            b"\"Infinity\""
        } else {
            b"\"-Infinity\""
        });
    } else if is_f32 {
        #[allow(clippy::cast_possible_truncation)]
        number(value as f32, out);
    } else {
        number(value, out);
    }
}

#[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
fn scalar(kind: &Kind, raw: Raw<'_>, out: &mut Vec<u8>) -> Out<()> {
    match (kind, raw) {
        (Kind::String, Raw::Bytes(b)) => string(std::str::from_utf8(b).map_err(|_| Declined)?, out),
        (Kind::Bytes, Raw::Bytes(b)) => {
            out.push(b'"');
            out.extend_from_slice(STANDARD.encode(b).as_bytes());
            out.push(b'"');
        }
        (Kind::Bool, Raw::Varint(v)) => {
            out.extend_from_slice(if v != 0 { b"true" } else { b"false" })
        }
        (Kind::Int32, Raw::Varint(v)) => number(v as i32, out),
        (Kind::Sint32, Raw::Varint(v)) => {
            number(((v as u32) >> 1) as i32 ^ -((v as u32 & 1) as i32), out)
        }
        (Kind::Uint32, Raw::Varint(v)) => number(v as u32, out),
        (Kind::Int64, Raw::Varint(v)) => quoted(v as i64, out),
        (Kind::Sint64, Raw::Varint(v)) => quoted((v >> 1) as i64 ^ -((v & 1) as i64), out),
        (Kind::Uint64, Raw::Varint(v)) => quoted(v, out),
        (Kind::Fixed32, Raw::Fixed32(v)) => number(v, out),
        (Kind::Sfixed32, Raw::Fixed32(v)) => number(v as i32, out),
        (Kind::Fixed64, Raw::Fixed64(v)) => quoted(v, out),
        (Kind::Sfixed64, Raw::Fixed64(v)) => quoted(v as i64, out),
        (Kind::Float, Raw::Fixed32(v)) => float(f64::from(f32::from_bits(v)), true, out),
        (Kind::Double, Raw::Fixed64(v)) => float(f64::from_bits(v), false, out),
        (Kind::Enum(e), Raw::Varint(v)) => {
            let n = v as i32;
            if e.full_name() == "google.protobuf.NullValue" {
                out.extend_from_slice(b"null");
            } else {
                match e.get_value(n) {
                    Some(value) => string(value.name(), out),
                    None => number(n, out),
                }
            }
        }
        _ => return Err(Declined),
    }
    Ok(())
}

/// The well-known types whose JSON is not an object of their fields.
fn well_known(desc: &MessageDescriptor, bytes: &[u8], out: &mut Vec<u8>, depth: usize) -> Out<()> {
    match desc.full_name() {
        "google.protobuf.Struct" => return json_object(bytes, out, depth),
        "google.protobuf.ListValue" => return json_array(bytes, out, depth),
        "google.protobuf.Value" => return json_value(bytes, out, depth),
        _ => {}
    }
    let seen = fields(bytes)?;
    let last = |n: u32| seen.iter().rev().find(|(f, _)| *f == n).map(|(_, r)| *r);
    let int = |n: u32| match last(n) {
        Some(Raw::Varint(v)) => Ok(v),
        None => Ok(0),
        Some(_) => Err(Declined),
    };
    match desc.full_name() {
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
        "google.protobuf.Timestamp" => {
            let (seconds, nanos) = (int(1)? as i64, int(2)? as i32);
            // RFC 3339 covers years 0001 to 9999 only.
            if !(-62_135_596_800..=253_402_300_799).contains(&seconds)
                || !(0..1_000_000_000).contains(&nanos)
            {
                return Err(Declined);
            }
            #[allow(clippy::cast_sign_loss)]
            timestamp(seconds, nanos as u32, out);
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
        "google.protobuf.Duration" => {
            let d = prost_types::Duration {
                seconds: int(1)? as i64,
                nanos: int(2)? as i32,
            };
            if d.seconds.unsigned_abs() > 315_576_000_000 || d.nanos.unsigned_abs() >= 1_000_000_000
            {
                return Err(Declined);
            }
            let _ = std::io::Write::write_fmt(out, format_args!("\"{d}\""));
        }
        "google.protobuf.Empty" => out.extend_from_slice(b"{}"),
        "google.protobuf.StringValue"
        | "google.protobuf.BytesValue"
        | "google.protobuf.BoolValue"
        | "google.protobuf.Int32Value"
        | "google.protobuf.UInt32Value"
        | "google.protobuf.Int64Value"
        | "google.protobuf.UInt64Value"
        | "google.protobuf.FloatValue"
        | "google.protobuf.DoubleValue" => {
            let field = desc.get_field(1).ok_or(Declined)?;
            match last(1) {
                Some(raw) => scalar(&field.kind(), raw, out)?,
                None => default_scalar(&field.kind(), out)?,
            }
        }
        // Any, FieldMask and the descriptor types: the fallback's.
        _ => return Err(Declined),
    }
    Ok(())
}

// `Struct`, `Value` and `ListValue` (a token's claims) are written without
// their descriptors: their field numbers and types are fixed by
// `google/protobuf/struct.proto`, and claims are most of an answer.

/// The encoded messages of field 1 (`Struct`'s entries, `ListValue`'s
/// values), other fields skipped.
fn messages_of_field_1(bytes: &[u8]) -> impl Iterator<Item = Out<&[u8]>> {
    each_field(bytes).filter_map(|field| match field {
        Ok((1, Raw::Bytes(message))) => Some(Ok(message)),
        Ok((1, _)) | Err(_) => Some(Err(Declined)),
        Ok(_) => None,
    })
}

/// A `google.protobuf.Struct` (`map<string, Value> fields = 1`): an object,
/// a later entry of a key replacing the earlier one's value in its place.
fn json_object(bytes: &[u8], out: &mut Vec<u8>, depth: usize) -> Out<()> {
    if depth > MAX_DEPTH {
        return Err(Declined);
    }
    let mut pairs: Vec<(&str, Option<&[u8]>)> = Vec::new();
    for entry in messages_of_field_1(bytes) {
        let entry = entry?;
        let (mut key, mut value) = ("", None);
        for field in each_field(entry) {
            match field? {
                (1, Raw::Bytes(k)) => key = std::str::from_utf8(k).map_err(|_| Declined)?,
                (2, Raw::Bytes(v)) => value = Some(v),
                (1 | 2, _) => return Err(Declined),
                _ => {}
            }
        }
        keep_last(&mut pairs, key, value);
    }
    object(pairs, out, |value, out| {
        json_value(value.unwrap_or_default(), out, depth + 1)
    })
}

/// A `google.protobuf.ListValue` (`repeated Value values = 1`): an array.
fn json_array(bytes: &[u8], out: &mut Vec<u8>, depth: usize) -> Out<()> {
    if depth > MAX_DEPTH {
        return Err(Declined);
    }
    out.push(b'[');
    let mut first = true;
    for value in messages_of_field_1(bytes) {
        let value = value?;
        if !first {
            out.push(b',');
        }
        first = false;
        json_value(value, out, depth + 1)?;
    }
    out.push(b']');
    Ok(())
}

/// A `google.protobuf.Value`: the member of its oneof set last (null when
/// none is); a `struct_value` or `list_value` set more than once merges, as
/// parsing the concatenation does.
fn json_value(bytes: &[u8], out: &mut Vec<u8>, depth: usize) -> Out<()> {
    if depth > MAX_DEPTH {
        return Err(Declined);
    }
    let (mut last, mut structs, mut lists) = (None, 0usize, 0usize);
    for field in each_field(bytes) {
        let field = field?;
        match field.0 {
            5 => structs += 1,
            6 => lists += 1,
            _ => {}
        }
        last = Some(field);
    }
    match last {
        None => out.extend_from_slice(b"null"),
        // null_value (NullValue has one value), number_value, string_value, bool_value
        Some((1, Raw::Varint(_))) => out.extend_from_slice(b"null"),
        Some((2, Raw::Fixed64(v))) => float(f64::from_bits(v), false, out),
        Some((3, Raw::Bytes(b))) => string(std::str::from_utf8(b).map_err(|_| Declined)?, out),
        Some((4, Raw::Varint(v))) => out.extend_from_slice(if v != 0 { b"true" } else { b"false" }),
        // struct_value, list_value
        Some((number @ (5 | 6), Raw::Bytes(only))) => {
            let merged;
            let whole = if (if number == 5 { structs } else { lists }) == 1 {
                only
            } else {
                let mut all = Vec::new();
                for field in each_field(bytes) {
                    match field? {
                        (n, Raw::Bytes(b)) if n == number => all.extend_from_slice(b),
                        (n, _) if n == number => return Err(Declined),
                        _ => {}
                    }
                }
                merged = all;
                &merged[..]
            };
            if number == 5 {
                json_object(whole, out, depth + 1)?;
            } else {
                json_array(whole, out, depth + 1)?;
            }
        }
        Some(_) => return Err(Declined),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use authd_proto::pb;
    use proptest::strategy::Strategy as _;
    use prost::Message;
    use prost_reflect::{DynamicMessage, ReflectMessage, SerializeOptions};
    use serde_json::Value;

    fn oracle(desc: &MessageDescriptor, bytes: &[u8]) -> Value {
        let message = DynamicMessage::decode(desc.clone(), bytes).expect("decodes");
        let mut out = Vec::new();
        message
            .serialize_with_options(
                &mut serde_json::Serializer::new(&mut out),
                &SerializeOptions::new(),
            )
            .expect("serializes");
        serde_json::from_slice(&out).expect("json")
    }

    fn same<M: Message>(name: &str, message: &M) {
        let pool = super::super::descriptors().expect("pool");
        let desc = pool.get_message_by_name(name).expect("message");
        let bytes = message.encode_to_vec();
        let fast = transcode(&Plan::new(&desc), &bytes).expect("transcodes");
        let fast: Value = serde_json::from_slice(&fast).expect("valid JSON");
        assert_eq!(fast, oracle(&desc, &bytes), "{name}");
    }

    fn value(kind: prost_types::value::Kind) -> prost_types::Value {
        prost_types::Value { kind: Some(kind) }
    }

    fn claims() -> prost_types::Struct {
        use prost_types::value::Kind as K;
        let nested = prost_types::Struct {
            fields: [
                ("n".to_owned(), value(K::NumberValue(1.5))),
                ("none".to_owned(), value(K::NullValue(0))),
            ]
            .into(),
        };
        prost_types::Struct {
            fields: [
                (
                    "org".to_owned(),
                    value(K::StringValue("acme \"q\" é\n".to_owned())),
                ),
                ("admin".to_owned(), value(K::BoolValue(true))),
                ("n".to_owned(), value(K::NumberValue(-3.0))),
                ("big".to_owned(), value(K::NumberValue(1.0e21))),
                ("frac".to_owned(), value(K::NumberValue(0.1))),
                ("nested".to_owned(), value(K::StructValue(nested))),
                (
                    "list".to_owned(),
                    value(K::ListValue(prost_types::ListValue {
                        values: vec![
                            value(K::StringValue("a".to_owned())),
                            value(K::NumberValue(2.0)),
                        ],
                    })),
                ),
                ("empty".to_owned(), prost_types::Value { kind: None }),
            ]
            .into(),
        }
    }

    #[test]
    fn answers_read_as_prost_reflect_writes_them() {
        same(
            "auth.v1.VerifyTokenResponse",
            &pb::VerifyTokenResponse {
                subject: "auth0|carol".to_owned(),
                issuer: "https://tenant.example/".to_owned(),
                audiences: vec!["a".to_owned(), "b".to_owned()],
                scopes: vec!["read:orders".to_owned()],
                permissions: vec![],
                session_id: String::new(),
                token_id: "jti-1".to_owned(),
                issued_at: Some(prost_types::Timestamp {
                    seconds: 1_796_416_484,
                    nanos: 0,
                }),
                expires_at: Some(prost_types::Timestamp {
                    seconds: 1_796_420_084,
                    nanos: 120_000_000,
                }),
                claims: Some(claims()),
                authorized_party: "app".to_owned(),
                ..Default::default()
            },
        );
        same(
            "auth.v1.VerifyTokenResponse",
            &pb::VerifyTokenResponse::default(),
        );
        same(
            "auth.v1.VerifyTokenResponse",
            &pb::VerifyTokenResponse {
                issued_at: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: 1,
                }),
                claims: Some(prost_types::Struct::default()),
                ..Default::default()
            },
        );
    }

    #[test]
    fn maps_of_messages_read_the_same_planned_ahead_or_when_met() {
        // No type authd serves holds a map of messages (but `Struct`, which
        // is written by its field numbers): one is made for the test,
        // `message T { map<string, Inner> m = 1; }`, `message Inner {
        // string s = 1; }`.
        use prost_types::{
            DescriptorProto, FieldDescriptorProto, FileDescriptorProto, MessageOptions,
            field_descriptor_proto::{Label, Type},
        };
        let field = |name: &str, number, label: Label, kind: Type, type_name: Option<&str>| {
            FieldDescriptorProto {
                name: Some(name.to_owned()),
                number: Some(number),
                label: Some(label as i32),
                r#type: Some(kind as i32),
                type_name: type_name.map(str::to_owned),
                json_name: Some(name.to_owned()),
                ..Default::default()
            }
        };
        let file = FileDescriptorProto {
            name: Some("maps.proto".to_owned()),
            package: Some("test".to_owned()),
            syntax: Some("proto3".to_owned()),
            message_type: vec![
                DescriptorProto {
                    name: Some("T".to_owned()),
                    field: vec![field(
                        "m",
                        1,
                        Label::Repeated,
                        Type::Message,
                        Some(".test.T.MEntry"),
                    )],
                    nested_type: vec![DescriptorProto {
                        name: Some("MEntry".to_owned()),
                        field: vec![
                            field("key", 1, Label::Optional, Type::String, None),
                            field(
                                "value",
                                2,
                                Label::Optional,
                                Type::Message,
                                Some(".test.Inner"),
                            ),
                        ],
                        options: Some(MessageOptions {
                            map_entry: Some(true),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                DescriptorProto {
                    name: Some("Inner".to_owned()),
                    field: vec![field("s", 1, Label::Optional, Type::String, None)],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let pool = prost_reflect::DescriptorPool::from_file_descriptor_set(
            prost_types::FileDescriptorSet { file: vec![file] },
        )
        .expect("a valid file");
        let desc = pool.get_message_by_name("test.T").expect("T");
        let mut bytes = Vec::new();
        for (key, s) in [("b", "x\"y"), ("a", ""), ("b", "z")] {
            let mut inner = Vec::new();
            prost::encoding::string::encode(1, &s.to_owned(), &mut inner);
            let mut entry = Vec::new();
            prost::encoding::string::encode(1, &key.to_owned(), &mut entry);
            prost::encoding::bytes::encode(2, &inner, &mut entry);
            prost::encoding::bytes::encode(1, &entry, &mut bytes);
        }
        // An entry with no value: the value type's empty message.
        let mut entry = Vec::new();
        prost::encoding::string::encode(1, &"c".to_owned(), &mut entry);
        prost::encoding::bytes::encode(1, &entry, &mut bytes);
        let planned = transcode(&Plan::new(&desc), &bytes);
        let fast: Value =
            serde_json::from_slice(planned.as_ref().expect("transcodes")).expect("valid JSON");
        assert_eq!(fast, oracle(&desc, &bytes));
        assert_eq!(transcode(&Plan::to_depth(&desc, 0), &bytes), planned);
    }

    #[test]
    fn every_answer_type_of_the_service_reads_the_same() {
        // Each RPC's answer, empty and with every field set to a
        // non-default value by a generic filler.
        let pool = super::super::descriptors().expect("pool");
        let service = pool
            .get_service_by_name("auth.v1.AuthService")
            .expect("service");
        for method in service.methods() {
            let desc = method.output();
            let mut message = DynamicMessage::new(desc.clone());
            fill(&mut message, 0);
            let bytes = message.encode_to_vec();
            let fast = transcode(&Plan::new(&desc), &bytes).expect("transcodes");
            let fast: Value = serde_json::from_slice(&fast).expect("valid JSON");
            assert_eq!(fast, oracle(&desc, &bytes), "{}", desc.full_name());
            // Planned ahead or nested plans made when met (a type that
            // nests deeper than plans are made ahead): the same bytes.
            assert_eq!(
                transcode(&Plan::to_depth(&desc, 0), &bytes),
                transcode(&Plan::new(&desc), &bytes),
                "{}",
                desc.full_name()
            );
            assert_eq!(
                serde_json::from_slice::<Value>(&transcode(&Plan::new(&desc), &[]).expect("empty"))
                    .expect("json"),
                oracle(&desc, &[]),
            );
        }
    }

    /// Sets every field of `message` (lists to two values, maps to one
    /// entry), recursing into messages a few levels.
    fn fill(message: &mut DynamicMessage, depth: usize) {
        use prost_reflect::Value as V;
        let desc = message.descriptor();
        for field in desc.fields() {
            if field.containing_oneof().is_some_and(|o| !o.is_synthetic())
                && desc.fields().any(|f| {
                    f.number() < field.number()
                        && f.containing_oneof().map(|o| o.name().to_owned())
                            == field.containing_oneof().map(|o| o.name().to_owned())
                })
            {
                continue; // one member of each oneof
            }
            let one = |kind: &Kind| -> Option<V> {
                Some(match kind {
                    Kind::String => V::String("s\u{e9}\"x".to_owned()),
                    Kind::Bytes => V::Bytes(bytes::Bytes::from_static(b"\x00\xffab")),
                    Kind::Bool => V::Bool(true),
                    Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => V::I32(-7),
                    Kind::Uint32 | Kind::Fixed32 => V::U32(7),
                    Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => V::I64(-1_234_567_890_123),
                    Kind::Uint64 | Kind::Fixed64 => V::U64(1_234_567_890_123),
                    Kind::Float => V::F32(0.25),
                    Kind::Double => V::F64(-2.5),
                    Kind::Enum(e) => V::EnumNumber(e.values().last().map_or(0, |v| v.number())),
                    Kind::Message(m) => {
                        if depth > 3 || m.full_name() == "google.protobuf.Any" {
                            return None;
                        }
                        let mut inner = DynamicMessage::new(m.clone());
                        match m.full_name() {
                            "google.protobuf.Timestamp" | "google.protobuf.Duration" => {
                                inner.set_field_by_number(1, V::I64(1_700_000_000));
                                inner.set_field_by_number(2, V::I32(5_000));
                            }
                            "google.protobuf.Struct" => {
                                let s = claims();
                                inner =
                                    DynamicMessage::decode(m.clone(), s.encode_to_vec().as_slice())
                                        .expect("struct");
                            }
                            _ => fill(&mut inner, depth + 1),
                        }
                        V::Message(inner)
                    }
                })
            };
            let kind = field.kind();
            if field.is_map() {
                let Kind::Message(entry) = &kind else {
                    continue;
                };
                let (k, v) = (entry.map_entry_key_field(), entry.map_entry_value_field());
                let (Some(V::String(key)), Some(value)) = (one(&k.kind()), one(&v.kind())) else {
                    continue;
                };
                message.set_field(
                    &field,
                    V::Map([(prost_reflect::MapKey::String(key), value)].into()),
                );
            } else if field.is_list() {
                let (Some(a), Some(b)) = (one(&kind), one(&kind)) else {
                    continue;
                };
                message.set_field(&field, V::List(vec![a, b]));
            } else if let Some(v) = one(&kind) {
                message.set_field(&field, v);
            }
        }
    }

    fn displayed(seconds: i64, nanos: u32) -> String {
        let nanos = i32::try_from(nanos).expect("under 10^9");
        format!("\"{}\"", prost_types::Timestamp { seconds, nanos })
    }

    fn written(seconds: i64, nanos: u32) -> String {
        let mut out = Vec::new();
        timestamp(seconds, nanos, &mut out);
        String::from_utf8(out).expect("ASCII")
    }

    #[test]
    fn timestamps_at_the_edges_read_as_prost_types_displays_them() {
        for seconds in [
            -62_135_596_800, // 0001-01-01T00:00:00Z
            253_402_300_799, // 9999-12-31T23:59:59Z
            0,
            -1,
            951_782_400,    // 2000-02-29
            -2_203_891_200, // 1900-03-01
            4_107_542_399,  // 2100-02-28T23:59:59Z
            1_796_416_484,
        ] {
            for nanos in [0, 1, 999_999_999, 120_000_000, 5_000, 450_000] {
                assert_eq!(written(seconds, nanos), displayed(seconds, nanos));
            }
        }
    }

    /// Any `Value`: scalars (strings with escapes and non-ASCII), and
    /// structs and lists nested a few levels.
    fn any_value() -> impl proptest::strategy::Strategy<Value = prost_types::Value> {
        use prost_types::value::Kind as K;
        let leaf = proptest::prop_oneof![
            proptest::strategy::Just(prost_types::Value { kind: None }),
            proptest::strategy::Just(value(K::NullValue(0))),
            proptest::num::f64::NORMAL.prop_map(|n| value(K::NumberValue(n))),
            proptest::num::i32::ANY.prop_map(|n| value(K::NumberValue(f64::from(n)))),
            "\\PC{0,12}|[\"\\\\\n\t\u{1}é]{0,4}".prop_map(|s| value(K::StringValue(s))),
            proptest::bool::ANY.prop_map(|b| value(K::BoolValue(b))),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            proptest::prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6)
                    .prop_map(|values| value(K::ListValue(prost_types::ListValue { values }))),
                proptest::collection::btree_map("[a-z_]{0,6}|\\PC{0,3}", inner, 0..6).prop_map(
                    |fields| value(K::StructValue(prost_types::Struct {
                        fields: fields.into_iter().collect()
                    }))
                ),
            ]
        })
    }

    /// The claims of an answer as their wire bytes, `extra` appended.
    fn claims_on_the_wire(extra: &[u8]) -> (MessageDescriptor, Vec<u8>) {
        let pool = super::super::descriptors().expect("pool");
        let desc = pool
            .get_message_by_name("auth.v1.VerifyTokenResponse")
            .expect("message");
        let field = desc.get_field_by_name("claims").expect("claims");
        let mut bytes = pb::VerifyTokenResponse {
            claims: Some(claims()),
            ..Default::default()
        }
        .encode_to_vec();
        // The claims field once more, holding `extra`: the two merge.
        prost::encoding::encode_key(
            field.number(),
            prost::encoding::WireType::LengthDelimited,
            &mut bytes,
        );
        prost::encoding::encode_varint(extra.len() as u64, &mut bytes);
        bytes.extend_from_slice(extra);
        (desc, bytes)
    }

    /// `Struct` entries as a writer that repeats keys might send them.
    fn entry(key: &str, value: &prost_types::Value) -> Vec<u8> {
        let mut entry = Vec::new();
        prost::encoding::string::encode(1, &key.to_owned(), &mut entry);
        prost::encoding::message::encode(2, value, &mut entry);
        let mut field = Vec::new();
        prost::encoding::bytes::encode(1, &entry, &mut field);
        field
    }

    #[test]
    fn repeated_keys_and_members_read_as_prost_reflect_reads_them() {
        use prost_types::value::Kind as K;
        // A key of the claims given again (its value replaced in place), a
        // new key twice, and a Value whose struct_value is set twice (the
        // two merge) after a number_value (the oneof's last member wins).
        let mut extra = entry("org", &value(K::NumberValue(7.0)));
        extra.extend(entry("x", &value(K::BoolValue(false))));
        extra.extend(entry("x", &value(K::StringValue("again".to_owned()))));
        let mut twice = Vec::new();
        prost::encoding::double::encode(2, &1.0, &mut twice);
        for (k, v) in [("a", 1.0), ("b", 2.0)] {
            let inner = prost_types::Struct {
                fields: [(k.to_owned(), value(K::NumberValue(v)))].into(),
            };
            prost::encoding::message::encode(5, &inner, &mut twice);
        }
        let mut merged = Vec::new();
        prost::encoding::string::encode(1, &"merged".to_owned(), &mut merged);
        prost::encoding::bytes::encode(2, &twice, &mut merged);
        prost::encoding::bytes::encode(1, &merged, &mut extra);
        let (desc, bytes) = claims_on_the_wire(&extra);
        let text = String::from_utf8(transcode(&Plan::new(&desc), &bytes).expect("transcodes"))
            .expect("UTF-8");
        // Each key once (a JSON reader would hide a repeated one).
        for key in ["\"org\":", "\"x\":", "\"merged\":"] {
            assert_eq!(text.matches(key).count(), 1, "{key} in {text}");
        }
        let fast: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(fast, oracle(&desc, &bytes));
        assert_eq!(fast["claims"]["org"], 7.0);
        assert_eq!(fast["claims"]["x"], "again");
        assert_eq!(
            fast["claims"]["merged"],
            serde_json::json!({"a": 1.0, "b": 2.0})
        );
    }

    #[test]
    fn malformed_claims_decline() {
        // A key that is not a string, a value that is not a message, a
        // Value member of the wrong wire type, a member unknown to Value,
        // a string that is not UTF-8.
        let mut not_utf8 = Vec::new();
        prost::encoding::bytes::encode(3, &vec![0xff, 0xfe], &mut not_utf8);
        let mut bad_value = Vec::new();
        prost::encoding::string::encode(1, &"k".to_owned(), &mut bad_value);
        prost::encoding::bytes::encode(2, &not_utf8, &mut bad_value);
        for extra in [
            vec![0x0a, 0x02, 0x08, 0x01],
            vec![0x0a, 0x05, 0x0a, 0x01, b'k', 0x10, 0x01],
            vec![0x0a, 0x07, 0x0a, 0x01, b'k', 0x12, 0x02, 0x10, 0x01],
            vec![0x0a, 0x07, 0x0a, 0x01, b'k', 0x12, 0x02, 0x38, 0x01],
            [
                &[0x0a, u8::try_from(bad_value.len()).expect("short")][..],
                &bad_value,
            ]
            .concat(),
        ] {
            let (desc, bytes) = claims_on_the_wire(&extra);
            assert_eq!(
                transcode(&Plan::new(&desc), &bytes),
                Err(Declined),
                "{extra:?}"
            );
        }
    }

    #[test]
    fn claims_nested_past_the_bound_decline() {
        use prost_types::value::Kind as K;
        let mut deep = value(K::NullValue(0));
        for _ in 0..MAX_DEPTH {
            deep = value(K::ListValue(prost_types::ListValue { values: vec![deep] }));
        }
        let (desc, bytes) = claims_on_the_wire(&entry("deep", &deep));
        assert_eq!(transcode(&Plan::new(&desc), &bytes), Err(Declined));
    }

    proptest::proptest! {
        #[test]
        fn any_claims_read_as_prost_reflect_writes_them(
            fields in proptest::collection::btree_map("\\PC{0,8}", any_value(), 0..8),
        ) {
            let answer = pb::VerifyTokenResponse {
                claims: Some(prost_types::Struct { fields: fields.into_iter().collect() }),
                ..Default::default()
            };
            let pool = super::super::descriptors().expect("pool");
            let desc = pool
                .get_message_by_name("auth.v1.VerifyTokenResponse")
                .expect("message");
            let bytes = answer.encode_to_vec();
            let fast = transcode(&Plan::new(&desc), &bytes).expect("transcodes");
            let fast: Value = serde_json::from_slice(&fast).expect("valid JSON");
            proptest::prop_assert_eq!(fast, oracle(&desc, &bytes));
        }

        #[test]
        fn timestamps_read_as_prost_types_displays_them(
            seconds in -62_135_596_800i64..=253_402_300_799,
            nanos in proptest::prop_oneof![
                proptest::strategy::Just(0u32),
                (0u32..1_000).prop_map(|m| m * 1_000_000),
                (0u32..1_000_000).prop_map(|u| u * 1_000),
                0u32..1_000_000_000,
            ],
        ) {
            proptest::prop_assert_eq!(written(seconds, nanos), displayed(seconds, nanos));
        }

        #[test]
        fn strings_are_escaped_as_serde_json_escapes_them(s in "(?s).{0,100}|[a-z\\x00-\\x20\"\\\\\\x7f\u{e9}]{0,40}") {
            let mut out = Vec::new();
            string(&s, &mut out);
            proptest::prop_assert_eq!(out, serde_json::to_vec(&s).expect("a string"));
        }

        #[test]
        fn integers_are_quoted_decimals(v in proptest::num::i64::ANY) {
            let mut out = Vec::new();
            quoted(v, &mut out);
            proptest::prop_assert_eq!(out, format!("\"{v}\"").into_bytes());
        }
    }

    #[test]
    fn what_it_does_not_know_it_declines() {
        let pool = super::super::descriptors().expect("pool");
        let desc = pool
            .get_message_by_name("auth.v1.VerifyTokenResponse")
            .expect("message");
        // Truncated, a bad wire type, a string that is not UTF-8.
        assert_eq!(
            transcode(&Plan::new(&desc), &[0x0a, 0x05, b'a']),
            Err(Declined)
        );
        assert_eq!(transcode(&Plan::new(&desc), &[0x0b]), Err(Declined));
        assert_eq!(
            transcode(&Plan::new(&desc), &[0x0a, 0x01, 0xff]),
            Err(Declined)
        );
        // A timestamp past year 9999.
        let late = pb::VerifyTokenResponse {
            issued_at: Some(prost_types::Timestamp {
                seconds: 300_000_000_000,
                nanos: 0,
            }),
            ..Default::default()
        };
        assert_eq!(
            transcode(&Plan::new(&desc), &late.encode_to_vec()),
            Err(Declined)
        );
    }
}
