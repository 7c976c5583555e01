//! One port for every client: the Connect protocol (unary RPCs as JSON or
//! binary protobuf over HTTP/1.1 and HTTP/2, server-streaming
//! `WatchRevocations`) and gRPC-Web beside gRPC.
//!
//! A Connect or gRPC-Web request becomes a gRPC call to the same tonic
//! routes, in-process, through the same stack of the connection as a gRPC
//! call (calls in flight, deadline, message size, metrics, the
//! `[[callers]]` policy): every limit, deadline, metric and caller rule
//! applies as it does to gRPC, and a new RPC of the `.proto` is served in
//! every protocol with no code here. The JSON mapping is proto3's, done by
//! `prost-reflect` from the descriptor set the build already writes;
//! gRPC-Web is `tonic-web`'s.
//!
//! - `unary`: a Connect unary call (`application/json`, `application/proto`).
//! - `stream`: a Connect server-streaming call (`application/connect+json`,
//!   `+proto`).
//! - `body`: request bodies read under their RPC's limit, JSON depth.
//! - `wire_json` / `json_wire`: answers' protobuf bytes written straight as
//!   JSON, and flat JSON requests straight as protobuf (the fast paths;
//!   `prost-reflect`'s mapping is their fallback and their oracle).
//! - `memo`: `VerifyToken` answers remembered as JSON, per worker thread
//!   (a repeated token's answer is written once).
//! - `errors`: gRPC status → Connect error (HTTP status and JSON body, the
//!   ErrorInfo with its readable `debug` form).
//! - [`openapi`]: the OpenAPI 3.1 document of the Connect JSON surface.

mod body;
mod errors;
mod json_wire;
mod memo;
pub mod openapi;
mod stream;
mod unary;
mod wire_json;

use std::{
    collections::HashMap,
    convert::Infallible,
    fmt::Display,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_util::{
    TryFutureExt,
    future::{BoxFuture, Either as EitherFuture, MapOk},
};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body::Body as HttpBody;
use http_body_util::Either;
use prost_reflect::{DescriptorPool, MethodDescriptor};
use tonic::body::Body;
use tower::{Layer, Service};

use crate::config::{LimitsConfig, ServerConfig};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a fast path (`wire_json`, `json_wire`) declines a message; the caller
/// uses `prost-reflect`'s mapping instead.
#[derive(Debug, PartialEq, Eq)]
struct Declined;

/// The largest nesting of objects and arrays a JSON request may have.
pub const MAX_JSON_DEPTH: usize = 32;

/// What the port's protocols share: which are on, the RPCs they serve, and
/// the bounds a request body is read under.
#[derive(Debug)]
pub struct Protocols {
    connect: bool,
    grpc_web: bool,
    methods: HashMap<String, Rpc>,
    body_timeout: Duration,
}

/// One RPC Connect serves: its descriptor, its request's size limit and
/// the plan its answers are written to JSON by.
#[derive(Debug, Clone)]
struct Rpc {
    method: MethodDescriptor,
    max_message: usize,
    answer: Arc<wire_json::Plan>,
    /// Whether its JSON answers are remembered (`memo`): `VerifyToken`'s.
    remember: bool,
}

impl Rpc {
    fn server_streaming(&self) -> bool {
        self.method.is_server_streaming()
    }

    /// Connect serves unary and server-streaming RPCs only.
    fn servable(&self) -> bool {
        !self.method.is_client_streaming()
    }
}

/// The services whose RPCs Connect serves: authd's own, Envoy's Check and
/// gRPC health.
pub fn descriptors() -> Result<DescriptorPool, String> {
    let mut pool = DescriptorPool::decode(authd_proto::FILE_DESCRIPTOR_SET)
        .map_err(|e| format!("the auth.v1 descriptor set: {e}"))?;
    for (name, set) in [
        (
            "Envoy's ext_authz",
            authd_proto::ENVOY_EXT_AUTHZ_DESCRIPTOR_SET,
        ),
        ("gRPC health", tonic_health::pb::FILE_DESCRIPTOR_SET),
    ] {
        pool.decode_file_descriptor_set(set)
            .map_err(|e| format!("the {name} descriptor set: {e}"))?;
    }
    Ok(pool)
}

impl Protocols {
    /// The protocols `[server]` turns on, under `[limits]`.
    pub fn new(server: &ServerConfig, limits: &LimitsConfig) -> Result<Arc<Self>, String> {
        let pool = descriptors()?;
        let mut methods = HashMap::new();
        for service in pool.services() {
            for method in service.methods() {
                let path = format!("/{}/{}", service.full_name(), method.name());
                let verify = path == crate::grpc::VERIFY_TOKEN_PATH;
                let max_message = if verify {
                    limits.max_verify_message_bytes
                } else {
                    limits.max_message_bytes
                };
                methods.insert(
                    path,
                    Rpc {
                        answer: Arc::new(wire_json::Plan::new(&method.output())),
                        method,
                        max_message,
                        remember: verify,
                    },
                );
            }
        }
        Ok(Arc::new(Protocols {
            connect: server.connect,
            grpc_web: server.grpc_web,
            methods,
            body_timeout: limits.request_body_timeout(),
        }))
    }
}

/// What a request speaks, by its `content-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Grpc,
    GrpcWeb,
    ConnectUnary(Codec),
    ConnectStream(Codec),
    Other,
}

/// How Connect messages are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Json,
    Proto,
}

impl Codec {
    fn unary_content_type(self) -> &'static str {
        match self {
            Codec::Json => "application/json",
            Codec::Proto => "application/proto",
        }
    }

    fn stream_content_type(self) -> &'static str {
        match self {
            Codec::Json => "application/connect+json",
            Codec::Proto => "application/connect+proto",
        }
    }
}

fn kind(content_type: Option<&HeaderValue>) -> Kind {
    let Some(value) = content_type else {
        return Kind::Other;
    };
    let bytes = value.as_bytes();
    // The gRPC hot path: one comparison.
    if bytes == b"application/grpc" {
        return Kind::Grpc;
    }
    let Ok(value) = value.to_str() else {
        return Kind::Other;
    };
    let media = value.split(';').next().unwrap_or_default().trim();
    MEDIA_TYPES
        .iter()
        .find(|(name, _)| media.eq_ignore_ascii_case(name))
        .map_or(Kind::Other, |(_, kind)| *kind)
}

/// The media types of the port's protocols (compared ignoring case).
const MEDIA_TYPES: [(&str, Kind); 10] = [
    ("application/json", Kind::ConnectUnary(Codec::Json)),
    ("application/proto", Kind::ConnectUnary(Codec::Proto)),
    ("application/connect+json", Kind::ConnectStream(Codec::Json)),
    (
        "application/connect+proto",
        Kind::ConnectStream(Codec::Proto),
    ),
    // tonic-web speaks these; `+json` and others are not gRPC-Web here.
    ("application/grpc-web", Kind::GrpcWeb),
    ("application/grpc-web+proto", Kind::GrpcWeb),
    ("application/grpc-web-text", Kind::GrpcWeb),
    ("application/grpc-web-text+proto", Kind::GrpcWeb),
    ("application/grpc", Kind::Grpc),
    ("application/grpc+proto", Kind::Grpc),
];

/// The service in front of one connection's gRPC stack `S`: gRPC goes
/// straight through, Connect and gRPC-Web are turned into gRPC calls to
/// `S`, and other requests (back-channel logout, account events) go to `H`.
#[derive(Clone)]
pub(crate) struct Front<S, H> {
    rpc: S,
    http: H,
    protocols: Arc<Protocols>,
}

impl<S, H> Front<S, H> {
    pub(crate) fn new(rpc: S, http: H, protocols: Arc<Protocols>) -> Self {
        Front {
            rpc,
            http,
            protocols,
        }
    }
}

/// An answer of the port: gRPC's own body, or any other.
pub(crate) type FrontBody<RB> = Either<RB, Body>;

type Passed<F, RB> = MapOk<F, fn(Response<RB>) -> Response<FrontBody<RB>>>;

fn passed<RB>(response: Response<RB>) -> Response<FrontBody<RB>> {
    response.map(Either::Left)
}

impl<S, H, B, RB, HB> Service<Request<B>> for Front<S, H>
where
    S: Service<Request<B>, Response = Response<RB>, Error = Infallible>
        + Service<Request<Body>, Response = Response<RB>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    <S as Service<Request<B>>>::Future: Send + 'static,
    <S as Service<Request<Body>>>::Future: Send + 'static,
    H: Service<Request<B>, Response = Response<HB>, Error = Infallible> + Clone + Send + 'static,
    H::Future: Send + 'static,
    RB: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    RB::Error: Into<BoxError> + Display,
    HB: HttpBody<Data = Bytes> + Send + 'static,
    HB::Error: Into<BoxError>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Display,
{
    type Response = Response<FrontBody<RB>>;
    type Error = Infallible;
    type Future = EitherFuture<
        Passed<<S as Service<Request<B>>>::Future, RB>,
        BoxFuture<'static, Result<Response<FrontBody<RB>>, Infallible>>,
    >;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The connection's gRPC stack and the HTTP routes are always ready
        // (the bound on calls is a semaphore inside).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let kind = kind(request.headers().get(header::CONTENT_TYPE));
        if kind == Kind::Grpc && request.version() == Version::HTTP_2 {
            let future = Service::<Request<B>>::call(&mut self.rpc, request);
            return EitherFuture::Left(future.map_ok(passed as fn(_) -> _));
        }
        let protocols = Arc::clone(&self.protocols);
        let rpc = self.protocols.methods.get(request.uri().path()).cloned();
        let refusal = match (kind, &rpc) {
            (Kind::Grpc, _) => Some(refused(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "gRPC needs HTTP/2; over HTTP/1.1 use Connect or gRPC-Web",
            )),
            (Kind::GrpcWeb, _) if !protocols.grpc_web => Some(refused(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "gRPC-Web is off ([server] grpc_web = false)",
            )),
            (Kind::GrpcWeb, _) | (_, None) => None,
            (_, Some(_)) if request.method() != Method::POST => Some(not_allowed()),
            (_, Some(rpc)) if !rpc.servable() => Some(refused(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a client- or bidirectional-streaming RPC is served over gRPC only",
            )),
            (Kind::ConnectUnary(_) | Kind::ConnectStream(_), Some(_)) if !protocols.connect => {
                Some(refused(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "the Connect protocol is off ([server] connect = false)",
                ))
            }
            (Kind::ConnectUnary(_), Some(rpc)) if !rpc.server_streaming() => None,
            (Kind::ConnectStream(_), Some(rpc)) if rpc.server_streaming() => None,
            (_, Some(rpc)) => Some(unsupported(rpc)),
        };
        let boxed: BoxFuture<'static, Result<Response<FrontBody<RB>>, Infallible>> =
            match (refusal, kind, rpc) {
                // What the client still sends is read (bounded) first, so
                // that an HTTP/2 client sees the answer, not a reset stream.
                (Some(refusal), _, _) => Box::pin(async move {
                    body::drain(request.into_body()).await;
                    Ok(refusal)
                }),
                (None, Kind::GrpcWeb, _) => {
                    let mut web = tonic_web::GrpcWebLayer::new().layer(self.rpc.clone());
                    let future = Service::<Request<B>>::call(&mut web, request);
                    Box::pin(async move {
                        let Ok(response) = future.await;
                        Ok(response.map(Either::Right))
                    })
                }
                (None, Kind::ConnectUnary(codec), Some(rpc)) => Box::pin(unary::serve(
                    protocols,
                    self.rpc.clone(),
                    rpc,
                    codec,
                    request,
                )),
                (None, Kind::ConnectStream(codec), Some(rpc)) => Box::pin(stream::serve(
                    protocols,
                    self.rpc.clone(),
                    rpc,
                    codec,
                    request,
                )),
                // Not an RPC: the plain HTTP endpoints.
                (None, _, _) => {
                    let future = self.http.clone().call(request);
                    Box::pin(async move {
                        let Ok(response) = future.await;
                        Ok(response.map(|b| Either::Right(Body::new(b))))
                    })
                }
            };
        EitherFuture::Right(boxed)
    }
}

/// A plain-text refusal of the request's protocol.
fn refused<RB>(status: StatusCode, why: &'static str) -> Response<FrontBody<RB>> {
    let mut response = Response::new(Either::Right(Body::new(http_body_util::Full::new(
        Bytes::from_static(why.as_bytes()),
    ))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// 415 for a content type the RPC is not served in, with the ones it is.
fn unsupported<RB>(rpc: &Rpc) -> Response<FrontBody<RB>> {
    let mut response = refused(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        if rpc.server_streaming() {
            "a server-streaming RPC takes application/connect+json or application/connect+proto \
             (Connect), application/grpc-web (gRPC-Web) or application/grpc (gRPC over HTTP/2)"
        } else {
            "a unary RPC takes application/json or application/proto (Connect), \
             application/grpc-web (gRPC-Web) or application/grpc (gRPC over HTTP/2)"
        },
    );
    let accepted = if rpc.server_streaming() {
        "application/connect+json, application/connect+proto, application/grpc-web, application/grpc"
    } else {
        "application/json, application/proto, application/grpc-web, application/grpc"
    };
    response
        .headers_mut()
        .insert("accept-post", HeaderValue::from_static(accepted));
    response
}

/// 405 for anything but POST on an RPC's path: no Connect GET, because a
/// token must never travel in a URL.
fn not_allowed<RB>() -> Response<FrontBody<RB>> {
    let mut response = refused(
        StatusCode::METHOD_NOT_ALLOWED,
        "RPCs are POST only: authd serves no Connect GET, so that a token never travels in a URL",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_tell_the_protocol() {
        let k = |v: &str| kind(Some(&HeaderValue::from_str(v).expect("ascii")));
        assert_eq!(k("application/grpc"), Kind::Grpc);
        assert_eq!(k("application/grpc+proto"), Kind::Grpc);
        assert_eq!(k("application/grpc-web"), Kind::GrpcWeb);
        assert_eq!(k("application/grpc-web-text+proto"), Kind::GrpcWeb);
        assert_eq!(k("application/json"), Kind::ConnectUnary(Codec::Json));
        assert_eq!(
            k("Application/JSON; charset=utf-8"),
            Kind::ConnectUnary(Codec::Json)
        );
        assert_eq!(k("application/proto"), Kind::ConnectUnary(Codec::Proto));
        assert_eq!(
            k("application/connect+json"),
            Kind::ConnectStream(Codec::Json)
        );
        assert_eq!(
            k("application/connect+proto"),
            Kind::ConnectStream(Codec::Proto)
        );
        assert_eq!(k("application/grpc-web+json"), Kind::Other);
        assert_eq!(k("application/grpc+json"), Kind::Other);
        assert_eq!(k("application/x-www-form-urlencoded"), Kind::Other);
        assert_eq!(kind(None), Kind::Other);
    }

    #[test]
    fn every_rpc_of_the_port_is_known_with_its_limit() {
        let limits = LimitsConfig::default();
        let protocols = Protocols::new(&ServerConfig::default(), &limits).expect("descriptors");
        let verify = &protocols.methods["/auth.v1.AuthService/VerifyToken"];
        assert_eq!(verify.max_message, limits.max_verify_message_bytes);
        assert!(!verify.server_streaming());
        let watch = &protocols.methods["/auth.v1.AuthService/WatchRevocations"];
        assert!(watch.server_streaming() && watch.servable());
        assert!(
            protocols
                .methods
                .contains_key("/envoy.service.auth.v3.Authorization/Check")
        );
        assert!(
            protocols
                .methods
                .contains_key("/grpc.health.v1.Health/Check")
        );
    }
}
