//! [`AuthClient`] and its [`AuthClientBuilder`]: endpoints, TLS, timeouts,
//! retries and the revocation-aware verification cache.

use std::{
    future::Future,
    hash::BuildHasher,
    sync::Arc,
    time::{Duration, Instant},
};

use authd_proto::pb::{self, auth_service_client::AuthServiceClient};
use tonic::{
    Code, Status,
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
};

use crate::{
    AuthError, VerifiedToken,
    cache::{CacheConfig, CacheState, VerifyCache},
    dpop::{DpopPolicy, HitCheck, LocalProofs, Presented},
    types::{
        DeviceLogin, DeviceLoginState, DevicePoll, NewSession, Profile, RefreshCredential,
        Refreshed, RevokeTarget, Secret, SessionGrant,
    },
    watch::{self, TokenSource, WatchTask},
};

type Client = AuthServiceClient<Channel>;

/// Retries of calls that failed with `UNAVAILABLE`, with exponential backoff
/// and jitter. No other code is ever retried (an `UNAUTHENTICATED` token stays
/// bad), and only idempotent calls are: VerifyToken, GetProfile,
/// RevokeSession, PollDeviceLogin — never CreateSession, RefreshSession or
/// StartDeviceLogin, where a retry after a lost answer could rotate a
/// refresh token twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 disables retries. Defaults to 3.
    pub max_attempts: u32,
    /// The wait before the first retry, doubled each time. Defaults to 50 ms.
    pub initial_backoff: Duration,
    /// The longest wait between attempts. Defaults to 1 s.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// `attempts` in all, with the default backoff.
    pub fn attempts(attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: attempts.max(1),
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry number `retry` (1-based): exponential, capped,
    /// then jittered into its upper half so that clients do not retry in step.
    fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)));
        let capped = exp.min(self.max_backoff);
        let random = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
        capped / 2 + capped.mul_f64((random % 1024) as f64 / 2048.0)
    }
}

/// Configures an [`AuthClient`]: one or several authd endpoints (balanced),
/// TLS, timeouts, retries and the verification cache.
///
/// ```no_run
/// # fn example() -> Result<(), authd_client::AuthError> {
/// use std::time::Duration;
/// use authd_client::{AuthClient, CacheConfig, RetryPolicy, Secret};
///
/// let client = AuthClient::builder()
///     .endpoint("http://10.0.0.1:50051")
///     .endpoint("http://10.0.0.2:50051")
///     .timeout(Duration::from_millis(500))
///     .retry(RetryPolicy::attempts(3))
///     .cache(CacheConfig::default().max_ttl(Duration::from_secs(10)))
///     .watch_token(Secret::new("eyJ...service token with revocations:watch..."))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AuthClientBuilder {
    endpoints: Vec<String>,
    #[cfg(feature = "tls")]
    tls: Option<tonic::transport::ClientTlsConfig>,
    #[cfg(feature = "tls")]
    tls_files: Option<crate::tls::TlsFiles>,
    connect_timeout: Duration,
    timeout: Option<Duration>,
    retry: RetryPolicy,
    cache: Option<CacheConfig>,
    watch_token: Option<TokenSource>,
    dpop: DpopPolicy,
}

impl Default for AuthClientBuilder {
    fn default() -> Self {
        AuthClientBuilder {
            endpoints: Vec::new(),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            tls_files: None,
            connect_timeout: Duration::from_secs(5),
            timeout: Some(Duration::from_secs(2)),
            retry: RetryPolicy::default(),
            cache: Some(CacheConfig::default()),
            watch_token: None,
            dpop: DpopPolicy::default(),
        }
    }
}

impl AuthClientBuilder {
    /// Adds an authd endpoint (`http://host:port` or `https://...`). With
    /// several, calls are balanced over them (power of two choices).
    ///
    /// A client holds one HTTP/2 connection per endpoint, and authd serves
    /// each connection on one of its cores: a service that alone needs more
    /// than one core of one authd replica uses several clients.
    pub fn endpoint(mut self, uri: impl Into<String>) -> Self {
        self.endpoints.push(uri.into());
        self
    }

    /// TLS to authd: CA roots, domain name, and a client certificate for
    /// mutual TLS. Needs the `tls` feature (on by default).
    ///
    /// ```no_run
    /// # fn example(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<(), authd_client::AuthError> {
    /// use authd_client::{AuthClient, tls::{Certificate, ClientTlsConfig, Identity}};
    ///
    /// let tls = ClientTlsConfig::new()
    ///     .ca_certificate(Certificate::from_pem(ca))
    ///     .identity(Identity::from_pem(cert, key))
    ///     .domain_name("authd.internal");
    /// let client = AuthClient::builder()
    ///     .endpoint("https://authd.internal:50051")
    ///     .tls(tls)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: tonic::transport::ClientTlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// TLS to authd from files: the CA, and for mutual TLS the client
    /// certificate and key, read again when they change (checked every few
    /// seconds), so that a rotated workload certificate is used by the next
    /// connection without rebuilding the client. Replaces [`Self::tls`].
    /// The server half is in the README ("Production: TLS, mTLS and
    /// callers").
    ///
    /// ```no_run
    /// # fn example() -> Result<(), authd_client::AuthError> {
    /// use authd_client::{AuthClient, tls::TlsFiles};
    ///
    /// let tls = TlsFiles::new("/etc/authd/tls/ca.pem", "authd.internal")
    ///     .identity("/run/spiffe/svid.pem", "/run/spiffe/svid.key");
    /// let client = AuthClient::builder()
    ///     .endpoint("https://authd.internal:50051")
    ///     .tls_files(tls)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls_files(mut self, files: crate::tls::TlsFiles) -> Self {
        self.tls_files = Some(files);
        self
    }

    /// The longest a connection attempt takes. Defaults to 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The deadline of each attempt of each call (sent as `grpc-timeout` and
    /// enforced here); `None` waits forever. Defaults to 2 s.
    pub fn timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.timeout = timeout.into();
        self
    }

    /// Retries on `UNAVAILABLE`. Defaults to [`RetryPolicy::default`].
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Configures the cache of positive verifications, on by default with
    /// [`CacheConfig::default`]. It answers only while the client's
    /// WatchRevocations stream is live and refuses what a revocation names:
    /// read [`CacheConfig`] for the guarantee.
    pub fn cache(mut self, cache: CacheConfig) -> Self {
        self.cache = Some(cache);
        self
    }

    /// How DPoP proofs are checked before a cached verdict of a DPoP-bound
    /// token is used again (keep it equal to authd's `[dpop]`; the defaults
    /// are the same).
    pub fn dpop(mut self, policy: DpopPolicy) -> Self {
        self.dpop = policy;
        self
    }

    /// Turns the verification cache off: every verification asks authd.
    pub fn no_cache(mut self) -> Self {
        self.cache = None;
        self
    }

    /// The service access token sent (`authorization: Bearer`) on the
    /// cache's WatchRevocations stream, for a caller without a client
    /// certificate that authd's policy names. authd's default grants the
    /// stream to tokens holding the `revocations:watch` permission. Without
    /// one the stream is asked for anonymously; refused, the client runs
    /// without a cache (and says so once in its log), asking again every
    /// minute. For a token that expires, use [`Self::watch_token_with`].
    pub fn watch_token(self, token: Secret) -> Self {
        self.watch_token_with(move || token.clone())
    }

    /// Like [`Self::watch_token`], with the token `source` returns, asked
    /// for at every (re)connection of the stream: a service token that is
    /// renewed elsewhere (client credentials) keeps the cache on.
    pub fn watch_token_with(mut self, source: impl Fn() -> Secret + Send + Sync + 'static) -> Self {
        self.watch_token = Some(TokenSource::new(source));
        self
    }

    fn endpoints(&self) -> Result<Vec<Endpoint>, AuthError> {
        if self.endpoints.is_empty() {
            return Err(AuthError::local(Code::InvalidArgument, "no authd endpoint"));
        }
        self.endpoints
            .iter()
            .map(|uri| {
                let endpoint = Endpoint::from_shared(uri.clone())
                    .map_err(|e| AuthError::local(Code::InvalidArgument, format!("{uri}: {e}")))?
                    .connect_timeout(self.connect_timeout);
                #[cfg(feature = "tls")]
                let endpoint = match &self.tls {
                    Some(tls) => endpoint.tls_config(tls.clone())?,
                    None => endpoint,
                };
                Ok(endpoint)
            })
            .collect()
    }

    /// A client that connects on first use (and reconnects as needed): it
    /// builds even while authd is down. Must be called inside a Tokio runtime.
    pub fn build(self) -> Result<AuthClient, AuthError> {
        #[cfg(feature = "tls")]
        if let Some(files) = self.tls_files.clone() {
            let mut without = self.clone();
            without.tls = None;
            let channel = crate::tls_files::channel(without.endpoints()?, files)?;
            return Ok(self.with_channel(channel));
        }
        let mut endpoints = self.endpoints()?;
        let channel = if endpoints.len() == 1 {
            endpoints.remove(0).connect_lazy()
        } else {
            Channel::balance_list(endpoints.into_iter())
        };
        Ok(self.with_channel(channel))
    }

    /// A client connected now: fails when the (single) endpoint cannot be
    /// reached. Several endpoints are always connected lazily.
    pub async fn connect(self) -> Result<AuthClient, AuthError> {
        #[cfg(feature = "tls")]
        let from_files = self.tls_files.is_some();
        #[cfg(not(feature = "tls"))]
        let from_files = false;
        if self.endpoints.len() != 1 || from_files {
            return self.build();
        }
        let channel = self.endpoints()?.remove(0).connect().await?;
        Ok(self.with_channel(channel))
    }

    /// A client over a channel configured elsewhere; the builder's timeout,
    /// retry and cache settings apply, its endpoints and TLS do not.
    ///
    /// With the cache on, it starts the task that watches revocations, which
    /// needs a Tokio runtime (without one the cache is off).
    pub fn with_channel(self, channel: Channel) -> AuthClient {
        let cache = self.cache.map(|c| Arc::new(VerifyCache::new(c)));
        let watch = cache
            .as_ref()
            .filter(|c| c.state() != CacheState::Off)
            .and_then(|c| watch::start(c, channel.clone(), self.watch_token.clone()))
            .map(Arc::new);
        AuthClient {
            inner: AuthServiceClient::new(channel),
            timeout: self.timeout,
            retry: self.retry,
            cache,
            proofs: Arc::new(LocalProofs::new(self.dpop)),
            _watch: watch,
        }
    }
}

/// A client of `auth.v1.AuthService`. Cheap to clone: clones share the
/// connection, the cache and its revocation stream (which stops with the
/// last clone).
#[derive(Debug, Clone)]
pub struct AuthClient {
    inner: Client,
    timeout: Option<Duration>,
    retry: RetryPolicy,
    cache: Option<Arc<VerifyCache>>,
    proofs: Arc<LocalProofs>,
    _watch: Option<Arc<WatchTask>>,
}

impl AuthClient {
    /// Connects to authd at `uri`, e.g. `http://127.0.0.1:50051`, with the
    /// default settings.
    pub async fn connect(uri: impl Into<String>) -> Result<Self, AuthError> {
        AuthClient::builder().endpoint(uri).connect().await
    }

    /// A client over an existing channel, with the default settings.
    pub fn from_channel(channel: Channel) -> Self {
        AuthClient::builder().with_channel(channel)
    }

    /// Configures a client.
    pub fn builder() -> AuthClientBuilder {
        AuthClientBuilder::default()
    }

    /// Whether the verification cache answers now.
    pub fn cache_state(&self) -> CacheState {
        self.cache.as_ref().map_or(CacheState::Off, |c| c.state())
    }

    /// The cache's answer for what `presented` carries and these scopes, if
    /// it gives one now: what the middleware decides without a future.
    /// `Some(Err)`: the cached token is bound and the request does not prove
    /// it (a refusal authd would give too).
    #[cfg(any(feature = "tonic-middleware", feature = "http-middleware"))]
    pub(crate) fn cached<S: AsRef<str>>(
        &self,
        presented: &Presented<'_>,
        scopes: &[S],
    ) -> Option<Result<VerifiedToken, AuthError>> {
        let cache = self.cache.as_ref()?;
        let (_, token) = presented.split();
        let hit = cache.get(&VerifyCache::key(token, scopes))?;
        match self.proofs.check_hit(hit.binding.as_ref(), presented) {
            HitCheck::Use => Some(Ok(hit)),
            HitCheck::Ask => None,
            HitCheck::Refuse(error) => Some(Err(error)),
        }
    }

    /// Verifies `token` (a leading `Bearer ` is accepted), requiring every
    /// scope in `required_scopes`. Answered from the cache when it holds
    /// this token and these scopes and its revocation stream is live.
    ///
    /// A sender-constrained token (DPoP or certificate-bound) is refused
    /// this way: pass what proves its binding with [`Self::verify`].
    pub async fn verify_token(
        &mut self,
        token: &str,
        required_scopes: &[&str],
    ) -> Result<VerifiedToken, AuthError> {
        self.verify(&Presented::token(token), required_scopes).await
    }

    /// Verifies what a request presents — its `Authorization` value, its
    /// `DPoP` proof, method and URI, its client certificate — requiring
    /// every scope in `required_scopes`. A cached verdict is used only
    /// after the request proves the token's binding here (the proof's
    /// checks and its replay included), exactly as authd would.
    pub async fn verify(
        &mut self,
        presented: &Presented<'_>,
        required_scopes: &[&str],
    ) -> Result<VerifiedToken, AuthError> {
        let (_, token) = presented.split();
        let cached = self
            .cache
            .as_ref()
            .map(|cache| (cache, VerifyCache::key(token, required_scopes)));
        if let Some(hit) = cached.as_ref().and_then(|(cache, key)| cache.get(key)) {
            match self.proofs.check_hit(hit.binding.as_ref(), presented) {
                HitCheck::Use => return Ok(hit),
                HitCheck::Refuse(error) => return Err(error),
                HitCheck::Ask => {}
            }
        }
        let request = pb::VerifyTokenRequest {
            token: presented.authorization.to_owned(),
            required_scopes: required_scopes.iter().map(|s| (*s).to_owned()).collect(),
            audience: None,
            dpop_proof: presented.dpop_proof.unwrap_or_default().to_owned(),
            http_method: presented.http_method.to_owned(),
            http_uri: presented.http_uri.to_owned(),
            client_certificate: presented.client_certificate.unwrap_or_default().to_vec(),
        };
        let response = self
            .unary(true, None, request, |mut c, r| async move {
                c.verify_token(r).await
            })
            .await?;
        let verified = VerifiedToken::from(response);
        if let Some((cache, key)) = cached
            && self.proofs.remember(verified.binding.as_ref(), presented)
        {
            cache.insert(key, token, &verified);
        }
        Ok(verified)
    }

    /// Starts a session from a sign-in (never retried).
    pub async fn create_session(
        &mut self,
        grant: SessionGrant,
        issuer: Option<&str>,
    ) -> Result<NewSession, AuthError> {
        let request = pb::CreateSessionRequest {
            grant: Some(grant.into()),
            issuer: issuer.unwrap_or_default().to_owned(),
        };
        let response = self
            .unary(false, None, request, |mut c, r| async move {
                c.create_session(r).await
            })
            .await?;
        let session = response
            .session
            .ok_or_else(|| AuthError::local(Code::Internal, "authd sent no session"))?;
        Ok(session.into())
    }

    /// A fresh access token for a session or a raw refresh token (never
    /// retried: the issuer may have rotated the refresh token already).
    pub async fn refresh_session(
        &mut self,
        credential: RefreshCredential,
        issuer: Option<&str>,
    ) -> Result<Refreshed, AuthError> {
        use pb::refresh_session_request::Credential;
        let credential = match credential {
            RefreshCredential::SessionHandle(h) => Credential::SessionHandle(h.expose().to_owned()),
            RefreshCredential::RefreshToken(t) => Credential::RefreshToken(t.expose().to_owned()),
        };
        let request = pb::RefreshSessionRequest {
            credential: Some(credential),
            issuer: issuer.unwrap_or_default().to_owned(),
        };
        let response = self
            .unary(false, None, request, |mut c, r| async move {
                c.refresh_session(r).await
            })
            .await?;
        Ok(response.into())
    }

    /// Revokes one session or every session of a user; answers how many were
    /// revoked. Revoking every session of a user takes a trusted service's
    /// token, sent as `authorization` metadata.
    pub async fn revoke_session(
        &mut self,
        target: RevokeTarget,
        service_token: Option<&Secret>,
    ) -> Result<u32, AuthError> {
        use pb::revoke_session_request::Target;
        let target = match target {
            RevokeTarget::SessionHandle(h) => Target::SessionHandle(h.expose().to_owned()),
            RevokeTarget::User(user_id) => Target::UserId(user_id),
        };
        let request = pb::RevokeSessionRequest {
            target: Some(target),
        };
        let response = self
            .unary(true, service_token, request, |mut c, r| async move {
                c.revoke_session(r).await
            })
            .await?;
        Ok(response.revoked_sessions)
    }

    /// The profile of the user `access_token` belongs to.
    pub async fn get_profile(&mut self, access_token: &str) -> Result<Profile, AuthError> {
        use pb::get_profile_request::Subject;
        self.profile(Subject::AccessToken(access_token.to_owned()), None)
            .await
    }

    /// Any user's profile, for a trusted service proven by `service_token`.
    pub async fn get_profile_by_id(
        &mut self,
        user_id: &str,
        service_token: &Secret,
    ) -> Result<Profile, AuthError> {
        use pb::get_profile_request::Subject;
        self.profile(Subject::UserId(user_id.to_owned()), Some(service_token))
            .await
    }

    async fn profile(
        &mut self,
        subject: pb::get_profile_request::Subject,
        service_token: Option<&Secret>,
    ) -> Result<Profile, AuthError> {
        let request = pb::GetProfileRequest {
            subject: Some(subject),
        };
        let response = self
            .unary(true, service_token, request, |mut c, r| async move {
                c.get_profile(r).await
            })
            .await?;
        let profile = response
            .profile
            .ok_or_else(|| AuthError::local(Code::Internal, "authd sent no profile"))?;
        Ok(profile.into())
    }

    /// Begins a device login (RFC 8628; never retried).
    pub async fn start_device_login(
        &mut self,
        scopes: &[&str],
        audience: Option<&str>,
        issuer: Option<&str>,
    ) -> Result<DeviceLogin, AuthError> {
        let request = pb::StartDeviceLoginRequest {
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            audience: audience.unwrap_or_default().to_owned(),
            issuer: issuer.unwrap_or_default().to_owned(),
        };
        let response = self
            .unary(false, None, request, |mut c, r| async move {
                c.start_device_login(r).await
            })
            .await?;
        Ok(response.into())
    }

    /// Where a device login stands; the session once approved.
    /// `interval` is the one the app polls at now: [`DeviceLogin::interval`]
    /// at first, then the last [`DevicePoll::interval`], so that a slow
    /// down's longer interval sticks (RFC 8628 §3.5).
    pub async fn poll_device_login(
        &mut self,
        device_code: &Secret,
        interval: Duration,
        issuer: Option<&str>,
    ) -> Result<DevicePoll, AuthError> {
        let request = pb::PollDeviceLoginRequest {
            device_code: device_code.expose().to_owned(),
            issuer: issuer.unwrap_or_default().to_owned(),
            interval: u32::try_from(interval.as_secs()).unwrap_or(u32::MAX),
        };
        let r = self
            .unary(true, None, request, |mut c, r| async move {
                c.poll_device_login(r).await
            })
            .await?;
        use pb::DeviceLoginState as S;
        let state = match (S::try_from(r.state), r.session) {
            (Ok(S::Pending), _) => DeviceLoginState::Pending,
            (Ok(S::SlowDown), _) => DeviceLoginState::SlowDown,
            (Ok(S::Denied), _) => DeviceLoginState::Denied,
            (Ok(S::Expired), _) => DeviceLoginState::Expired,
            (Ok(S::Approved), Some(session)) => {
                DeviceLoginState::Approved(Box::new(session.into()))
            }
            (state, _) => {
                return Err(AuthError::local(
                    Code::Internal,
                    format!("authd sent device login state {state:?} ({})", r.state),
                ));
            }
        };
        Ok(DevicePoll {
            state,
            interval: Duration::from_secs(r.interval.into()),
        })
    }

    /// The generated client, for what the typed methods do not cover.
    pub fn raw(&mut self) -> &mut Client {
        &mut self.inner
    }

    /// One unary call: deadline per attempt, `authorization` metadata when
    /// given, retries on `UNAVAILABLE` when `retry` (the call is idempotent).
    async fn unary<Req, Res, Fut>(
        &self,
        retry: bool,
        authorization: Option<&Secret>,
        message: Req,
        rpc: impl Fn(Client, tonic::Request<Req>) -> Fut,
    ) -> Result<Res, AuthError>
    where
        Req: Clone,
        Fut: Future<Output = Result<tonic::Response<Res>, Status>>,
    {
        let authorization = authorization
            .map(|token| {
                MetadataValue::try_from(format!("Bearer {}", token.expose())).map_err(|_| {
                    AuthError::local(Code::InvalidArgument, "service token is not a header value")
                })
            })
            .transpose()?;
        let attempts = if retry { self.retry.max_attempts } else { 1 };
        let mut attempt = 1;
        loop {
            let mut request = tonic::Request::new(message.clone());
            if let Some(value) = &authorization {
                request
                    .metadata_mut()
                    .insert("authorization", value.clone());
            }
            if let Some(timeout) = self.timeout {
                request.set_timeout(timeout);
            }
            let call = rpc(self.inner.clone(), request);
            let result = match self.timeout {
                Some(timeout) => {
                    let started = Instant::now();
                    let late = || {
                        Status::deadline_exceeded(format!(
                            "authd did not answer within {timeout:?}"
                        ))
                    };
                    match tokio::time::timeout(timeout, call).await {
                        // tonic's channel enforces `grpc-timeout` too, and
                        // reports it as CANCELLED: the same deadline.
                        Ok(Err(status))
                            if status.code() == Code::Cancelled && started.elapsed() >= timeout =>
                        {
                            Err(late())
                        }
                        Ok(result) => result,
                        Err(_) => Err(late()),
                    }
                }
                None => call.await,
            };
            match result {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if status.code() == Code::Unavailable && attempt < attempts => {
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(status) => return Err(status.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
        };
        for (retry, full) in [(1, 100), (2, 200), (3, 350), (8, 350)] {
            let wait = policy.backoff(retry);
            let full = Duration::from_millis(full);
            assert!(wait >= full / 2 && wait <= full, "retry {retry}: {wait:?}");
        }
    }

    #[test]
    fn builder_needs_an_endpoint() {
        let err = AuthClient::builder().build().expect_err("no endpoint");
        assert_eq!(err.code(), Code::InvalidArgument);
    }
}
