//! A tonic service protected by authd: a hand-written `grpc.health.v1.Health`
//! whose `Check` needs the `read:status` scope and answers the caller's
//! subject in the `x-subject` response metadata.
//!
//! ```text
//! AUTHD_URL=http://127.0.0.1:50051 LISTEN=127.0.0.1:50052 \
//!   cargo run -p authd-client --features tonic-middleware --example tonic_service
//! grpcurl -plaintext -H "authorization: Bearer $TOKEN" 127.0.0.1:50052 grpc.health.v1.Health/Check
//! ```
//!
//! Prints `LISTENING <address>` once it serves. With `AUTHD_WATCH_TOKEN` (a
//! service token authd lets watch revocations, e.g. holding
//! `revocations:watch`), repeated tokens are answered from the client's
//! revocation-aware cache; without it authd refuses the watch and every
//! request asks authd.

use std::{env, error::Error};

use authd_client::{
    AuthClient, Secret, VerifiedToken,
    middleware::{ScopeRules, grpc::GrpcAuthLayer},
};
use tonic::{Request, Response, Status, codegen::tokio_stream, transport::Server};
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse,
    health_check_response::ServingStatus,
    health_server::{Health, HealthServer},
};

#[derive(Debug)]
struct AlwaysServing;

#[tonic::async_trait]
impl Health for AlwaysServing {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        // The layer put the verified token here; without it the call never
        // reaches this handler.
        let token = request
            .extensions()
            .get::<VerifiedToken>()
            .ok_or_else(|| Status::internal("no verified token"))?;
        let mut response = Response::new(HealthCheckResponse {
            status: ServingStatus::Serving.into(),
        });
        let subject = token
            .subject
            .parse()
            .map_err(|_| Status::internal("subject"))?;
        response.metadata_mut().insert("x-subject", subject);
        Ok(response)
    }

    type WatchStream = tokio_stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("watch is not offered"))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let authd_url = env::var("AUTHD_URL").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let listen = env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:50052".into());

    // The whole protection: a client, the scopes per method, the layer.
    let mut builder = AuthClient::builder().endpoint(authd_url);
    if let Ok(token) = env::var("AUTHD_WATCH_TOKEN") {
        builder = builder.watch_token(Secret::new(token));
    }
    let authd = builder.build()?;
    let rules = ScopeRules::new().require("/grpc.health.v1.Health/Check", ["read:status"]);
    let server = Server::builder()
        .layer(GrpcAuthLayer::new(authd, rules))
        .add_service(HealthServer::new(AlwaysServing));

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("LISTENING {}", listener.local_addr()?);
    server
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await?;
    Ok(())
}
