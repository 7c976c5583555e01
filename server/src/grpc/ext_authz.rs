//! The tonic handler of `envoy.service.auth.v3.Authorization/Check`: converts
//! Envoy's request to [`CheckInput`], asks [`ExtAuthz`], converts the
//! [`Decision`] back. Nothing else.
//!
//! The answer is always a `CheckResponse` (gRPC OK): an allowed request as
//! `ok_response`, a refused one as `denied_response` with an explicit status,
//! and "cannot decide" as `error_response` (503), which Envoy treats as an
//! authorization-server error: `failure_mode_allow` applies, and the client
//! gets this status, headers and body when it is off.

use std::{collections::HashMap, sync::Arc};

use envoy_types::pb::{
    envoy::{
        config::core::v3::{
            HeaderValue, HeaderValueOption, header_value_option::HeaderAppendAction,
        },
        service::auth::v3::{
            CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
            authorization_server::Authorization, check_response::HttpResponse,
        },
        r#type::v3::HttpStatus,
    },
    google::{
        protobuf::{ListValue, Struct, Value, value::Kind},
        rpc,
    },
};
use tonic::{Code, Request, Response, Status};

use crate::ext_authz::{CheckInput, Decision, Denial, ExtAuthz};

/// The `Authorization` implementation.
#[derive(Debug, Clone)]
pub struct ExtAuthzImpl {
    ext_authz: Arc<ExtAuthz>,
}

impl ExtAuthzImpl {
    /// The handler over the Envoy adapter.
    pub fn new(ext_authz: Arc<ExtAuthz>) -> Self {
        ExtAuthzImpl { ext_authz }
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthzImpl {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let request = request.into_inner();
        let empty = HashMap::new();
        let attributes = request.attributes.as_ref();
        let http = attributes
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref());
        let input = CheckInput {
            headers: http.map_or(&empty, |h| &h.headers),
            path: http.map_or("", |h| h.path.as_str()),
            context: attributes.map_or(&empty, |a| &a.context_extensions),
            method: http.map_or("", |h| h.method.as_str()),
            scheme: http.map_or("", |h| h.scheme.as_str()),
            host: http.map_or("", |h| h.host.as_str()),
            certificate: attributes
                .and_then(|a| a.source.as_ref())
                .map_or("", |source| source.certificate.as_str()),
        };
        let decision = self.ext_authz.check(input).await;
        Ok(Response::new(check_response(decision)))
    }
}

fn check_response(decision: Decision) -> CheckResponse {
    match decision {
        Decision::Allow {
            set,
            remove,
            metadata,
        } => CheckResponse {
            status: Some(status(Code::Ok)),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers: set.into_iter().map(header).collect(),
                headers_to_remove: remove,
                ..OkHttpResponse::default()
            })),
            dynamic_metadata: (!metadata.is_empty()).then(|| to_struct(metadata)),
        },
        Decision::Deny(denial) => CheckResponse {
            status: Some(status(match denial.status {
                400 => Code::InvalidArgument,
                403 => Code::PermissionDenied,
                _ => Code::Unauthenticated,
            })),
            http_response: Some(HttpResponse::DeniedResponse(denied(denial))),
            dynamic_metadata: None,
        },
        Decision::Unavailable(denial) => CheckResponse {
            status: Some(status(Code::Unavailable)),
            http_response: Some(HttpResponse::ErrorResponse(denied(denial))),
            dynamic_metadata: None,
        },
    }
}

fn status(code: Code) -> rpc::Status {
    rpc::Status {
        code: code as i32,
        ..rpc::Status::default()
    }
}

fn denied(denial: Denial) -> DeniedHttpResponse {
    DeniedHttpResponse {
        // The numeric value is the HTTP status (envoy.type.v3.StatusCode).
        status: Some(HttpStatus {
            code: i32::from(denial.status),
        }),
        headers: denial.headers.into_iter().map(header).collect(),
        body: denial.body,
    }
}

fn header((key, value): (String, String)) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key,
            value,
            ..HeaderValue::default()
        }),
        // Replaces a header of that name the client sent.
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..HeaderValueOption::default()
    }
}

fn to_struct(map: serde_json::Map<String, serde_json::Value>) -> Struct {
    Struct {
        fields: map.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
    }
}

fn to_value(value: serde_json::Value) -> Value {
    use serde_json::Value as Json;
    let kind = match value {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Json::String(s) => Kind::StringValue(s),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(to_value).collect(),
        }),
        Json::Object(map) => Kind::StructValue(to_struct(map)),
    };
    Value { kind: Some(kind) }
}
