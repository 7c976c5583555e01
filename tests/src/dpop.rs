//! A DPoP client for the tests: a key pair, its thumbprint (`cnf.jkt`) and
//! fresh proofs (RFC 9449 §4.2), each with its own `jti`.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use authd::{dangerous::SigningKey, jwks::Algorithm, jwks::Jwk};
use aws_lc_rs::digest;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};

/// A client's DPoP key.
#[derive(Debug)]
pub struct DpopKey {
    key: SigningKey,
}

impl DpopKey {
    /// A fresh ES256 key.
    pub fn generate() -> Result<DpopKey> {
        Ok(DpopKey {
            key: SigningKey::generate(Algorithm::ES256, "dpop").context("ES256 key")?,
        })
    }

    /// Its RFC 7638 thumbprint, what a token bound to it carries as `cnf.jkt`.
    pub fn jkt(&self) -> Result<String> {
        let jwk: Jwk = serde_json::from_value(self.key.public_jwk())?;
        Ok(jwk.thumbprint()?)
    }

    /// The `cnf` claim binding a token to this key, as the issuer's `claims`
    /// knob takes it.
    pub fn cnf_claims(&self) -> Result<String> {
        Ok(json!({"cnf": {"jkt": self.jkt()?}}).to_string())
    }

    /// A fresh proof for `htm` `htu` with `token`, issued now.
    pub fn proof(&self, htm: &str, htu: &str, token: &str) -> String {
        self.proof_with(htm, htu, token, &[])
    }

    /// [`Self::proof`] with extra claims (`nonce`, or hostile ones).
    pub fn proof_with(&self, htm: &str, htu: &str, token: &str, extra: &[(&str, Value)]) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut claims = json!({
            "jti": format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)),
            "htm": htm,
            "htu": htu,
            "iat": now,
            "ath": URL_SAFE_NO_PAD
                .encode(digest::digest(&digest::SHA256, token.as_bytes()).as_ref()),
        });
        for (name, value) in extra {
            claims[*name] = value.clone();
        }
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.key.public_jwk()});
        self.key.sign_with_header(&header, &claims)
    }
}

/// base64url(SHA-256(`der`)): what a token bound to that certificate
/// carries as `cnf["x5t#S256"]`.
pub fn x5t_s256(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, der).as_ref())
}

/// The oidc-provider issuer of sender-constrained tokens
/// (`tests/issuer-dpop/issuer.js`) on loopback, stopped when dropped.
#[derive(Debug)]
pub struct DpopIssuer {
    /// Its `iss`, with the trailing slash.
    pub url: String,
    _child: tokio::process::Child,
}

/// What `tests/issuer-dpop/mint.js` answers.
#[derive(Debug, serde::Deserialize)]
pub struct Minted {
    /// The access token.
    pub access_token: String,
    /// `DPoP` or `Bearer`.
    pub token_type: String,
    /// DPoP: the key's thumbprint.
    #[serde(default)]
    pub jkt: Option<String>,
    /// DPoP: fresh proofs made by npm `dpop` for the request asked.
    #[serde(default)]
    pub proofs: Vec<String>,
}

impl DpopIssuer {
    /// Starts it (on a port it picks itself) and waits for its READY line.
    pub async fn start() -> Result<DpopIssuer> {
        use tokio::io::AsyncBufReadExt as _;
        let dir = crate::workspace().join("tests/issuer-dpop");
        anyhow::ensure!(
            dir.join("node_modules/oidc-provider").exists(),
            "tests/issuer-dpop has no node_modules: run `npm ci --prefix tests/issuer-dpop` (tests/run does)"
        );
        let mut child = tokio::process::Command::new("node")
            .arg(dir.join("issuer.js"))
            .args(["--port", "0", "--audience", crate::AUDIENCE])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting node tests/issuer-dpop/issuer.js")?;
        let stdout = child.stdout.take().context("issuer stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let url = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("READY ") {
                    return Ok::<_, anyhow::Error>(url.trim().to_owned());
                }
            }
            anyhow::bail!("issuer-dpop exited before READY")
        })
        .await
        .context("issuer-dpop did not print READY within 30 s")??;
        Ok(DpopIssuer { url, _child: child })
    }

    /// Posts `body` to its control route `/__control/<what>` (login, logout,
    /// backchannel-logout-uri: tests/issuer-dpop/README.md); the answer.
    pub async fn control(&self, what: &str, body: serde_json::Value) -> Result<serde_json::Value> {
        let response = reqwest::Client::new()
            .post(format!("{}__control/{what}", self.url))
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await?;
        anyhow::ensure!(
            status.is_success(),
            "/__control/{what} answered {status}: {answer}"
        );
        Ok(answer)
    }

    /// Refreshes at its token endpoint as `logout-app` does; the new access
    /// token.
    pub async fn refresh_logout_app(&self, refresh_token: &str) -> Result<String> {
        let response = reqwest::Client::new()
            .post(format!("{}token", self.url))
            .basic_auth("logout-app", Some("logout-secret"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .send()
            .await?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "refresh answered {status}: {answer}");
        answer["access_token"]
            .as_str()
            .map(str::to_owned)
            .context("no access_token")
    }

    /// authd's `[[issuers]]` entry for it.
    pub fn config_entry(&self) -> String {
        format!(
            "[[issuers]]\nissuer = {:?}\naudiences = [{:?}]\nalgorithms = [\"RS256\"]\n",
            self.url,
            crate::AUDIENCE
        )
    }

    /// A DPoP-bound token from its token endpoint and `proofs` fresh proofs
    /// by the same key for `htm` `htu`, made by npm `dpop` with `alg`.
    pub async fn mint_dpop(
        &self,
        htm: &str,
        htu: &str,
        proofs: usize,
        alg: &str,
    ) -> Result<Minted> {
        self.mint(&[
            "--kind",
            "dpop",
            "--htm",
            htm,
            "--htu",
            htu,
            "--proofs",
            &proofs.to_string(),
            "--alg",
            alg,
        ])
        .await
    }

    /// A token bound to the certificate in `cert_pem_file`.
    pub async fn mint_mtls(&self, cert_pem_file: &std::path::Path) -> Result<Minted> {
        let cert = cert_pem_file.to_string_lossy().into_owned();
        self.mint(&["--kind", "mtls", "--cert", &cert]).await
    }

    async fn mint(&self, args: &[&str]) -> Result<Minted> {
        let output = tokio::process::Command::new("node")
            .arg(crate::workspace().join("tests/issuer-dpop/mint.js"))
            .args(["--issuer", &self.url])
            .args(args)
            .output()
            .await
            .context("running mint.js")?;
        anyhow::ensure!(
            output.status.success(),
            "mint.js {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(serde_json::from_slice(&output.stdout)?)
    }
}
