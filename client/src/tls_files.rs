//! TLS to authd from files — the CA, and the client certificate and key for
//! mutual TLS — read again when they change, for workload certificates
//! (SPIFFE SVIDs) that rotate hourly. The channel is a balanced one whose
//! endpoints are replaced by ones with the new files; calls in flight finish
//! on their connection, new calls use a new handshake.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tonic::{
    Code,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, channel::Change},
};

use crate::AuthError;

/// Where the client's TLS files are, for
/// [`AuthClientBuilder::tls_files`](crate::AuthClientBuilder::tls_files).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    ca_file: PathBuf,
    domain: String,
    identity: Option<(PathBuf, PathBuf)>,
    poll_every: Duration,
}

impl TlsFiles {
    /// Trust the CA certificates (PEM) in `ca_file`, for a server named
    /// `domain` (its certificate's DNS name).
    pub fn new(ca_file: impl Into<PathBuf>, domain: impl Into<String>) -> Self {
        TlsFiles {
            ca_file: ca_file.into(),
            domain: domain.into(),
            identity: None,
            poll_every: Duration::from_secs(5),
        }
    }

    /// Present the certificate chain in `cert_file` with the key in
    /// `key_file` (PEM): mutual TLS.
    pub fn identity(mut self, cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        self.identity = Some((cert_file.into(), key_file.into()));
        self
    }

    /// How often the files are compared with the ones in use. Defaults to
    /// 5 s.
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll_every = every.max(Duration::from_millis(100));
        self
    }

    /// The files' bytes: CA, then certificate and key when set.
    fn read(&self) -> Result<Vec<Vec<u8>>, AuthError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| {
                AuthError::local(Code::InvalidArgument, format!("{}: {e}", path.display()))
            })
        };
        let mut bytes = vec![read(&self.ca_file)?];
        if let Some((cert, key)) = &self.identity {
            bytes.push(read(cert)?);
            bytes.push(read(key)?);
        }
        Ok(bytes)
    }

    fn config(&self, bytes: &[Vec<u8>]) -> ClientTlsConfig {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&bytes[0]))
            .domain_name(self.domain.clone());
        if let [_, cert, key] = bytes {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        tls
    }
}

/// A channel to `endpoints` with TLS from `files`, rebuilt when they
/// change. Must be called inside a Tokio runtime.
pub(crate) fn channel(endpoints: Vec<Endpoint>, files: TlsFiles) -> Result<Channel, AuthError> {
    let bytes = files.read()?;
    let with = move |tls: ClientTlsConfig| -> Result<Vec<Endpoint>, AuthError> {
        endpoints
            .iter()
            .map(|e| Ok(e.clone().tls_config(tls.clone())?))
            .collect()
    };
    let first = with(files.config(&bytes))?;
    let (channel, changes) = Channel::balance_channel::<(usize, u64)>(first.len().max(1) * 2);
    for (i, endpoint) in first.into_iter().enumerate() {
        // The channel's queue has room for all of them.
        let _ = changes.try_send(Change::Insert((i, 0), endpoint));
    }
    tokio::spawn(async move {
        let (mut loaded, mut generation) = (bytes, 0u64);
        let mut every = tokio::time::interval(files.poll_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            every.tick().await;
            if changes.is_closed() {
                return; // the client is gone
            }
            let bytes = match files.read() {
                Ok(bytes) if bytes != loaded => bytes,
                Ok(_) => continue,
                Err(error) => {
                    tracing::warn!(%error, "authd client: cannot read the TLS files; keeping the ones in use");
                    continue;
                }
            };
            let fresh = match with(files.config(&bytes)) {
                Ok(fresh) => fresh,
                Err(error) => {
                    tracing::warn!(%error, "authd client: the new TLS files do not load; keeping the ones in use");
                    loaded = bytes;
                    continue;
                }
            };
            generation += 1;
            for (i, endpoint) in fresh.into_iter().enumerate() {
                // Insert the new one first, so that a call always has an
                // endpoint to go to.
                if changes
                    .send(Change::Insert((i, generation), endpoint))
                    .await
                    .is_err()
                    || changes
                        .send(Change::Remove((i, generation - 1)))
                        .await
                        .is_err()
                {
                    return;
                }
            }
            loaded = bytes;
            tracing::info!("authd client: TLS files changed; new connections use them");
        }
    });
    Ok(channel)
}
