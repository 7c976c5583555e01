//! The tonic handlers of `auth.v1.AuthService`: each converts the request to
//! domain types, calls the domain, and converts the answer back. Nothing else.

mod convert;
pub mod status;

use std::sync::Arc;

use authd_proto::pb::{self, auth_service_server::AuthService};
use tonic::{Request, Response, Status};

use crate::{error::Error, profile::Profiles, verify::Verifier};

/// The `AuthService` implementation.
#[derive(Debug, Clone)]
pub struct AuthServiceImpl {
    verifier: Arc<Verifier>,
    profiles: Arc<Profiles>,
}

impl AuthServiceImpl {
    /// Handlers over the domain services.
    pub fn new(verifier: Arc<Verifier>, profiles: Arc<Profiles>) -> Self {
        AuthServiceImpl { verifier, profiles }
    }
}

/// The caller's own credential, from the `authorization` metadata.
fn authorization<T>(request: &Request<T>) -> Option<&str> {
    request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
}

fn not_implemented<T>(method: &'static str) -> Result<Response<T>, Status> {
    Err(Error::NotImplemented(method).into())
}

#[tonic::async_trait]
impl AuthService for AuthServiceImpl {
    async fn verify_token(
        &self,
        request: Request<pb::VerifyTokenRequest>,
    ) -> Result<Response<pb::VerifyTokenResponse>, Status> {
        let request = convert::verify_request(request.into_inner());
        let verified = self.verifier.verify(&request).await?;
        Ok(Response::new(convert::verified_token(verified)))
    }

    async fn create_session(
        &self,
        _: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        not_implemented("CreateSession")
    }

    async fn refresh_session(
        &self,
        _: Request<pb::RefreshSessionRequest>,
    ) -> Result<Response<pb::RefreshSessionResponse>, Status> {
        not_implemented("RefreshSession")
    }

    async fn revoke_session(
        &self,
        _: Request<pb::RevokeSessionRequest>,
    ) -> Result<Response<pb::RevokeSessionResponse>, Status> {
        not_implemented("RevokeSession")
    }

    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::GetProfileResponse>, Status> {
        use pb::get_profile_request::Subject;
        let profile = match &request.get_ref().subject {
            Some(Subject::AccessToken(token)) => self.profiles.own(token).await?,
            Some(Subject::UserId(user_id)) => {
                self.profiles
                    .by_id(authorization(&request), user_id)
                    .await?
            }
            None => return Err(convert::missing("subject").into()),
        };
        Ok(Response::new(pb::GetProfileResponse {
            profile: Some(convert::profile(profile)),
        }))
    }

    async fn start_device_login(
        &self,
        _: Request<pb::StartDeviceLoginRequest>,
    ) -> Result<Response<pb::StartDeviceLoginResponse>, Status> {
        not_implemented("StartDeviceLogin")
    }

    async fn poll_device_login(
        &self,
        _: Request<pb::PollDeviceLoginRequest>,
    ) -> Result<Response<pb::PollDeviceLoginResponse>, Status> {
        not_implemented("PollDeviceLogin")
    }
}
