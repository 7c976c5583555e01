//! Request bodies: read whole under their RPC's size limit and the body
//! timeout before anything parses them, and the JSON ones checked for depth
//! and turned into the RPC's protobuf message.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, header};
use http_body::Body as HttpBody;
use http_body_util::BodyExt;
use prost::Message;
use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};

use super::{Codec, MAX_JSON_DEPTH, wire_json::Plan};
use crate::error::Error;

/// The 5-byte prefix of a gRPC message and of a Connect envelope: flags,
/// big-endian length.
pub(super) const PREFIX: usize = 5;

/// Reads `body` whole: refused at once when its declared `content-length`
/// is over `max`, as soon as the bytes received pass `max`, and when it has
/// not arrived within `timeout`.
pub(super) async fn read<B>(
    headers: &HeaderMap,
    body: B,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, Error>
where
    B: HttpBody<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(len) = declared
        && len > max
    {
        return Err(Error::RequestTooLarge { len, max });
    }
    let reading = async {
        let mut body = std::pin::pin!(body);
        // A body that arrives in one frame (most do) is kept as it came;
        // the bytes of several are gathered.
        let mut first = Bytes::new();
        let mut rest: Option<BytesMut> = None;
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| Error::MalformedRequest(format!("the request body failed: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let len = first.len() + rest.as_ref().map_or(0, BytesMut::len) + data.len();
            if len > max {
                return Err(Error::RequestTooLarge { len, max });
            }
            match &mut rest {
                Some(whole) => whole.extend_from_slice(&data),
                None if first.is_empty() => first = data,
                None => {
                    let mut whole = BytesMut::with_capacity(len);
                    whole.extend_from_slice(&first);
                    whole.extend_from_slice(&data);
                    rest = Some(whole);
                }
            }
        }
        Ok(rest.map_or(first, BytesMut::freeze))
    };
    match tokio::time::timeout(timeout, reading).await {
        Ok(read) => read,
        Err(_) => Err(Error::DeadlineExceeded {
            waiting_for: "the request body",
        }),
    }
}

/// How a request message is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Identity,
    Gzip,
}

/// The encodings authd reads, for `Accept-Encoding`.
pub(super) const ACCEPTED_ENCODINGS: &str = "gzip";

/// `bytes` decompressed, refused once they pass `max` decompressed (so a
/// small bomb costs no more than `max`).
pub(super) fn decompress(encoding: Encoding, bytes: Bytes, max: usize) -> Result<Bytes, Error> {
    match encoding {
        Encoding::Identity => Ok(bytes),
        Encoding::Gzip => {
            use std::io::Read;
            let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(max));
            let mut reader = flate2::read::GzDecoder::new(&bytes[..]).take(max as u64 + 1);
            reader.read_to_end(&mut out).map_err(|e| {
                Error::MalformedRequest(format!("the gzip body does not decompress: {e}"))
            })?;
            if out.len() > max {
                return Err(Error::RequestTooLarge {
                    len: out.len(),
                    max,
                });
            }
            Ok(Bytes::from(out))
        }
    }
}

/// Reads what a refused request still sends, up to 64 KiB or 1 s, so that
/// an HTTP/2 client sees the answer rather than a reset stream.
pub(super) async fn drain<B: HttpBody<Data = Bytes>>(body: B) {
    let reading = async {
        let mut body = std::pin::pin!(body);
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > 64 * 1024 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), reading).await;
}

/// The request message as a gRPC message, its 5-byte prefix included: a
/// JSON body parsed with the proto3 JSON mapping (unknown fields refused,
/// depth bounded), a binary one as it is (the RPC decodes it).
pub(super) fn to_grpc_message(
    codec: Codec,
    input: &MessageDescriptor,
    bytes: Bytes,
) -> Result<Bytes, Error> {
    match codec {
        Codec::Proto => Ok(framed(0, &bytes)),
        Codec::Json => {
            // An empty body is the empty message, as in the binary encoding.
            let json: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
                b"{}"
            } else {
                &bytes
            };
            if !depth_within(json, MAX_JSON_DEPTH) {
                return Err(Error::MalformedRequest(format!(
                    "the JSON nests deeper than {MAX_JSON_DEPTH} levels"
                )));
            }
            prefixed(0, json.len(), |out| {
                if super::json_wire::transcode(input, json, out).is_ok() {
                    return Ok(());
                }
                out.truncate(PREFIX);
                let mut de = serde_json::Deserializer::from_slice(json);
                let message = DynamicMessage::deserialize_with_options(
                    input.clone(),
                    &mut de,
                    &DeserializeOptions::new().deny_unknown_fields(true),
                )
                .and_then(|m| de.end().map(|()| m))
                .map_err(|e| {
                    Error::MalformedRequest(crate::error::truncate(
                        &format!("the JSON is not a {}: {e}", input.full_name()),
                        240,
                    ))
                })?;
                message
                    .encode(out)
                    .map_err(|e| Error::Internal(format!("a request does not encode: {e}")))
            })
        }
    }
}

/// An answer message from protobuf bytes to `codec`, JSON written by the
/// answer type's plan.
pub(super) fn from_proto(codec: Codec, output: &Plan, bytes: Bytes) -> Result<Bytes, Error> {
    match codec {
        Codec::Proto => Ok(bytes),
        Codec::Json => {
            if let Ok(json) = super::wire_json::transcode(output, &bytes) {
                return Ok(Bytes::from(json));
            }
            let message = DynamicMessage::decode(output.descriptor().clone(), bytes)
                .map_err(|e| Error::Internal(format!("an answer of authd does not decode: {e}")))?;
            let mut out = Vec::with_capacity(256);
            let mut ser = serde_json::Serializer::new(&mut out);
            message
                .serialize_with_options(&mut ser, &SerializeOptions::new())
                .map_err(|e| Error::Internal(format!("an answer does not encode as JSON: {e}")))?;
            Ok(Bytes::from(out))
        }
    }
}

/// `message` behind a 5-byte prefix with `flags`.
pub(super) fn framed(flags: u8, message: &[u8]) -> Bytes {
    let Ok(framed) = prefixed::<std::convert::Infallible>(flags, message.len(), |out| {
        out.extend_from_slice(message);
        Ok(())
    });
    framed
}

/// What `write` appends (about `capacity` bytes) behind a 5-byte prefix
/// with `flags` and its length.
fn prefixed<E>(
    flags: u8,
    capacity: usize,
    write: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<Bytes, E> {
    let mut out = BytesMut::with_capacity(PREFIX + capacity);
    out.put_u8(flags);
    out.put_u32(0);
    write(&mut out)?;
    let len = u32::try_from(out.len() - PREFIX).unwrap_or(u32::MAX);
    out[1..PREFIX].copy_from_slice(&len.to_be_bytes());
    Ok(out.freeze())
}

/// The first whole prefixed message of `buf` (its flags and bytes), taken
/// off `buf`; `None` while it has not all arrived.
pub(super) fn take_framed(buf: &mut BytesMut) -> Option<(u8, Bytes)> {
    if buf.len() < PREFIX {
        return None;
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if buf.len() < PREFIX + len {
        return None;
    }
    let flags = buf[0];
    let mut message = buf.split_to(PREFIX + len);
    let _ = message.split_to(PREFIX);
    Some((flags, message.freeze()))
}

/// Whether `json` nests objects and arrays at most `max` deep (strings and
/// their escapes skipped). Checked before parsing, so that no deep document
/// reaches the parser's recursion.
fn depth_within(json: &[u8], max: usize) -> bool {
    // No more opening brackets than `max`: no deeper than `max`, whatever
    // the strings hold (the usual case, found without walking the bytes).
    if memchr::memchr2_iter(b'{', b'[', json).nth(max).is_none() {
        return true;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    fn verify_request() -> MessageDescriptor {
        super::super::descriptors()
            .expect("pool")
            .get_message_by_name("auth.v1.VerifyTokenRequest")
            .expect("message")
    }

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert!(depth_within(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(!depth_within(br#"{"a":[1,{"b":2}]}"#, 2));
        assert!(depth_within(br#"{"a":"[[[[[[\"[[[["}"#, 1));
        let deep = "[".repeat(10_000);
        assert!(!depth_within(deep.as_bytes(), MAX_JSON_DEPTH));
    }

    #[test]
    fn json_maps_to_the_message_and_unknown_fields_are_refused() {
        let desc = verify_request();
        let message = |json: &'static [u8]| {
            let mut framed = BytesMut::from(
                to_grpc_message(Codec::Json, &desc, Bytes::from_static(json)).expect("valid"),
            );
            let (flags, proto) = take_framed(&mut framed).expect("one whole message");
            assert_eq!((flags, framed.len()), (0, 0));
            authd_proto::pb::VerifyTokenRequest::decode(proto).expect("decodes")
        };
        // Written by the fast path, and by the mapping (a null it declines).
        for json in [
            &br#"{"token":"t","requiredScopes":["a"]}"#[..],
            br#"{"token":"t","requiredScopes":["a"],"audience":null}"#,
        ] {
            let decoded = message(json);
            assert_eq!(decoded.token, "t");
            assert_eq!(decoded.required_scopes, ["a"]);
        }
        let decoded = message(br#"{"token":"t\u00e9","requiredScopes":[]}"#);
        assert_eq!(decoded.token, "t\u{e9}");
        for bad in [
            &br#"{"token":"t","tokn":"x"}"#[..],
            br#"{"token":1}"#,
            br#"{"token":"t"} trailing"#,
            br#"not json"#,
            br#"[]"#,
        ] {
            let refused =
                to_grpc_message(Codec::Json, &desc, Bytes::from_static(bad)).expect_err("bad");
            assert_eq!(refused.reason(), crate::Reason::MalformedRequest, "{bad:?}");
        }
        assert_eq!(
            to_grpc_message(Codec::Json, &desc, Bytes::new()).expect("empty is {}"),
            framed(0, b"")
        );
        assert_eq!(
            to_grpc_message(Codec::Proto, &desc, Bytes::from_static(b"\n\x01t")).expect("as is"),
            framed(0, b"\n\x01t")
        );
    }

    #[tokio::test]
    async fn bodies_are_bounded_by_declared_and_received_length() {
        let mut headers = HeaderMap::new();
        let second = Duration::from_secs(1);
        let body = || Full::new(Bytes::from(vec![b' '; 100]));
        assert_eq!(
            read(&headers, body(), 100, second)
                .await
                .expect("fits")
                .len(),
            100
        );
        assert_eq!(
            read(&headers, body(), 99, second).await,
            Err(Error::RequestTooLarge { len: 100, max: 99 })
        );
        headers.insert(header::CONTENT_LENGTH, "1000000".parse().expect("ascii"));
        assert_eq!(
            read(&headers, body(), 99, second).await,
            Err(Error::RequestTooLarge {
                len: 1_000_000,
                max: 99
            })
        );
    }

    #[tokio::test]
    async fn bodies_in_several_frames_are_gathered_and_bounded_as_a_whole() {
        let frames = |parts: &[&'static [u8]]| {
            let frames: Vec<Result<http_body::Frame<Bytes>, std::convert::Infallible>> = parts
                .iter()
                .map(|p| Ok(http_body::Frame::data(Bytes::from_static(p))))
                .collect();
            http_body_util::StreamBody::new(futures_util::stream::iter(frames))
        };
        let headers = HeaderMap::new();
        let second = Duration::from_secs(1);
        let parts: &[&'static [u8]] = &[b"", b"{\"tok", b"", b"en\":", b"\"t\"}"];
        assert_eq!(
            read(&headers, frames(parts), 100, second).await,
            Ok(Bytes::from_static(br#"{"token":"t"}"#))
        );
        assert_eq!(
            read(&headers, frames(&[b"abc"]), 3, second).await,
            Ok(Bytes::from_static(b"abc"))
        );
        assert_eq!(
            read(&headers, frames(&[b"ab", b"cd"]), 3, second).await,
            Err(Error::RequestTooLarge { len: 4, max: 3 })
        );
    }

    #[test]
    fn gzip_bodies_open_within_the_limit_and_bombs_do_not() {
        use std::io::Write;
        let gzip = |data: &[u8]| {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).expect("write");
            Bytes::from(encoder.finish().expect("finish"))
        };
        assert_eq!(
            decompress(Encoding::Gzip, gzip(b"{}"), 10).expect("opens"),
            Bytes::from_static(b"{}")
        );
        let bomb = gzip(&vec![b' '; 10_000_000]);
        assert!(bomb.len() < 20_000);
        assert!(matches!(
            decompress(Encoding::Gzip, bomb, 32 * 1024),
            Err(Error::RequestTooLarge { max: 32768, .. })
        ));
        assert_eq!(
            decompress(Encoding::Gzip, Bytes::from_static(b"not gzip"), 10)
                .expect_err("garbage")
                .reason(),
            crate::Reason::MalformedRequest
        );
    }

    #[test]
    fn framed_messages_round_trip_and_wait_for_their_bytes() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&framed(2, b"hello"));
        buf.extend_from_slice(&framed(0, b"wor")[..6]);
        assert_eq!(
            take_framed(&mut buf),
            Some((2, Bytes::from_static(b"hello")))
        );
        assert_eq!(take_framed(&mut buf), None);
        buf.extend_from_slice(b"or");
        assert_eq!(take_framed(&mut buf), Some((0, Bytes::from_static(b"wor"))));
    }
}
