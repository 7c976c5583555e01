//! A gRPC status as a Connect error: the HTTP status from the code (the
//! Connect protocol's table) and the JSON body `{"code", "message",
//! "details"}`, each detail with its base64 `value` and, for
//! `google.rpc.ErrorInfo`, the readable `debug` form, so that a caller with
//! no protobuf at hand reads authd's reason.

use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use prost::Message;
use serde_json::{Map, Value, json};
use tonic::{Code, Status};

const ERROR_INFO: &str = "google.rpc.ErrorInfo";

/// The Connect name of a gRPC code.
pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The HTTP status of a Connect unary error with `code`.
pub(crate) fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
    }
}

/// The failure a gRPC answer carries, `None` when it is OK: its status from
/// the trailers, or from the headers when it is trailers-only; INTERNAL when
/// it carries none. An OK in the trailers (the common case) is read without
/// building a `Status`.
pub(super) fn failure(headers: &HeaderMap, trailers: Option<&HeaderMap>) -> Option<Status> {
    if trailers
        .and_then(|t| t.get("grpc-status"))
        .is_some_and(|status| status.as_bytes() == b"0")
    {
        return None;
    }
    let status = trailers
        .and_then(Status::from_header_map)
        .or_else(|| Status::from_header_map(headers))
        .unwrap_or_else(|| Status::internal("the answer carries no status"));
    (status.code() != Code::Ok).then_some(status)
}

/// The Connect error body of `status`.
pub(super) fn body(status: &Status) -> Value {
    let mut error = Map::new();
    error.insert("code".into(), json!(code_name(status.code())));
    if !status.message().is_empty() {
        error.insert("message".into(), json!(status.message()));
    }
    let details = details(status.details());
    if !details.is_empty() {
        error.insert("details".into(), Value::Array(details));
    }
    Value::Object(error)
}

/// `Retry-After` for an error whose ErrorInfo says when to retry.
pub(super) fn retry_after(status: &Status) -> Option<HeaderValue> {
    let details = tonic_types::pb::Status::decode(status.details()).ok()?;
    details
        .details
        .iter()
        .filter(|any| type_name(&any.type_url) == ERROR_INFO)
        .filter_map(|any| tonic_types::pb::ErrorInfo::decode(any.value.as_slice()).ok())
        .find_map(|info| {
            let seconds = info.metadata.get("retry_after_seconds")?;
            seconds.parse::<u64>().ok()?;
            HeaderValue::from_str(seconds).ok()
        })
}

/// A unary Connect error answer: its HTTP status and JSON body.
pub(super) fn unary_answer(status: &Status) -> (StatusCode, Bytes) {
    (
        http_status(status.code()),
        Bytes::from(body(status).to_string()),
    )
}

fn type_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

/// The details of an encoded `google.rpc.Status`, in Connect's form.
fn details(encoded: &[u8]) -> Vec<Value> {
    let Ok(status) = tonic_types::pb::Status::decode(encoded) else {
        return Vec::new();
    };
    status
        .details
        .iter()
        .map(|any| {
            let name = type_name(&any.type_url);
            let mut detail = Map::new();
            detail.insert("type".into(), json!(name));
            detail.insert("value".into(), json!(STANDARD_NO_PAD.encode(&any.value)));
            if name == ERROR_INFO
                && let Ok(info) = tonic_types::pb::ErrorInfo::decode(any.value.as_slice())
            {
                detail.insert(
                    "debug".into(),
                    json!({
                        "reason": info.reason,
                        "domain": info.domain,
                        "metadata": info.metadata,
                    }),
                );
            }
            Value::Object(detail)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn an_authd_error_reads_as_connect_json_with_its_reason() {
        let status = Status::from(Error::RateLimited {
            retry_after_seconds: 3,
        });
        let (http, bytes) = unary_answer(&status);
        assert_eq!(http, StatusCode::TOO_MANY_REQUESTS);
        let body: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(body["code"], "resource_exhausted");
        let detail = &body["details"][0];
        assert_eq!(detail["type"], "google.rpc.ErrorInfo");
        assert_eq!(detail["debug"]["reason"], "RATE_LIMITED");
        assert_eq!(detail["debug"]["domain"], "authd");
        assert_eq!(detail["debug"]["metadata"]["retry_after_seconds"], "3");
        let value = STANDARD_NO_PAD
            .decode(detail["value"].as_str().expect("string"))
            .expect("base64 without padding");
        let info = tonic_types::pb::ErrorInfo::decode(value.as_slice()).expect("ErrorInfo");
        assert_eq!(info.reason, "RATE_LIMITED");
        assert_eq!(retry_after(&status), Some(HeaderValue::from_static("3")));
    }

    #[test]
    fn codes_map_to_connects_http_statuses() {
        for (code, http) in [
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::InvalidArgument, 400),
            (Code::ResourceExhausted, 429),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::NotFound, 404),
            (Code::Aborted, 409),
            (Code::Unimplemented, 501),
            (Code::Internal, 500),
            (Code::Cancelled, 499),
        ] {
            assert_eq!(http_status(code).as_u16(), http, "{code:?}");
        }
    }
}
