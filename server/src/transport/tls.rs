//! TLS on the listener (`[server.tls]`), with rustls and the aws-lc-rs
//! provider: the server's certificate and, for mutual TLS, the CA that
//! client certificates chain to. The files are read again every few seconds
//! and on SIGHUP; a change that loads is used by the next handshake
//! (established connections keep theirs), one that does not is logged and
//! the previous configuration kept. A client certificate with more than one
//! SPIFFE ID, or none of the names a caller is known by, fails the
//! handshake.

use std::{
    fmt, io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use arc_swap::ArcSwap;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject},
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};
use tokio::{net::TcpStream, task::JoinHandle};
use tokio_rustls::server::TlsStream;

use crate::{
    callers::{Peer, identity},
    config::{ClientAuth, ServerConfig as ListenerConfig, TlsConfig},
};

/// How often the files are compared with the ones in use.
const POLL_EVERY: Duration = Duration::from_secs(2);

/// The listener's TLS configuration, swapped whole when its files change.
pub(crate) struct Tls {
    files: TlsConfig,
    current: ArcSwap<ServerConfig>,
    /// The bytes of the files in use, to notice a change.
    loaded: Mutex<Vec<u8>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

impl Tls {
    /// Loads `files`; an error here stops start-up.
    pub(crate) fn new(files: &TlsConfig) -> Result<Arc<Tls>, String> {
        let bytes = read(files)?;
        let config = build(files, &bytes)?;
        Ok(Arc::new(Tls {
            files: files.clone(),
            current: ArcSwap::from_pointee(config),
            loaded: Mutex::new(bytes.concat()),
        }))
    }

    /// Reads the files again; when they changed (or `forced`), builds a new
    /// configuration and uses it for the next handshakes. A file that does
    /// not load is logged and the configuration in use kept.
    pub(crate) fn reload(&self, forced: bool) {
        let bytes = match read(&self.files) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(%error, "server.tls: cannot read the files; keeping the certificates in use");
                return;
            }
        };
        let joined = bytes.concat();
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if !forced && *loaded == joined {
            return;
        }
        match build(&self.files, &bytes) {
            Ok(config) => {
                self.current.store(Arc::new(config));
                *loaded = joined;
                tracing::info!("server.tls: certificates reloaded; new handshakes use them");
            }
            Err(error) => {
                // Remembered, so that a broken file is logged once, not
                // every poll; a fixed one is loaded when it changes again.
                *loaded = joined;
                tracing::error!(%error, "server.tls: the new files do not load; keeping the certificates in use");
            }
        }
    }

    /// Polls the files every few seconds and reloads on SIGHUP.
    pub(crate) fn spawn_reloader(self: &Arc<Self>) -> JoinHandle<()> {
        let tls = Arc::clone(self);
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut every = tokio::time::interval(POLL_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                #[cfg(unix)]
                let forced = tokio::select! {
                    _ = every.tick() => false,
                    Some(()) = async {
                        match hangup.as_mut() {
                            Some(h) => h.recv().await,
                            None => std::future::pending().await,
                        }
                    } => true,
                };
                #[cfg(not(unix))]
                let forced = {
                    every.tick().await;
                    false
                };
                if forced {
                    tracing::info!("SIGHUP: reading server.tls files again");
                }
                let tls = Arc::clone(&tls);
                // File reads and key parsing stay off the async threads.
                let _ = tokio::task::spawn_blocking(move || tls.reload(forced)).await;
            }
        })
    }

    /// The TLS handshake on `tcp`, and the identity of the client's
    /// certificate when it presented one.
    pub(crate) async fn accept(
        &self,
        tcp: TcpStream,
    ) -> io::Result<(TlsStream<TcpStream>, Option<Peer>)> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.current.load_full());
        let stream = acceptor.accept(tcp).await?;
        let peer = match stream.get_ref().1.peer_certificates() {
            Some([leaf, ..]) => Some(Peer(Arc::new(
                identity::from_certificate(leaf).map_err(io::Error::other)?,
            ))),
            _ => None,
        };
        Ok((stream, peer))
    }
}

/// The certificate chain, key and client CA files, in that order.
fn read(files: &TlsConfig) -> Result<Vec<Vec<u8>>, String> {
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("server.tls.{key}: {}: {e}", path.display()))
    };
    let mut bytes = vec![
        read("cert_file", &files.cert_file)?,
        read("key_file", &files.key_file)?,
    ];
    if let Some(ca) = &files.client_ca_file {
        bytes.push(read("client_ca_file", ca)?);
    }
    Ok(bytes)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A rustls configuration from the files' bytes (see [`read`]).
fn build(files: &TlsConfig, bytes: &[Vec<u8>]) -> Result<ServerConfig, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes[0])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("server.tls.cert_file: {e}"))?;
    if chain.is_empty() {
        return Err("server.tls.cert_file: no PEM certificate".to_owned());
    }
    let key = PrivateKeyDer::from_pem_slice(&bytes[1])
        .map_err(|e| format!("server.tls.key_file: {e}"))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("server.tls: {e}"))?;
    let builder = match bytes.get(2) {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca) {
                let cert = cert.map_err(|e| format!("server.tls.client_ca_file: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("server.tls.client_ca_file: {e}"))?;
            }
            if roots.is_empty() {
                return Err("server.tls.client_ca_file: no PEM certificate".to_owned());
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = match files.client_auth.unwrap_or(ClientAuth::Require) {
                ClientAuth::Require => verifier,
                ClientAuth::Optional => verifier.allow_unauthenticated(),
            }
            .build()
            .map_err(|e| format!("server.tls.client_ca_file: {e}"))?;
            builder.with_client_cert_verifier(Arc::new(Named(verifier)))
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("server.tls: the key does not fit the certificate: {e}"))?;
    // h2 for gRPC and HTTP/2 clients; http/1.1 for Connect, gRPC-Web and
    // the logout endpoints from clients that speak only HTTP/1.1.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The WebPKI client verifier, which also refuses a certificate that names
/// no caller identity or several SPIFFE IDs.
#[derive(Debug)]
struct Named(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for Named {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.0.verify_client_cert(end_entity, intermediates, now)?;
        if let Err(error) = identity::from_certificate(end_entity) {
            tracing::info!(%error, "refusing a client certificate");
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Whether `listen` may serve without TLS: on loopback always; elsewhere
/// only with `[server] insecure_plaintext = true`, which is logged loudly.
pub(crate) fn check_plaintext(server: &ListenerConfig, listen: SocketAddr) -> Result<(), String> {
    if server.tls.is_some() || listen.ip().is_loopback() {
        return Ok(());
    }
    if server.insecure_plaintext {
        tracing::warn!(%listen, "INSECURE: serving plaintext gRPC on a non-loopback address (server.insecure_plaintext = true): tokens and session handles cross the network unencrypted unless a proxy or mesh terminates TLS in front of authd");
        return Ok(());
    }
    Err(format!(
        "configuration: server.tls: listening on {listen} (not loopback) needs [server.tls] cert_file and key_file, or [server] insecure_plaintext = true behind a proxy that terminates TLS"
    ))
}
