//! A Connect server-streaming call (`WatchRevocations`): one enveloped
//! request message in, the gRPC call's messages relayed out as they come,
//! each in a Connect envelope, then the end-of-stream envelope carrying the
//! status (as a Connect error) and the trailers. The HTTP status is 200 once
//! the call is made; every error after that travels in the last envelope.

use std::{convert::Infallible, fmt::Display, sync::Arc};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Request, Response, header};
use http_body::{Body as HttpBody, Frame};
use http_body_util::{BodyExt, Either, StreamBody};
use serde_json::{Map, Value, json};
use tonic::{Code, Status, body::Body};
use tower::Service;

use super::{BoxError, Codec, FrontBody, Protocols, Rpc, body, errors, unary, wire_json::Plan};

/// The flag of the last envelope of a stream.
const END_STREAM: u8 = 0x02;

/// Serves one Connect server-streaming call of `rpc`.
pub(super) async fn serve<S, B, RB>(
    protocols: Arc<Protocols>,
    mut inner: S,
    rpc: Rpc,
    codec: Codec,
    request: Request<B>,
) -> Result<Response<FrontBody<RB>>, Infallible>
where
    S: Service<Request<Body>, Response = Response<RB>, Error = Infallible>,
    RB: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    RB::Error: Display,
    B: HttpBody<Data = Bytes>,
    B::Error: Display + Into<BoxError>,
{
    let output = Arc::clone(&rpc.answer);
    let called = match unary::grpc_call(&protocols, &rpc, codec, request, true).await {
        Ok(call) => Ok(inner.call(call).await),
        Err(status) => Err(status),
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(codec.stream_content_type()),
    );
    headers.insert(
        "connect-accept-encoding",
        HeaderValue::from_static(super::body::ACCEPTED_ENCODINGS),
    );
    let body = match called {
        Err(status) => Body::new(http_body_util::Full::new(end_stream(Some(&status), None))),
        Ok(Ok(response)) => {
            let (parts, answer) = response.into_parts();
            unary::copy_metadata(&parts.headers, &mut headers, "");
            match Status::from_header_map(&parts.headers) {
                // Trailers-only: the call ended before its first message.
                Some(status) => Body::new(http_body_util::Full::new(end_stream(
                    Some(&status).filter(|s| s.code() != Code::Ok),
                    Some(&parts.headers),
                ))),
                None => relay(answer, codec, output),
            }
        }
    };
    let mut response = Response::new(Either::Right(body));
    *response.headers_mut() = headers;
    Ok(response)
}

/// The gRPC answer's messages as Connect envelopes, then the end of stream.
fn relay<RB>(answer: RB, codec: Codec, output: Arc<Plan>) -> Body
where
    RB: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    RB::Error: Display,
{
    struct Relay<RB> {
        answer: RB,
        buf: BytesMut,
        codec: Codec,
        output: Arc<Plan>,
        done: bool,
    }
    let relay = Relay {
        answer,
        buf: BytesMut::new(),
        codec,
        output,
        done: false,
    };
    let envelopes = futures_util::stream::unfold(relay, |mut r| async move {
        if r.done {
            return None;
        }
        loop {
            if let Some((flags, message)) = body::take_framed(&mut r.buf) {
                let converted = if flags == 0 {
                    body::from_proto(r.codec, &r.output, message).map_err(Status::from)
                } else {
                    Err(Status::internal("a compressed answer message"))
                };
                return Some(match converted {
                    Ok(message) => (body::framed(0, &message), r),
                    Err(status) => {
                        r.done = true;
                        (end_stream(Some(&status), None), r)
                    }
                });
            }
            let last = match r.answer.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        r.buf.extend_from_slice(&data);
                        continue;
                    }
                    Err(frame) => match frame.into_trailers() {
                        Ok(trailers) => {
                            let status = Status::from_header_map(&trailers).unwrap_or_else(|| {
                                Status::internal("the stream ended without a status")
                            });
                            end_stream(
                                Some(&status).filter(|s| s.code() != Code::Ok),
                                Some(&trailers),
                            )
                        }
                        Err(_) => continue,
                    },
                },
                Some(Err(error)) => end_stream(
                    Some(&Status::unavailable(format!("the stream failed: {error}"))),
                    None,
                ),
                None => end_stream(
                    Some(&Status::internal("the stream ended without a status")),
                    None,
                ),
            };
            r.done = true;
            return Some((last, r));
        }
    });
    Body::new(StreamBody::new(
        envelopes.map(|bytes| Ok::<_, Infallible>(Frame::data(bytes))),
    ))
}

/// The end-of-stream envelope: `{"error": …, "metadata": {…}}`.
fn end_stream(status: Option<&Status>, trailers: Option<&HeaderMap>) -> Bytes {
    let mut end = Map::new();
    if let Some(status) = status {
        end.insert("error".into(), errors::body(status));
    }
    let mut metadata = Map::new();
    for (name, value) in trailers.into_iter().flatten() {
        let n = name.as_str();
        if n.starts_with("grpc-") || matches!(n, "content-type" | "content-length" | "te") {
            continue;
        }
        let Ok(value) = value.to_str() else {
            continue;
        };
        match metadata.get_mut(n) {
            Some(Value::Array(values)) => values.push(json!(value)),
            _ => {
                metadata.insert(n.to_owned(), json!([value]));
            }
        }
    }
    if !metadata.is_empty() {
        end.insert("metadata".into(), Value::Object(metadata));
    }
    body::framed(END_STREAM, Value::Object(end).to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_envelope_carries_the_error_and_the_trailers() {
        let status = Status::from(crate::error::Error::WatcherTooSlow { buffer: 8 });
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "8".parse().expect("ascii"));
        trailers.insert("x-cursor", "42".parse().expect("ascii"));
        let mut envelope = BytesMut::from(end_stream(Some(&status), Some(&trailers)));
        let (flags, json) = body::take_framed(&mut envelope).expect("whole");
        assert_eq!(flags, END_STREAM);
        let end: Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(end["error"]["code"], "resource_exhausted");
        assert_eq!(
            end["error"]["details"][0]["debug"]["reason"],
            "WATCHER_TOO_SLOW"
        );
        assert_eq!(end["metadata"], json!({"x-cursor": ["42"]}));
        let (_, ok) =
            body::take_framed(&mut BytesMut::from(end_stream(None, None))).expect("whole");
        assert_eq!(&ok[..], b"{}");
    }
}
