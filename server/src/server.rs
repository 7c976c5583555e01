//! Wiring: builds the domain objects from the configuration and serves them
//! over gRPC with health and reflection (v1 and v1alpha) on one port.

use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use authd_proto::{
    ENVOY_EXT_AUTHZ_DESCRIPTOR_SET, FILE_DESCRIPTOR_SET, pb::auth_service_server::AuthServiceServer,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::AuthorizationServer;
use tokio::{net::TcpListener, task::JoinHandle};
use tonic::service::Routes;

use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    callers::{Policy, PolicyLayer},
    config::{Config, ExtAuthzConfig, LimitsConfig, ServerConfig},
    ext_authz::ExtAuthz,
    grpc::{AuthServiceImpl, ExtAuthzImpl},
    issuer::IssuerClient,
    jwks::{BoxFuture, FetchError, FetchKeys, IssuerKeys, Jwk},
    logout::{Logouts, events::AccountEvents},
    profile::Profiles,
    revocation::{Revocations, Watchers},
    secrets::Sealer,
    session::Sessions,
    store::{self, Store},
    transport,
    verify::{IssuerPolicy, Verifier},
};

/// Why authd cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `serve` needs at least one issuer.
    #[error("configuration: no [[issuers]] configured")]
    NoIssuers,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    /// An issuer's client cannot be set up (discovery URL, client secret).
    #[error("configuration: issuers[{index}]: {problem}")]
    Issuer {
        /// The issuer's position in the configuration.
        index: usize,
        /// What is wrong.
        problem: String,
    },
    /// The listener or its worker threads failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] std::io::Error),
    /// Binding or reflection set-up failed.
    #[error("{0}")]
    Setup(String),
}

/// The running domain: verifier, store, profiles, and the tasks that keep
/// key sets fresh.
#[derive(Debug)]
pub struct App {
    verifier: Arc<Verifier>,
    store: Arc<dyn Store>,
    profiles: Arc<Profiles>,
    sessions: Arc<Sessions>,
    watchers: Arc<Watchers>,
    logouts: Arc<Logouts>,
    account_events: Arc<AccountEvents>,
    sealer: Option<Arc<Sealer>>,
    store_probe: Duration,
    workers: usize,
    limits: LimitsConfig,
    ext_authz: ExtAuthzConfig,
    listener: ServerConfig,
    tls: Option<Arc<transport::Tls>>,
    policy: Policy,
    refreshers: Vec<JoinHandle<()>>,
}

impl Drop for App {
    fn drop(&mut self) {
        for task in &self.refreshers {
            task.abort();
        }
    }
}

impl App {
    /// Opens the configured store, then builds the rest ([`App::with_store`]).
    pub async fn build(config: &Config) -> Result<App, StartError> {
        if config.issuers.is_empty() {
            return Err(StartError::NoIssuers);
        }
        let store = store::open(&config.store).await.map_err(|e| {
            StartError::Setup(format!(
                "cannot open the {:?} store: {e}",
                config.store.kind
            ))
        })?;
        Self::with_store(config, store).await
    }

    /// Builds the verifier, fetches every issuer's key set once (an issuer
    /// that is down is logged, not fatal: its keys are fetched when it
    /// returns), and starts the background refreshers.
    pub async fn with_store(config: &Config, store: Arc<dyn Store>) -> Result<App, StartError> {
        let sealer = Sealer::from_config(&config.secrets)
            .await
            .map_err(|e| StartError::Setup(format!("configuration: {e}")))?
            .map(Arc::new);
        if let Some(sealer) = &sealer {
            // KMS's first data key, off the start-up path: authd starts (and
            // says so in /readyz) when KMS does not answer.
            let sealer = Arc::clone(sealer);
            tokio::spawn(async move {
                if let Err(error) = sealer.warm().await {
                    tracing::warn!(%error, "KMS gives no data key at start-up; sessions wait for it");
                }
            });
        }
        let tls = match &config.server.tls {
            Some(files) => Some(transport::Tls::new(files).map_err(StartError::Setup)?),
            None => None,
        };
        let policy = Policy::from_config(config).map_err(|e| StartError::Setup(e.to_string()))?;
        let (verifier, revocations, clients) = verifier(config).await?;
        if let Err(error) = store.ping().await {
            tracing::warn!(%error, "the store does not answer at start-up; health is NOT_SERVING until it does");
        }
        // Revocations made before this replica started count too.
        if let Err(error) = revocations.poll(store.as_ref()).await {
            tracing::warn!(%error, "cannot read revocations at start-up; retrying in the background");
        }
        let mut refreshers: Vec<JoinHandle<()>> = verifier
            .issuers()
            .map(|p| p.keys().spawn_refresher())
            .collect();
        refreshers.push(revocations.spawn_poller(
            Arc::clone(&store),
            Duration::from_millis(config.sessions.revocation_poll_ms.max(50)),
        ));
        let profile_sealer = sealer.clone().unwrap_or_else(|| {
            tracing::info!(
                "no [secrets] keys: profiles are sealed under a key that lives only in this process"
            );
            Arc::new(Sealer::ephemeral())
        });
        let profiles = Arc::new(Profiles::new(
            Arc::clone(&store),
            profile_sealer,
            Arc::clone(&verifier),
            clients.clone(),
            config.profiles.clone(),
        ));
        let sessions = Arc::new(Sessions::new(
            Arc::clone(&store),
            Arc::clone(&verifier),
            Arc::clone(&profiles),
            clients,
            sealer.clone(),
            config.sessions.clone(),
        ));
        let watchers = Arc::new(Watchers::new(Arc::clone(&revocations), &config.watch));
        let logouts = Arc::new(Logouts::new(
            config,
            Arc::clone(&verifier),
            Arc::clone(&store),
        ));
        let account_events = Arc::new(
            AccountEvents::new(config, Arc::clone(&store), Arc::clone(&revocations))
                .map_err(|e| StartError::Setup(format!("configuration: {e}")))?,
        );
        Ok(App {
            verifier,
            store,
            profiles,
            sessions,
            watchers,
            logouts,
            account_events,
            sealer,
            store_probe: Duration::from_secs(config.store.health_interval_seconds.max(1)),
            workers: transport::count(config.server.threads),
            limits: config.limits.clone(),
            ext_authz: config.ext_authz.clone(),
            listener: config.server.clone(),
            tls,
            policy,
            refreshers,
        })
    }

    /// The token verifier.
    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The sealer of secrets at rest, when keys are configured.
    pub fn sealer(&self) -> Option<&Arc<Sealer>> {
        self.sealer.as_ref()
    }
}

/// A verifier for one-off checks (`authd verify`): the configured issuers,
/// their key sets fetched once, and the revocations read from `store` when
/// one is given. Nothing runs in the background.
pub async fn standalone_verifier(
    config: &Config,
    store: Option<&dyn Store>,
) -> Result<Arc<Verifier>, StartError> {
    let (verifier, revocations, _) = verifier(config).await?;
    if let Some(store) = store {
        revocations
            .poll(store)
            .await
            .map_err(|e| StartError::Setup(format!("cannot read revocations: {e}")))?;
    }
    Ok(verifier)
}

/// Issuers' OAuth clients by issuer.
type IssuerClients = HashMap<String, Arc<IssuerClient>>;

/// The verifier of the configured issuers, with its (empty) revocation set
/// and every issuer's key set fetched once, and the issuers' OAuth clients.
async fn verifier(
    config: &Config,
) -> Result<(Arc<Verifier>, Arc<Revocations>, IssuerClients), StartError> {
    if config.issuers.is_empty() {
        return Err(StartError::NoIssuers);
    }
    let (policies, clients) = issuers(config)?;
    let revocations = Revocations::with_feed_capacity(config.watch.buffer);
    let mut verifier = Verifier::with_revocations(policies, config, Arc::clone(&revocations));
    if let Some(source) = &config.dpop.nonce_secret {
        verifier = verifier.with_nonce_secret(config, &nonce_secret(source)?);
    }
    let verifier = Arc::new(verifier);
    fetch_key_sets(&verifier, config).await;
    Ok((verifier, revocations, clients))
}

/// The DPoP nonce key of `dpop.nonce_secret`: base64 of at least 32 bytes.
fn nonce_secret(source: &crate::config::KeySource) -> Result<Vec<u8>, StartError> {
    use base64::{Engine as _, engine::general_purpose::STANDARD};
    let problem = |what: String| StartError::Setup(format!("dpop.nonce_secret: {what}"));
    let text = source.read().map_err(problem)?;
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| problem("not base64".to_owned()))?;
    if bytes.len() < 32 {
        return Err(problem("must be at least 32 bytes".to_owned()));
    }
    Ok(bytes)
}

/// Every configured issuer's policy (rules and key set, not fetched yet)
/// and its OAuth client, by issuer.
fn issuers(config: &Config) -> Result<(HashMap<String, IssuerPolicy>, IssuerClients), StartError> {
    let client = reqwest::Client::builder()
        .timeout(config.jwks.fetch_timeout())
        .connect_timeout(config.jwks.fetch_timeout())
        .user_agent(concat!("authd/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let mut policies = HashMap::new();
    let mut clients = HashMap::new();
    for (index, issuer) in config.issuers.iter().enumerate() {
        let issuer_client =
            Arc::new(IssuerClient::new(client.clone(), issuer).map_err(|source| {
                StartError::Issuer {
                    index,
                    problem: source,
                }
            })?);
        let keys = IssuerKeys::new(
            issuer.issuer.as_str().into(),
            issuer.algorithms.clone(),
            Box::new(SharedClient(Arc::clone(&issuer_client))),
            config.jwks.clone(),
        );
        policies.insert(issuer.issuer.clone(), IssuerPolicy::new(issuer, keys));
        clients.insert(issuer.issuer.clone(), issuer_client);
    }
    Ok((policies, clients))
}

/// Fetches every issuer's key set once, together. An issuer that is down is
/// logged, not fatal: its tokens are refused until its keys can be fetched.
async fn fetch_key_sets(verifier: &Verifier, config: &Config) {
    let first_fetch = config.jwks.fetch_timeout() * 2;
    let fetches = verifier.issuers().map(|p| {
        let keys = Arc::clone(p.keys());
        async move { (keys.issuer().clone(), keys.refresh_now(first_fetch).await) }
    });
    for (issuer, ok) in futures_util::future::join_all(fetches).await {
        if !ok {
            tracing::warn!(%issuer, "no key set at start-up; tokens of this issuer are refused until it can be fetched");
        }
    }
}

/// Lets one [`IssuerClient`] serve both the key set and userinfo.
struct SharedClient(Arc<IssuerClient>);

impl FetchKeys for SharedClient {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<Jwk>, FetchError>> {
        self.0.fetch()
    }
}

/// Probes the store and sets the health status on a change: NOT_SERVING
/// while it cannot be reached, SERVING again once it answers.
async fn probe_store(store: &dyn Store, health: &HealthReporter, was: Option<bool>) -> bool {
    let serving = match store.ping().await {
        Ok(()) => true,
        Err(error) => {
            if was != Some(false) {
                tracing::warn!(%error, "store unreachable: health NOT_SERVING");
            }
            false
        }
    };
    metrics::gauge!("authd_store_up").set(f64::from(u8::from(serving)));
    if was != Some(serving) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        health.set_service_status("", status).await;
        health.set_service_status(SERVICE_NAME, status).await;
        if serving && was.is_some() {
            tracing::info!("store reachable again: health SERVING");
        }
    }
    serving
}

/// The gRPC name of the service, as health and reflection know it.
const SERVICE_NAME: &str = "auth.v1.AuthService";

/// Serves `app` on `listener` until `shutdown` completes, then lets in-flight
/// calls finish (at most `grace`).
pub async fn run(
    listener: TcpListener,
    app: App,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    // The first probe runs before serving, so the status is right from the
    // first call.
    let mut serving = probe_store(app.store.as_ref(), &health, None).await;
    let (store, reporter, every) = (Arc::clone(&app.store), health.clone(), app.store_probe);
    let probe = tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            serving = probe_store(store.as_ref(), &reporter, Some(serving)).await;
        }
    });

    let reflection = |builder: tonic_reflection::server::Builder<'static>| {
        builder
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // envoy.service.auth.v3.Authorization, for `grpcurl ... Check`.
            .register_encoded_file_descriptor_set(ENVOY_EXT_AUTHZ_DESCRIPTOR_SET)
            // google.rpc.ErrorInfo, so that grpcurl can decode error details.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            // Each reflection version lists both, whichever a client speaks.
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
            .include_reflection_service(false)
    };
    // Reflection streams its requests, so they are not read whole before
    // it: each of its messages is bounded here.
    let max_message = app.limits.max_message_bytes;
    let reflection_v1 = reflection(tonic_reflection::server::Builder::configure())
        .build_v1()
        .map_err(|e| StartError::Setup(format!("reflection: {e}")))?
        .max_decoding_message_size(max_message);
    let reflection_v1alpha = reflection(tonic_reflection::server::Builder::configure())
        .build_v1alpha()
        .map_err(|e| StartError::Setup(format!("reflection: {e}")))?
        .max_decoding_message_size(max_message);

    let service = AuthServiceImpl::new(
        Arc::clone(&app.verifier),
        Arc::clone(&app.profiles),
        Arc::clone(&app.sessions),
        Arc::clone(&app.watchers),
    );
    let ext_authz = ExtAuthzImpl::new(Arc::new(ExtAuthz::new(
        Arc::clone(&app.verifier),
        app.ext_authz.clone(),
    )));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let health_on_stop = health.clone();
    let watchers = Arc::clone(&app.watchers);
    tokio::spawn(async move {
        shutdown.await;
        // Revocation watchers resume on another replica rather than hold
        // the shutdown to its grace.
        watchers.close();
        // Load balancers stop sending before the listener closes.
        probe.abort();
        health_on_stop
            .set_service_status("", ServingStatus::NotServing)
            .await;
        health_on_stop
            .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
            .await;
        let _ = stop_tx.send(());
    });

    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Setup(e.to_string()))?;
    transport::check_plaintext(&app.listener, addr).map_err(StartError::Setup)?;
    if !app.policy.is_on() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "no [[callers]] configured: every RPC is open to whoever can connect (see the README: Production)");
    }
    let routes = Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AuthServiceServer::new(service).max_decoding_message_size(max_message))
        .add_service(AuthorizationServer::new(ext_authz).max_decoding_message_size(max_message));
    // One layer around every service of the port decides who may call what.
    let policy = PolicyLayer::new(app.policy.clone(), Arc::clone(&app.verifier));
    let routes = transport::Routes {
        grpc: Routes::from(routes.into_axum_router().layer(policy)).prepare(),
        http: crate::logout::http::router(
            Arc::clone(&app.logouts),
            Arc::clone(&app.account_events),
        ),
        protocols: crate::connect::Protocols::new(&app.listener, &app.limits)
            .map_err(StartError::Setup)?,
    };
    let reloader = app.tls.as_ref().map(transport::Tls::spawn_reloader);
    tracing::info!(%addr, workers = app.workers, tls = app.tls.is_some(), callers_policy = app.policy.is_on(), "authd serving gRPC");
    let stop = async {
        let _ = stop_rx.await;
        tracing::info!("shutting down: finishing in-flight calls");
    };
    let served = transport::serve(
        listener,
        routes,
        &app.limits,
        app.tls.clone(),
        app.workers,
        stop,
        grace,
    )
    .await;
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    served?;
    tracing::info!("authd stopped");
    Ok(())
}
