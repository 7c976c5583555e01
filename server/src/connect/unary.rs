//! A Connect unary call: the body read under its RPC's limit, turned into
//! one gRPC call through the connection's stack, and the answer (message or
//! error) turned back.

use std::{convert::Infallible, fmt::Display, sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Version, header};
use http_body::Body as HttpBody;
use http_body_util::{BodyExt, Either, Full};
use tonic::{Status, body::Body};
use tower::Service;

use super::{
    BoxError, Codec, FrontBody, Protocols, Rpc,
    body::{self, ACCEPTED_ENCODINGS, Encoding},
    errors, memo,
};
use crate::error::Error;

/// Serves one Connect unary call of `rpc`.
pub(super) async fn serve<S, B, RB>(
    protocols: Arc<Protocols>,
    mut inner: S,
    rpc: Rpc,
    codec: Codec,
    request: Request<B>,
) -> Result<Response<FrontBody<RB>>, Infallible>
where
    S: Service<Request<Body>, Response = Response<RB>, Error = Infallible>,
    RB: HttpBody<Data = Bytes> + Unpin,
    RB::Error: Display,
    B: HttpBody<Data = Bytes>,
    B::Error: Display + Into<BoxError>,
{
    let answer = async {
        let call = grpc_call(&protocols, &rpc, codec, request, false).await?;
        let Ok(response) = inner.call(call).await;
        let (parts, answer) = response.into_parts();
        let collected = answer
            .collect()
            .await
            .map_err(|e| Status::unavailable(format!("the answer failed: {e}")))?;
        let trailers = collected.trailers().cloned();
        if let Some(status) = errors::failure(&parts.headers, trailers.as_ref()) {
            return Err(status);
        }
        let mut messages = BytesMut::from(collected.to_bytes());
        let Some((0, message)) = body::take_framed(&mut messages) else {
            return Err(Status::internal("the answer carries no message"));
        };
        let message = if rpc.remember && codec == Codec::Json {
            memo::json(&message, |answer| {
                body::from_proto(codec, &rpc.answer, answer.clone())
            })?
        } else {
            body::from_proto(codec, &rpc.answer, message)?
        };
        let mut response = Response::new(Either::Right(Body::new(Full::new(message))));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(codec.unary_content_type()),
        );
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static(ACCEPTED_ENCODINGS),
        );
        copy_metadata(&parts.headers, headers, "");
        if let Some(trailers) = &trailers {
            copy_metadata(trailers, headers, "trailer-");
        }
        Ok(response)
    };
    Ok(match answer.await {
        Ok(response) => response,
        Err(status) => error(&status),
    })
}

/// A Connect unary error answer.
fn error<RB>(status: &Status) -> Response<FrontBody<RB>> {
    let (http, json) = errors::unary_answer(status);
    let mut response = Response::new(Either::Right(Body::new(Full::new(json))));
    *response.status_mut() = http;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static(ACCEPTED_ENCODINGS),
    );
    if let Some(after) = errors::retry_after(status) {
        headers.insert(header::RETRY_AFTER, after);
    }
    response
}

/// The gRPC call a Connect request makes: its body read under the RPC's
/// limit (a `streaming` request's is one enveloped message), its message as
/// protobuf, its headers as metadata and its `Connect-Timeout-Ms` as
/// `grpc-timeout`.
pub(super) async fn grpc_call<B>(
    protocols: &Protocols,
    rpc: &Rpc,
    codec: Codec,
    request: Request<B>,
    streaming: bool,
) -> Result<Request<Body>, Status>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Display,
{
    let (parts, incoming) = request.into_parts();
    let (encoding, timeout) = match check_headers(&parts.headers, streaming)
        .and_then(|encoding| connect_timeout(&parts.headers).map(|t| (encoding, t)))
    {
        Ok(checked) => checked,
        Err(status) => {
            body::drain(incoming).await;
            return Err(status);
        }
    };
    let prefix = if streaming { body::PREFIX } else { 0 };
    let bytes = body::read(
        &parts.headers,
        incoming,
        rpc.max_message.saturating_add(prefix),
        protocols.body_timeout,
    )
    .await?;
    let message = if streaming {
        one_envelope(bytes, rpc.max_message, encoding)?
    } else {
        body::decompress(encoding, bytes, rpc.max_message)?
    };
    let message = body::to_grpc_message(codec, &rpc.method.input(), message)?;
    let mut call = Request::new(Body::new(Full::new(message)));
    *call.method_mut() = Method::POST;
    *call.uri_mut() = parts.uri;
    *call.version_mut() = Version::HTTP_2;
    *call.extensions_mut() = parts.extensions;
    let headers = call.headers_mut();
    for (name, value) in &parts.headers {
        if forwarded(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    if let Some(timeout) = timeout {
        headers.insert("grpc-timeout", grpc_timeout(timeout));
    }
    Ok(call)
}

/// The one enveloped message of a server-streaming request, decompressed
/// when its flag says so.
fn one_envelope(bytes: Bytes, max: usize, encoding: Encoding) -> Result<Bytes, Error> {
    let mut buf = BytesMut::from(bytes);
    if buf.len() >= body::PREFIX {
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if len > max {
            return Err(Error::RequestTooLarge { len, max });
        }
    }
    let Some((flags, message)) = body::take_framed(&mut buf) else {
        return Err(Error::MalformedRequest(
            "no whole enveloped request message".to_owned(),
        ));
    };
    if !buf.is_empty() {
        return Err(Error::MalformedRequest(
            "more than one request message on a server-streaming call".to_owned(),
        ));
    }
    match flags {
        0 => Ok(message),
        1 if encoding == Encoding::Gzip => body::decompress(encoding, message, max),
        1 => Err(Error::MalformedRequest(
            "the message is flagged compressed without a Connect-Content-Encoding".to_owned(),
        )),
        _ => Err(Error::MalformedRequest(format!(
            "unexpected envelope flags {flags:#04x} on a request message"
        ))),
    }
}

/// The request's encoding; refuses what authd does not speak: a protocol
/// version but 1, and compression other than gzip (`unimplemented`, as the
/// protocol says).
fn check_headers(headers: &HeaderMap, streaming: bool) -> Result<Encoding, Status> {
    if let Some(version) = headers.get("connect-protocol-version")
        && version != "1"
    {
        return Err(
            Error::MalformedRequest("Connect-Protocol-Version must be 1".to_owned()).into(),
        );
    }
    let name = if streaming {
        "connect-content-encoding"
    } else {
        "content-encoding"
    };
    let mut encoding = Encoding::Identity;
    for value in headers.get_all(name) {
        let value = value.as_bytes();
        if value.eq_ignore_ascii_case(b"gzip") {
            encoding = Encoding::Gzip;
        } else if !value.eq_ignore_ascii_case(b"identity") {
            return Err(Status::unimplemented(format!(
                "{name} {:?} is not supported; authd reads gzip and identity",
                String::from_utf8_lossy(value)
            )));
        }
    }
    Ok(encoding)
}

/// `Connect-Timeout-Ms`: a positive integer of at most 10 digits (a zero
/// deadline could never be met, and is refused as malformed).
fn connect_timeout(headers: &HeaderMap) -> Result<Option<Duration>, Status> {
    let Some(value) = headers.get("connect-timeout-ms") else {
        return Ok(None);
    };
    let digits = value.as_bytes();
    if digits.is_empty()
        || digits.len() > 10
        || !digits.iter().all(u8::is_ascii_digit)
        || digits.iter().all(|d| *d == b'0')
    {
        return Err(Error::MalformedRequest(
            "Connect-Timeout-Ms must be a positive integer of at most 10 digits".to_owned(),
        )
        .into());
    }
    let ms: u64 = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(u64::MAX);
    Ok(Some(Duration::from_millis(ms)))
}

/// A duration as gRPC's `grpc-timeout` (at most 8 digits and a unit).
fn grpc_timeout(timeout: Duration) -> HeaderValue {
    let ms = timeout.as_millis();
    let text = if ms < 100_000_000 {
        format!("{ms}m")
    } else {
        format!("{}S", (timeout.as_secs()).min(99_999_999))
    };
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("99999999S"))
}

/// Whether a Connect request header travels to the gRPC call as metadata:
/// not the protocol's own, nor hop-by-hop ones, nor `grpc-*`.
fn forwarded(name: &HeaderName) -> bool {
    let name = name.as_str();
    !(name.starts_with("connect-")
        || name.starts_with("grpc-")
        || matches!(
            name,
            "host"
                | "connection"
                | "keep-alive"
                | "proxy-connection"
                | "transfer-encoding"
                | "upgrade"
                | "te"
                | "content-type"
                | "content-length"
                | "content-encoding"
                | "accept-encoding"
                | "accept"
        ))
}

/// Copies the gRPC answer's metadata (not its `grpc-*` and transport
/// headers) to a Connect answer, names prefixed with `prefix`.
pub(super) fn copy_metadata(from: &HeaderMap, to: &mut HeaderMap, prefix: &str) {
    for (name, value) in from {
        let n = name.as_str();
        if n.starts_with("grpc-") || matches!(n, "content-type" | "content-length" | "te" | "date")
        {
            continue;
        }
        let Ok(name) = HeaderName::from_bytes(format!("{prefix}{n}").as_bytes()) else {
            continue;
        };
        to.append(name, value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_timeouts_become_grpc_timeouts() {
        let timeout = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("connect-timeout-ms", v.parse().expect("ascii"));
            connect_timeout(&h)
        };
        assert_eq!(
            timeout("250").expect("valid"),
            Some(Duration::from_millis(250))
        );
        assert!(timeout("-1").is_err());
        assert!(timeout("0").is_err());
        assert!(timeout("000").is_err());
        assert!(timeout("12345678901").is_err());
        assert!(timeout("1.5").is_err());
        assert_eq!(grpc_timeout(Duration::from_millis(250)), "250m");
        assert_eq!(
            grpc_timeout(Duration::from_millis(9_999_999_999)),
            "9999999S"
        );
    }

    #[test]
    fn compression_and_other_versions_are_refused() {
        let mut h = HeaderMap::new();
        assert_eq!(check_headers(&h, false).ok(), Some(Encoding::Identity));
        h.insert("content-encoding", "gzip".parse().expect("ascii"));
        assert_eq!(check_headers(&h, false).ok(), Some(Encoding::Gzip));
        h.insert("content-encoding", "br".parse().expect("ascii"));
        assert_eq!(
            check_headers(&h, false).expect_err("br").code(),
            tonic::Code::Unimplemented
        );
        assert_eq!(
            check_headers(&h, true).ok(),
            Some(Encoding::Identity),
            "streams say it elsewhere"
        );
        let mut h = HeaderMap::new();
        h.insert("connect-protocol-version", "2".parse().expect("ascii"));
        assert_eq!(
            check_headers(&h, false).expect_err("v2").code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn one_envelope_only() {
        let id = Encoding::Identity;
        let one = body::framed(0, b"abc");
        assert_eq!(
            one_envelope(one.clone(), 10, id),
            Ok(Bytes::from_static(b"abc"))
        );
        assert!(matches!(
            one_envelope(one.clone(), 2, id),
            Err(Error::RequestTooLarge { len: 3, max: 2 })
        ));
        let mut two = one.to_vec();
        two.extend_from_slice(&one);
        assert!(one_envelope(Bytes::from(two), 10, id).is_err());
        // Flagged compressed without a declared encoding.
        assert!(one_envelope(body::framed(1, b"abc"), 10, id).is_err());
        assert!(one_envelope(one.slice(..6), 10, id).is_err());
    }

    #[test]
    fn protocol_and_hop_by_hop_headers_stay_behind() {
        for kept in [
            "authorization",
            "x-authd-service-token",
            "traceparent",
            "user-agent",
        ] {
            assert!(forwarded(&HeaderName::from_static(kept)), "{kept}");
        }
        for dropped in [
            "connect-timeout-ms",
            "grpc-timeout",
            "host",
            "content-length",
        ] {
            assert!(!forwarded(&HeaderName::from_static(dropped)), "{dropped}");
        }
    }
}
