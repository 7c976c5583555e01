//! Session lifecycles against the development issuer
//! (`authd::dangerous::DevIssuer`, binary `dev-issuer`), started at a fixed
//! rate. Even-numbered ones sign in by device login through authd
//! (StartDeviceLogin, the user opens the link, PollDeviceLogin); odd ones
//! get tokens from the issuer themselves, as an app would, and hand them to
//! CreateSession. Then each: VerifyToken and GetProfile with the session's
//! access token, RefreshSession at once (answered from the store), again
//! after `refresh_after` (a real refresh at the issuer, which rotates the
//! refresh token), VerifyToken with the new token, RevokeSession, and
//! VerifyToken and RefreshSession once more, which must now be refused
//! (`SESSION_REVOKED`).

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use authd_proto::pb::{
    CreateSessionRequest, DeviceLoginState, ExistingTokens, GetProfileRequest, NewSession,
    PollDeviceLoginRequest, RefreshSessionRequest, RevokeSessionRequest, StartDeviceLoginRequest,
    VerifyTokenRequest, auth_service_client::AuthServiceClient, create_session_request,
    get_profile_request, refresh_session_request, revoke_session_request,
};
use serde_json::Value;
use tonic::{Code, Response, Status};

use super::{Expect, Family, Recorder, classify};
use crate::load::grpc::H2Connection;

/// The development issuer and authd's OAuth client there.
#[derive(Debug, Clone)]
pub struct DevIssuer {
    /// Its URL, with the trailing slash.
    pub issuer: String,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
}

/// Runs session lifecycles.
#[derive(Debug)]
pub struct Sessions {
    client: AuthServiceClient<H2Connection>,
    http: reqwest::Client,
    dev: DevIssuer,
    recorder: Arc<Recorder>,
    refresh_after: Duration,
}

const REVOKED: Expect = Expect::Refused(Code::Unauthenticated, "SESSION_REVOKED");

impl Sessions {
    /// Lifecycles over `client`, refreshing for real `refresh_after` the
    /// session was created (authd answers earlier refreshes from the store).
    pub fn new(
        client: AuthServiceClient<H2Connection>,
        dev: DevIssuer,
        recorder: Arc<Recorder>,
        refresh_after: Duration,
    ) -> anyhow::Result<Sessions> {
        Ok(Sessions {
            client,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            dev,
            recorder,
            refresh_after,
        })
    }

    /// How long one lifecycle takes at least.
    pub fn lifetime(&self) -> Duration {
        self.refresh_after
    }

    /// Lifecycle number `n`; every answer and failure goes to the recorder.
    pub async fn lifecycle(self: Arc<Self>, n: u64) {
        let created = if n.is_multiple_of(2) {
            self.device_login().await
        } else {
            self.create_with_tokens().await
        };
        let Some(session) = created else { return };
        let _ = self.use_and_revoke(session).await;
    }

    /// Times and checks one call; `Some` when it succeeded as expected.
    async fn call<T, F>(&self, kind: &'static str, expect: Expect, call: F) -> Option<T>
    where
        F: Future<Output = Result<Response<T>, Status>>,
    {
        let sent = Instant::now();
        let result = call.await;
        let latency = sent.elapsed();
        let outcome = classify(expect, &result);
        self.recorder.record(
            Family::Session,
            kind,
            Some(latency),
            Duration::ZERO,
            outcome,
        );
        match (expect, result) {
            (Expect::Ok, Ok(response)) => Some(response.into_inner()),
            _ => None,
        }
    }

    fn fail<T>(&self, kind: &'static str, detail: impl Into<String>) -> Option<T> {
        self.recorder.failure(kind, detail.into());
        None
    }

    /// The user opens the verification link and approves.
    async fn approve(&self, link: &str) -> Option<()> {
        match self.http.get(link).send().await {
            Ok(r) if r.status().is_success() => Some(()),
            Ok(r) => self.fail("issuer/activate", format!("HTTP {}", r.status())),
            Err(e) => self.fail("issuer/activate", e.to_string()),
        }
    }

    async fn device_login(&self) -> Option<NewSession> {
        let mut client = self.client.clone();
        let start = self
            .call(
                "StartDeviceLogin",
                Expect::Ok,
                client.start_device_login(StartDeviceLoginRequest {
                    scopes: vec![super::mix::SCOPE.to_owned()],
                    audience: String::new(),
                    issuer: self.dev.issuer.clone(),
                }),
            )
            .await?;
        self.approve(&start.verification_uri_complete).await?;
        let poll = self
            .call(
                "PollDeviceLogin",
                Expect::Ok,
                client.poll_device_login(PollDeviceLoginRequest {
                    device_code: start.device_code,
                    issuer: self.dev.issuer.clone(),
                    interval: start.interval,
                }),
            )
            .await?;
        match (poll.state, poll.session) {
            (state, Some(session)) if state == DeviceLoginState::Approved as i32 => Some(session),
            (state, _) => self.fail(
                "PollDeviceLogin",
                format!("state {state} without a session after approval"),
            ),
        }
    }

    /// POSTs a form to the issuer and returns its JSON answer.
    async fn issuer_post(&self, path: &str, form: &[(&str, &str)]) -> Option<Value> {
        let url = format!("{}{path}", self.dev.issuer);
        let answer = match self.http.post(&url).form(form).send().await {
            Ok(r) if r.status().is_success() => r.json::<Value>().await,
            Ok(r) => return self.fail("issuer/token", format!("{path}: HTTP {}", r.status())),
            Err(e) => return self.fail("issuer/token", format!("{path}: {e}")),
        };
        answer
            .ok()
            .or_else(|| self.fail("issuer/token", format!("{path}: not JSON")))
    }

    async fn create_with_tokens(&self) -> Option<NewSession> {
        let scope = format!("openid offline_access profile email {}", super::mix::SCOPE);
        let id = self.dev.client_id.as_str();
        let device = self
            .issuer_post("oauth/device/code", &[("client_id", id), ("scope", &scope)])
            .await?;
        let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_owned();
        self.approve(&text(&device, "verification_uri_complete"))
            .await?;
        let tokens = self
            .issuer_post(
                "oauth/token",
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("client_id", id),
                    ("client_secret", &self.dev.client_secret),
                    ("device_code", &text(&device, "device_code")),
                ],
            )
            .await?;
        let mut client = self.client.clone();
        let created = self
            .call(
                "CreateSession",
                Expect::Ok,
                client.create_session(CreateSessionRequest {
                    grant: Some(create_session_request::Grant::ExistingTokens(
                        ExistingTokens {
                            refresh_token: text(&tokens, "refresh_token"),
                            id_token: text(&tokens, "id_token"),
                            access_token: text(&tokens, "access_token"),
                            nonce: String::new(),
                        },
                    )),
                    issuer: self.dev.issuer.clone(),
                }),
            )
            .await?;
        created
            .session
            .or_else(|| self.fail("CreateSession", "no session in the answer"))
    }

    async fn use_and_revoke(&self, session: NewSession) -> Option<()> {
        let mut client = self.client.clone();
        let handle = session.session_handle;
        let verify = |token: &str| VerifyTokenRequest {
            token: token.to_owned(),
            required_scopes: vec![super::mix::SCOPE.to_owned()],
            audience: None,
            ..VerifyTokenRequest::default()
        };
        let refresh = || RefreshSessionRequest {
            credential: Some(refresh_session_request::Credential::SessionHandle(
                handle.clone(),
            )),
            issuer: String::new(),
        };
        let created_at = Instant::now();
        let token = session.access_token;
        self.call(
            "VerifyToken(session)",
            Expect::Ok,
            client.verify_token(verify(&token)),
        )
        .await?;
        self.call(
            "GetProfile",
            Expect::Ok,
            client.get_profile(GetProfileRequest {
                subject: Some(get_profile_request::Subject::AccessToken(token.clone())),
            }),
        )
        .await?;
        self.call(
            "RefreshSession(stored)",
            Expect::Ok,
            client.refresh_session(refresh()),
        )
        .await?;
        tokio::time::sleep_until((created_at + self.refresh_after).into()).await;
        let refreshed = self
            .call(
                "RefreshSession(issuer)",
                Expect::Ok,
                client.refresh_session(refresh()),
            )
            .await?;
        if refreshed.access_token == token {
            return self.fail(
                "RefreshSession(issuer)",
                "the stored token came back after the reuse window",
            );
        }
        let token = refreshed.access_token;
        self.call(
            "VerifyToken(session)",
            Expect::Ok,
            client.verify_token(verify(&token)),
        )
        .await?;
        let revoked = self
            .call(
                "RevokeSession",
                Expect::Ok,
                client.revoke_session(RevokeSessionRequest {
                    target: Some(revoke_session_request::Target::SessionHandle(
                        handle.clone(),
                    )),
                }),
            )
            .await?;
        if revoked.revoked_sessions != 1 {
            return self.fail(
                "RevokeSession",
                format!("revoked_sessions = {}", revoked.revoked_sessions),
            );
        }
        self.call(
            "VerifyToken(revoked)",
            REVOKED,
            client.verify_token(verify(&token)),
        )
        .await;
        self.call(
            "RefreshSession(revoked)",
            REVOKED,
            client.refresh_session(refresh()),
        )
        .await;
        Some(())
    }
}
