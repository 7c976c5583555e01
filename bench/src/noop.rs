//! The do-nothing `AuthService`: `VerifyToken` answers an empty
//! `VerifyTokenResponse` at once, with `TCP_NODELAY` on every connection:
//! the ceiling any tonic service reaches on this machine with this load
//! generator.

use std::future::Future;

use authd_proto::pb::{
    CreateSessionRequest, CreateSessionResponse, GetProfileRequest, GetProfileResponse,
    PollDeviceLoginRequest, PollDeviceLoginResponse, RefreshSessionRequest, RefreshSessionResponse,
    RevokeSessionRequest, RevokeSessionResponse, StartDeviceLoginRequest, StartDeviceLoginResponse,
    VerifyTokenRequest, VerifyTokenResponse,
    auth_service_server::{AuthService, AuthServiceServer},
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, transport::server::TcpIncoming};

/// Answers `VerifyToken` without looking at the request.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopAuthService;

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented(
        "the do-nothing service only answers VerifyToken",
    ))
}

#[tonic::async_trait]
impl AuthService for NoopAuthService {
    async fn verify_token(
        &self,
        _request: Request<VerifyTokenRequest>,
    ) -> Result<Response<VerifyTokenResponse>, Status> {
        Ok(Response::new(VerifyTokenResponse::default()))
    }

    async fn create_session(
        &self,
        _request: Request<CreateSessionRequest>,
    ) -> Result<Response<CreateSessionResponse>, Status> {
        unimplemented()
    }

    async fn refresh_session(
        &self,
        _request: Request<RefreshSessionRequest>,
    ) -> Result<Response<RefreshSessionResponse>, Status> {
        unimplemented()
    }

    async fn revoke_session(
        &self,
        _request: Request<RevokeSessionRequest>,
    ) -> Result<Response<RevokeSessionResponse>, Status> {
        unimplemented()
    }

    async fn get_profile(
        &self,
        _request: Request<GetProfileRequest>,
    ) -> Result<Response<GetProfileResponse>, Status> {
        unimplemented()
    }

    async fn start_device_login(
        &self,
        _request: Request<StartDeviceLoginRequest>,
    ) -> Result<Response<StartDeviceLoginResponse>, Status> {
        unimplemented()
    }

    async fn poll_device_login(
        &self,
        _request: Request<PollDeviceLoginRequest>,
    ) -> Result<Response<PollDeviceLoginResponse>, Status> {
        unimplemented()
    }

    type WatchRevocationsStream = tonic::codegen::tokio_stream::Empty<
        Result<authd_proto::pb::WatchRevocationsResponse, Status>,
    >;

    async fn watch_revocations(
        &self,
        _request: Request<authd_proto::pb::WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        unimplemented()
    }
}

/// Serves the do-nothing service on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    // `Server::tcp_nodelay` is ignored for an incoming stream of our own:
    // the accepted sockets get `TCP_NODELAY` here, or small answers wait on
    // Nagle's algorithm and delayed ACKs (tens of milliseconds).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(AuthServiceServer::new(NoopAuthService))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
