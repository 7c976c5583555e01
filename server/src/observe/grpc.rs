//! One tower layer around every gRPC service of the port: the
//! go-grpc-prometheus set (`grpc_server_started_total`,
//! `grpc_server_handled_total`, `grpc_server_handling_seconds`) and, when
//! tracing is on, the call's span joined to the caller's W3C `traceparent`.
//!
//! Method labels come from the descriptor sets the port serves, so they stay
//! bounded: any other path is counted under `grpc_service="unknown"`,
//! `grpc_method="unknown"`.

use std::{
    collections::HashMap,
    convert::Infallible,
    pin::Pin,
    sync::{LazyLock, OnceLock},
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use metrics::{Counter, Histogram};
use prost::Message;
use tower::Service;
use tracing::Instrument;

/// The descriptor sets of every service the port may serve; a service not
/// listed here is counted as `unknown`.
const DESCRIPTOR_SETS: &[&[u8]] = &[
    authd_proto::FILE_DESCRIPTOR_SET,
    authd_proto::ENVOY_EXT_AUTHZ_DESCRIPTOR_SET,
    tonic_health::pb::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
];

/// gRPC code names as go-grpc-prometheus writes them, by code number.
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const CANCELED: usize = 1;
const UNKNOWN: usize = 2;

/// The series of one method, registered on its first call.
#[derive(Debug)]
struct MethodMetrics {
    service: &'static str,
    method: &'static str,
    kind: &'static str,
    started: Counter,
    seconds: Histogram,
    handled: [OnceLock<Counter>; 17],
}

impl MethodMetrics {
    fn new(service: &'static str, method: &'static str, kind: &'static str) -> Self {
        let labels = [
            ("grpc_service", service),
            ("grpc_method", method),
            ("grpc_type", kind),
        ];
        MethodMetrics {
            service,
            method,
            kind,
            started: metrics::counter!("grpc_server_started_total", &labels),
            seconds: metrics::histogram!("grpc_server_handling_seconds", &labels),
            handled: Default::default(),
        }
    }

    fn handled(&self, code: usize, started: Instant) {
        let code = code.min(CODES.len() - 1);
        self.handled[code]
            .get_or_init(|| {
                metrics::counter!(
                    "grpc_server_handled_total",
                    "grpc_service" => self.service,
                    "grpc_method" => self.method,
                    "grpc_type" => self.kind,
                    "grpc_code" => CODES[code],
                )
            })
            .increment(1);
        self.seconds.record(started.elapsed().as_secs_f64());
    }
}

/// Every known method by path, and the one entry for the rest.
struct Methods {
    known: HashMap<String, MethodMetrics>,
    unknown: MethodMetrics,
}

static METHODS: LazyLock<Methods> = LazyLock::new(|| {
    let mut known = HashMap::new();
    for set in DESCRIPTOR_SETS {
        let Ok(set) = prost_types::FileDescriptorSet::decode(*set) else {
            continue;
        };
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let full: &'static str = if package.is_empty() {
                    leak(service.name().to_owned())
                } else {
                    leak(format!("{package}.{}", service.name()))
                };
                for method in &service.method {
                    let kind = match (method.client_streaming(), method.server_streaming()) {
                        (false, false) => "unary",
                        (false, true) => "server_stream",
                        (true, false) => "client_stream",
                        (true, true) => "bidi_stream",
                    };
                    let name: &'static str = leak(method.name().to_owned());
                    known.insert(
                        format!("/{full}/{name}"),
                        MethodMetrics::new(full, name, kind),
                    );
                }
            }
        }
    }
    Methods {
        known,
        unknown: MethodMetrics::new("unknown", "unknown", "unknown"),
    }
});

/// Label values live as long as the process; made once per known method.
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

fn method(path: &str) -> &'static MethodMetrics {
    let methods = &*METHODS;
    methods.known.get(path).unwrap_or(&methods.unknown)
}

/// The service one connection's calls go through first.
#[derive(Debug, Clone)]
pub(crate) struct GrpcMetrics<S> {
    inner: S,
}

impl<S> GrpcMetrics<S> {
    pub(crate) fn new(inner: S) -> Self {
        GrpcMetrics { inner }
    }
}

impl<S, B, RB> Service<Request<B>> for GrpcMetrics<S>
where
    S: Service<Request<B>, Response = Response<RB>, Error = Infallible>,
    S::Future: Send + 'static,
    RB: HttpBody<Data = Bytes>,
{
    type Response = Response<Metered<RB>>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Metered<RB>>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let started = Instant::now();
        let metrics = method(request.uri().path());
        metrics.started.increment(1);
        let span = crate::telemetry::call_span(request.headers(), metrics.service, metrics.method);
        let future = self.inner.call(request);
        let answer = async move {
            let Ok(response) = future.await;
            Ok(response.map_with_headers(metrics, started))
        };
        match span {
            Some(span) => Box::pin(answer.instrument(span)),
            None => Box::pin(answer),
        }
    }
}

trait MapWithHeaders<RB> {
    fn map_with_headers(
        self,
        metrics: &'static MethodMetrics,
        started: Instant,
    ) -> Response<Metered<RB>>;
}

impl<RB> MapWithHeaders<RB> for Response<RB> {
    fn map_with_headers(
        self,
        metrics: &'static MethodMetrics,
        started: Instant,
    ) -> Response<Metered<RB>> {
        // A trailers-only answer (every error) carries its status here.
        let pending = match code_of(self.headers()) {
            Some(code) => {
                metrics.handled(code, started);
                None
            }
            None => Some((metrics, started)),
        };
        self.map(|inner| Metered { inner, pending })
    }
}

fn code_of(headers: &HeaderMap) -> Option<usize> {
    let value = headers.get("grpc-status")?;
    Some(
        std::str::from_utf8(value.as_bytes())
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(UNKNOWN),
    )
}

/// An answer's body that counts the call when its trailers go out, or as
/// `Canceled` when it is dropped before.
#[derive(Debug)]
pub(crate) struct Metered<B> {
    inner: B,
    pending: Option<(&'static MethodMetrics, Instant)>,
}

impl<B> Metered<B> {
    fn finish(&mut self, code: usize) {
        if let Some((metrics, started)) = self.pending.take() {
            metrics.handled(code, started);
        }
    }
}

impl<B> Drop for Metered<B> {
    fn drop(&mut self) {
        self.finish(CANCELED);
    }
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for Metered<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = code_of(trailers).unwrap_or(UNKNOWN);
                    self.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(UNKNOWN),
            Poll::Ready(None) => self.finish(UNKNOWN),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_method_is_known_and_other_paths_share_one_entry() {
        let verify = method("/auth.v1.AuthService/VerifyToken");
        assert_eq!(
            (verify.service, verify.method, verify.kind),
            ("auth.v1.AuthService", "VerifyToken", "unary")
        );
        let check = method("/grpc.health.v1.Health/Check");
        assert_eq!(check.service, "grpc.health.v1.Health");
        let envoy = method("/envoy.service.auth.v3.Authorization/Check");
        assert_eq!(
            (envoy.service, envoy.method),
            ("envoy.service.auth.v3.Authorization", "Check")
        );
        let reflect = method("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo");
        assert_eq!(reflect.kind, "bidi_stream");
        let a = method("/junk.Service/Nope");
        let b = method("/auth.v1.AuthService/Nope");
        assert!(std::ptr::eq(a, b));
        assert_eq!((a.service, a.method), ("unknown", "unknown"));
    }

    #[test]
    fn status_codes_are_read_from_grpc_status() {
        let mut headers = HeaderMap::new();
        assert_eq!(code_of(&headers), None);
        headers.insert("grpc-status", "16".parse().expect("header"));
        assert_eq!(CODES[code_of(&headers).expect("code")], "Unauthenticated");
        headers.insert("grpc-status", "x".parse().expect("header"));
        assert_eq!(code_of(&headers), Some(UNKNOWN));
    }
}
