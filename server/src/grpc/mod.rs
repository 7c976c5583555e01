//! The tonic handlers of `auth.v1.AuthService`: each converts the request to
//! domain types, calls the domain, and converts the answer back. Nothing else.

mod convert;
mod ext_authz;
pub mod status;

pub use ext_authz::ExtAuthzImpl;

use std::{pin::Pin, sync::Arc};

use authd_proto::pb::{self, auth_service_server::AuthService};
use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::{
    profile::Profiles,
    revocation::{Cursor, Watchers},
    secrets::Secret,
    session::Sessions,
    verify::Verifier,
};

/// The path of VerifyToken, whose request gets the smaller size limit
/// (`limits.max_verify_message_bytes`).
pub const VERIFY_TOKEN_PATH: &str = "/auth.v1.AuthService/VerifyToken";

/// The messages of one WatchRevocations stream.
type RevocationStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchRevocationsResponse, Status>> + Send>>;

/// The `AuthService` implementation.
#[derive(Debug, Clone)]
pub struct AuthServiceImpl {
    verifier: Arc<Verifier>,
    profiles: Arc<Profiles>,
    sessions: Arc<Sessions>,
    watchers: Arc<Watchers>,
}

impl AuthServiceImpl {
    /// Handlers over the domain services.
    pub fn new(
        verifier: Arc<Verifier>,
        profiles: Arc<Profiles>,
        sessions: Arc<Sessions>,
        watchers: Arc<Watchers>,
    ) -> Self {
        AuthServiceImpl {
            verifier,
            profiles,
            sessions,
            watchers,
        }
    }
}

#[tonic::async_trait]
impl AuthService for AuthServiceImpl {
    async fn verify_token(
        &self,
        request: Request<pb::VerifyTokenRequest>,
    ) -> Result<Response<pb::VerifyTokenResponse>, Status> {
        let request = convert::verify_request(request.into_inner());
        let verified = self.verifier.verify(&request).await?;
        Ok(Response::new(convert::verified_token(&verified)))
    }

    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let request = request.into_inner();
        let grant = convert::grant(request.grant).ok_or_else(|| convert::missing("grant"))?;
        let session = self.sessions.create(&request.issuer, grant).await?;
        Ok(Response::new(pb::CreateSessionResponse {
            session: Some(convert::new_session(session)),
        }))
    }

    async fn refresh_session(
        &self,
        request: Request<pb::RefreshSessionRequest>,
    ) -> Result<Response<pb::RefreshSessionResponse>, Status> {
        use pb::refresh_session_request::Credential;
        let request = request.into_inner();
        let refreshed = match request.credential {
            Some(Credential::SessionHandle(handle)) => {
                self.sessions.refresh_session(&handle).await?
            }
            Some(Credential::RefreshToken(token)) => {
                self.sessions
                    .refresh_token(&request.issuer, Secret::new(token))
                    .await?
            }
            None => return Err(convert::missing("credential").into()),
        };
        Ok(Response::new(convert::refreshed(refreshed)))
    }

    async fn revoke_session(
        &self,
        request: Request<pb::RevokeSessionRequest>,
    ) -> Result<Response<pb::RevokeSessionResponse>, Status> {
        use pb::revoke_session_request::Target;
        let revoked_sessions = match &request.get_ref().target {
            Some(Target::SessionHandle(handle)) => self.sessions.revoke_handle(handle).await?,
            Some(Target::UserId(user_id)) => self.sessions.revoke_user(user_id).await?,
            None => return Err(convert::missing("target").into()),
        };
        Ok(Response::new(pb::RevokeSessionResponse {
            revoked_sessions,
        }))
    }

    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::GetProfileResponse>, Status> {
        use pb::get_profile_request::Subject;
        let profile = match &request.get_ref().subject {
            Some(Subject::AccessToken(token)) => self.profiles.own(token).await?,
            Some(Subject::UserId(user_id)) => self.profiles.by_id(user_id).await?,
            None => return Err(convert::missing("subject").into()),
        };
        Ok(Response::new(pb::GetProfileResponse {
            profile: Some(convert::profile(profile)),
        }))
    }

    async fn start_device_login(
        &self,
        request: Request<pb::StartDeviceLoginRequest>,
    ) -> Result<Response<pb::StartDeviceLoginResponse>, Status> {
        let request = request.into_inner();
        let started = self
            .sessions
            .start_device_login(&request.issuer, &request.scopes, &request.audience)
            .await?;
        Ok(Response::new(convert::device_started(started)))
    }

    async fn poll_device_login(
        &self,
        request: Request<pb::PollDeviceLoginRequest>,
    ) -> Result<Response<pb::PollDeviceLoginResponse>, Status> {
        let request = request.into_inner();
        let state = self
            .sessions
            .poll_device_login(
                &request.issuer,
                &request.device_code,
                u64::from(request.interval),
            )
            .await?;
        Ok(Response::new(convert::device_state(state)))
    }

    type WatchRevocationsStream = RevocationStream;

    async fn watch_revocations(
        &self,
        request: Request<pb::WatchRevocationsRequest>,
    ) -> Result<Response<RevocationStream>, Status> {
        let cursor = request.into_inner().cursor;
        let cursor = (!cursor.is_empty())
            .then(|| cursor.parse::<Cursor>())
            .transpose()?;
        let watch = self.watchers.watch(cursor)?;
        let messages = watch.map(|item| item.map(convert::watched).map_err(Status::from));
        Ok(Response::new(Box::pin(messages)))
    }
}
