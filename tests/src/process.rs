//! The real `authd` binary as a separate process, so that tests can watch
//! what it costs the machine (resident memory, file descriptors, threads)
//! and read what it logged.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use tokio::process::{Child, Command};

use crate::{authd_binary, free_port, wait_for_port};

/// `authd serve` on a loopback port with the embedded store in a temporary
/// directory; killed when dropped.
#[derive(Debug)]
pub struct AuthdProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its process id.
    pub pid: u32,
    child: Child,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl AuthdProcess {
    /// Starts it with `toml` (issuers, limits, ...; without `[server]` or
    /// `[store]`, which this sets).
    pub async fn start(toml: &str) -> Result<AuthdProcess> {
        Self::start_with_env(toml, &[]).await
    }

    /// [`AuthdProcess::start`] with `env` set for the process (e.g.
    /// [`crate::Moto::env`], `AUTHD_*` overrides).
    pub async fn start_with_env(toml: &str, env: &[(&str, String)]) -> Result<AuthdProcess> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let config = dir.path().join("authd.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\npath = \"{}\"\n{toml}",
                dir.path().join("data").display()
            ),
        )?;
        let log = dir.path().join("authd.log");
        let child = Command::new(authd_binary()?)
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::OpenOptions::new().append(true).open(&log)?)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().context("authd exited at once")?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        wait_for_port(addr, Duration::from_secs(30)).await?;
        Ok(AuthdProcess {
            addr,
            pid,
            child,
            log,
            dir,
        })
    }

    /// The embedded store's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The configuration file it was started with.
    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("authd.toml")
    }

    /// Stops it (SIGKILL) and waits for it to exit.
    pub async fn stop(&mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// The `http://` URI for clients.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A new client (its own connection).
    pub async fn client(&self) -> Result<authd_client::AuthClient> {
        Ok(authd_client::AuthClient::connect(self.uri()).await?)
    }

    fn status(&self, field: &str) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no {field} in /proc/{}/status", self.pid))
    }

    /// Resident memory, in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        self.status("VmRSS:")
    }

    /// Threads.
    pub fn threads(&self) -> Result<u64> {
        self.status("Threads:")
    }

    /// Open file descriptors.
    pub fn fds(&self) -> Result<usize> {
        Ok(std::fs::read_dir(format!("/proc/{}/fd", self.pid))?.count())
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}
