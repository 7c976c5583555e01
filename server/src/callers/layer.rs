//! The one place that decides whether a call may reach its handler: a tower
//! layer around every service of the port. It names the RPC (reading the
//! request message of GetProfile and RevokeSession to tell the by-user-id
//! variants apart), finds the caller (the connection's client certificate,
//! else a service token in `authorization`, verified by authd), asks the
//! [`Policy`], and either refuses with `CALLER_NOT_TRUSTED` or passes the
//! call on with the [`Caller`] in its extensions, inside a log span naming
//! the RPC and the caller (never a credential).

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use authd_proto::pb;
use axum::body::Body;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Response};
use http_body_util::BodyExt;
use prost::Message;
use tower::{Layer, Service};
use tracing::Instrument;

use super::{
    Caller, Peer,
    identity::Identity,
    policy::{self, Policy},
};
use crate::{
    error::Error,
    verify::{Verifier, VerifyRequest},
};

/// Wraps services in [`Guard`].
#[derive(Debug, Clone)]
pub struct PolicyLayer {
    policy: Arc<Policy>,
    verifier: Arc<Verifier>,
}

impl PolicyLayer {
    /// The layer of `policy`, verifying service tokens with `verifier`.
    pub fn new(policy: Policy, verifier: Arc<Verifier>) -> Self {
        PolicyLayer {
            policy: Arc::new(policy),
            verifier,
        }
    }
}

impl<S> Layer<S> for PolicyLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            policy: Arc::clone(&self.policy),
            verifier: Arc::clone(&self.verifier),
        }
    }
}

/// A service whose calls the policy decides.
#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    policy: Arc<Policy>,
    verifier: Arc<Verifier>,
}

impl<S> Service<Request<Body>> for Guard<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (policy, verifier) = (Arc::clone(&self.policy), Arc::clone(&self.verifier));
        Box::pin(async move {
            let (request, rpc) = match name(request).await {
                Ok(named) => named,
                Err(answer) => return Ok(answer),
            };
            let certificate = request.extensions().get::<Peer>().map(|p| p.0.clone());
            let mut caller = certificate.as_deref().cloned();
            let mut refused_token = None;
            if policy.needs_caller(&rpc) && !policy.allows(&rpc, caller.as_ref()) {
                // A service token may grant what the certificate (or its
                // absence) does not.
                match token_identity(&verifier, request.headers()).await {
                    Some(Ok(token)) if caller.is_none() || policy.allows(&rpc, Some(&token)) => {
                        caller = Some(token);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => refused_token = Some(error),
                    None => {}
                }
            }
            let shown = caller
                .as_ref()
                .map_or_else(|| "anonymous".to_owned(), ToString::to_string);
            if !policy.allows(&rpc, caller.as_ref()) {
                let error = match refused_token {
                    // The issuer's keys are missing: a retry may pass.
                    Some(error @ Error::KeysUnavailable { .. }) => error,
                    Some(error) => {
                        tracing::info!(%rpc, caller = %shown, reason = error.reason().as_str(), "service token refused");
                        refusal(rpc, shown)
                    }
                    None => {
                        tracing::info!(%rpc, caller = %shown, "call refused by the callers policy");
                        refusal(rpc, shown)
                    }
                };
                return Ok(tonic::Status::from(error).into_http::<Body>());
            }
            crate::telemetry::record_caller(&shown);
            let span = tracing::info_span!("call", %rpc, caller = %shown);
            let mut request = request;
            if let Some(identity) = caller {
                request.extensions_mut().insert(Caller(Arc::new(identity)));
            }
            inner.call(request).instrument(span).await
        })
    }
}

fn refusal(rpc: String, caller: String) -> Error {
    Error::CallerNotAllowed { rpc, caller }
}

/// The RPC of `request`: its path, or a by-user-id variant's name, for
/// which the request message is read (whole already: the transport reads
/// every unary message before routing it).
async fn name(request: Request<Body>) -> Result<(Request<Body>, String), Response<Body>> {
    let path = request.uri().path();
    let decode: fn(&[u8]) -> bool = if path == policy::GET_PROFILE {
        |m| {
            pb::GetProfileRequest::decode(m).is_ok_and(|r| {
                matches!(r.subject, Some(pb::get_profile_request::Subject::UserId(_)))
            })
        }
    } else if path == policy::REVOKE_SESSION {
        |m| {
            pb::RevokeSessionRequest::decode(m).is_ok_and(|r| {
                matches!(
                    r.target,
                    Some(pb::revoke_session_request::Target::UserId(_))
                )
            })
        }
    } else {
        let rpc = crate::error::truncate(path, 128);
        return Ok((request, rpc));
    };
    let path = path.to_owned();
    let (parts, body) = request.into_parts();
    let message: Bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let error = Error::MalformedRequest(format!("the request body failed: {error}"));
            return Err(tonic::Status::from(error).into_http::<Body>());
        }
    };
    // Past the 5-byte gRPC prefix; a message that does not decode is left
    // for tonic to refuse.
    let by_user = message.get(5..).is_some_and(decode);
    let request = Request::from_parts(parts, Body::from(message));
    Ok((
        request,
        if by_user {
            format!("{path}:user_id")
        } else {
            path
        },
    ))
}

/// The caller a service token in `authorization` proves, verified by
/// authd; `None` when there is none.
async fn token_identity(
    verifier: &Verifier,
    headers: &http::HeaderMap,
) -> Option<Result<Identity, Error>> {
    let token = headers.get("authorization")?.to_str().ok()?;
    let request = VerifyRequest {
        token: token.to_owned(),
        required_scopes: Vec::new(),
        audience: None,
        ..VerifyRequest::default()
    };
    Some(verifier.verify(&request).await.map(|verified| {
        let mut permissions = verified.scopes.clone();
        permissions.extend(verified.permissions.iter().cloned());
        Identity::Token {
            subject: verified.subject.clone(),
            permissions,
        }
    }))
}
