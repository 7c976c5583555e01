//! The layers without authd: they fail closed when authd cannot be reached,
//! refuse a request with no token before asking authd, let public paths
//! through, and the axum extractor refuses a request no layer verified.

use std::convert::Infallible;

use authd_client::{
    AuthClient, RetryPolicy, VerifiedToken,
    middleware::{ScopeRules, grpc::GrpcAuthLayer, http::HttpAuthLayer},
};
use axum::{Router, body::Body, routing::get};
use http::{Request, Response, StatusCode};
use tower::{Layer, ServiceExt, service_fn};

/// A client of a loopback port nobody listens on.
fn unreachable_authd() -> anyhow::Result<AuthClient> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    Ok(AuthClient::builder()
        .endpoint(format!("http://127.0.0.1:{port}"))
        .retry(RetryPolicy::none())
        .build()?)
}

fn request(path: &str, token: Option<&str>) -> Request<()> {
    let mut builder = Request::builder().uri(path);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(()).expect("request")
}

async fn ok(_: Request<()>) -> Result<Response<String>, Infallible> {
    Ok(Response::new("reached".to_owned()))
}

#[tokio::test]
async fn http_layer_fails_closed_when_authd_is_unreachable() -> anyhow::Result<()> {
    let service = HttpAuthLayer::new(unreachable_authd()?, ScopeRules::new()).layer(service_fn(ok));
    let response = service.oneshot(request("/orders", Some("eyJ.x.y"))).await?;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.body().is_empty(), "the service was not reached");
    Ok(())
}

#[tokio::test]
async fn grpc_layer_fails_closed_when_authd_is_unreachable() -> anyhow::Result<()> {
    let inner = service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(tonic::body::Body::default()))
    });
    let service = GrpcAuthLayer::new(unreachable_authd()?, ScopeRules::new()).layer(inner);
    let response = service
        .oneshot(request("/shop.v1.Orders/List", Some("eyJ.x.y")))
        .await?;
    let status = tonic::Status::from_header_map(response.headers()).expect("a gRPC status");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    Ok(())
}

#[tokio::test]
async fn missing_token_is_refused_and_public_paths_pass_without_authd() -> anyhow::Result<()> {
    let rules = ScopeRules::new().public("/healthz");
    let service = HttpAuthLayer::new(unreachable_authd()?, rules).layer(service_fn(ok));
    let response = service.clone().oneshot(request("/orders", None)).await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let response = service.oneshot(request("/healthz", None)).await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), "reached");
    Ok(())
}

#[tokio::test]
async fn extractor_refuses_a_request_no_layer_verified() -> anyhow::Result<()> {
    let app = Router::new().route(
        "/me",
        get(|token: VerifiedToken| async move { token.subject }),
    );
    let response = app
        .oneshot(Request::builder().uri("/me").body(Body::empty())?)
        .await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    Ok(())
}
