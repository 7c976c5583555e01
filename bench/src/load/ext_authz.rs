//! Envoy's `envoy.service.auth.v3.Authorization/Check` as Envoy sends it: a
//! GET with `authorization: Bearer <token>` and the route's
//! `context_extensions`, over the same hyper HTTP/2 connections as
//! `VerifyToken` ([`super::grpc::H2Connection`]).

use std::{collections::HashMap, sync::Arc};

use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, attribute_context, authorization_client::AuthorizationClient,
    check_response::HttpResponse,
};
use http::Uri;

use super::{CallError, Caller, grpc::H2Connection};

/// A worker calling `Check` with pre-built requests; anything but an
/// `ok_response` is an error.
#[derive(Debug)]
pub struct CheckCaller {
    client: AuthorizationClient<H2Connection>,
    requests: Arc<[CheckRequest]>,
}

impl CheckCaller {
    /// A caller on `connection` (shared with other workers) for `origin`.
    pub fn new(connection: H2Connection, origin: Uri, requests: Arc<[CheckRequest]>) -> Self {
        CheckCaller {
            client: AuthorizationClient::with_origin(connection, origin),
            requests,
        }
    }
}

impl Caller for CheckCaller {
    async fn call(&mut self, index: usize) -> Result<(), CallError> {
        let request = self.requests[index].clone();
        match self.client.check(request).await {
            Ok(response) => match response.into_inner().http_response {
                Some(HttpResponse::OkResponse(_)) => Ok(()),
                other => Err(CallError {
                    kind: match other {
                        Some(HttpResponse::DeniedResponse(d))
                        | Some(HttpResponse::ErrorResponse(d)) => {
                            format!("HTTP {}", d.status.map(|s| s.code).unwrap_or_default())
                        }
                        _ => "no http_response".to_owned(),
                    },
                    detail: String::new(),
                }),
            },
            Err(status) => Err(CallError {
                kind: format!("{:?}", status.code()),
                detail: status.message().to_owned(),
            }),
        }
    }
}

/// One request per token, shaped as Envoy sends it (a few usual headers),
/// the required scopes as the route's `context_extensions`.
pub fn requests(tokens: &[String], required_scopes: &[String]) -> Arc<[CheckRequest]> {
    let mut context = HashMap::new();
    if !required_scopes.is_empty() {
        context.insert("required_scopes".to_owned(), required_scopes.join(" "));
    }
    tokens
        .iter()
        .map(|token| {
            let headers = HashMap::from([
                (":authority".to_owned(), "api.authd.bench".to_owned()),
                (":method".to_owned(), "GET".to_owned()),
                (":path".to_owned(), "/orders/42".to_owned()),
                ("accept".to_owned(), "application/json".to_owned()),
                ("user-agent".to_owned(), "loadgen".to_owned()),
                (
                    "x-request-id".to_owned(),
                    "6f1c1d1e-0000-4000-8000-000000000000".to_owned(),
                ),
                ("authorization".to_owned(), format!("Bearer {token}")),
            ]);
            CheckRequest {
                attributes: Some(AttributeContext {
                    request: Some(attribute_context::Request {
                        time: None,
                        http: Some(attribute_context::HttpRequest {
                            method: "GET".to_owned(),
                            path: "/orders/42".to_owned(),
                            host: "api.authd.bench".to_owned(),
                            protocol: "HTTP/2".to_owned(),
                            headers,
                            ..Default::default()
                        }),
                    }),
                    context_extensions: context.clone(),
                    ..Default::default()
                }),
            }
        })
        .collect()
}
