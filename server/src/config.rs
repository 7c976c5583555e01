//! Typed configuration: a TOML file overridden by `AUTHD_*` environment
//! variables (`AUTHD_SERVER__LISTEN=127.0.0.1:6000`; nested keys are joined
//! with `__`). Every default is documented on its field.

use std::{net::SocketAddr, path::Path, time::Duration};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::jwks::Algorithm;

/// The whole configuration of one authd process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The gRPC listener.
    #[serde(default)]
    pub server: ServerConfig,
    /// The issuers whose tokens are accepted. At least one is needed to serve.
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    /// Token verification limits.
    #[serde(default)]
    pub verify: VerifyConfig,
    /// How key sets are fetched and kept.
    #[serde(default)]
    pub jwks: JwksConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The address the gRPC server listens on. Defaults to `127.0.0.1:50051`.
    pub listen: SocketAddr,
    /// How long in-flight requests may take to finish after SIGTERM.
    /// Defaults to `10`.
    pub shutdown_grace_seconds: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            shutdown_grace_seconds: 10,
        }
    }
}

/// One `[[issuers]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The exact `iss` of its tokens, e.g. `https://TENANT.auth0.com/` (Auth0
    /// ends it with a slash). Compared byte for byte. Required.
    pub issuer: String,
    /// The accepted audiences (`aud`), e.g. the Auth0 API identifier. A token
    /// must carry at least one. Required, not empty.
    pub audiences: Vec<String>,
    /// The key set's URL. Defaults to the `jwks_uri` found by OIDC discovery at
    /// `{issuer}.well-known/openid-configuration`.
    #[serde(default)]
    pub jwks_uri: Option<Url>,
    /// The signature algorithms accepted from this issuer. Defaults to
    /// `["RS256"]`. Supported: RS256, RS384, RS512, PS256, PS384, PS512, ES256,
    /// ES384, EdDSA.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`. Defaults to `30`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
}

fn default_algorithms() -> Vec<Algorithm> {
    vec![Algorithm::RS256]
}

fn default_leeway() -> u64 {
    30
}

/// `[verify]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    /// Tokens longer than this are refused before any parsing. Defaults to
    /// `8192`.
    pub max_token_bytes: usize,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            max_token_bytes: 8192,
        }
    }
}

/// `[jwks]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwksConfig {
    /// How often key sets are refreshed in the background. Defaults to `300`.
    pub refresh_interval_seconds: u64,
    /// The least time between two fetches of one issuer's key set, which bounds
    /// refetches triggered by unknown `kid`s. Defaults to `10`.
    pub min_refetch_interval_seconds: u64,
    /// How long a `kid` that a fresh key set did not hold is refused without
    /// another fetch. Defaults to `60`.
    pub unknown_kid_ttl_seconds: u64,
    /// How long the last good key set keeps serving after it could no longer be
    /// refreshed. Defaults to `86400` (a day).
    pub max_stale_seconds: u64,
    /// Timeout of one HTTP fetch (discovery or key set). Defaults to `5000`.
    pub fetch_timeout_ms: u64,
    /// The longest a verification waits for a key set fetch; past it the
    /// request fails and the fetch goes on. Defaults to `1000`.
    pub request_wait_ms: u64,
}

impl Default for JwksConfig {
    fn default() -> Self {
        JwksConfig {
            refresh_interval_seconds: 300,
            min_refetch_interval_seconds: 10,
            unknown_kid_ttl_seconds: 60,
            max_stale_seconds: 86_400,
            fetch_timeout_ms: 5_000,
            request_wait_ms: 1_000,
        }
    }
}

impl JwksConfig {
    /// The background refresh period.
    pub fn refresh_interval(&self) -> Duration {
        Duration::from_secs(self.refresh_interval_seconds)
    }
    /// The least time between two fetches of one key set.
    pub fn min_refetch_interval(&self) -> Duration {
        Duration::from_secs(self.min_refetch_interval_seconds)
    }
    /// How long an unknown `kid` is remembered.
    pub fn unknown_kid_ttl(&self) -> Duration {
        Duration::from_secs(self.unknown_kid_ttl_seconds)
    }
    /// How long a key set serves after its last successful fetch.
    pub fn max_stale(&self) -> Duration {
        Duration::from_secs(self.max_stale_seconds)
    }
    /// The timeout of one HTTP fetch.
    pub fn fetch_timeout(&self) -> Duration {
        Duration::from_millis(self.fetch_timeout_ms)
    }
    /// The longest a request waits on a fetch.
    pub fn request_wait(&self) -> Duration {
        Duration::from_millis(self.request_wait_ms)
    }
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `pretty` or `json`. Defaults to `pretty`.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `authd=debug`; `RUST_LOG` wins
    /// when set. Defaults to `info`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Pretty,
            filter: "info".to_owned(),
        }
    }
}

/// The log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// A configuration that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable does not parse or has an unknown key.
    #[error("configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    /// A value parses but cannot be used.
    #[error("configuration: {key}: {problem}")]
    Invalid {
        /// The key, e.g. `issuers[0].audiences`.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

impl Config {
    /// Loads the defaults, then `file` (when given), then `AUTHD_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid {
                    key: "--config".to_owned(),
                    problem: format!("{} does not exist", file.display()),
                });
            }
            figment = figment.merge(Toml::file(file));
        }
        Self::from_figment(figment.merge(env_provider()))
    }

    /// Parses a TOML document (defaults first, no environment): for tests and
    /// tools.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::from_figment(
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text)),
        )
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot: URLs, empty lists, duplicates.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, problem: &str| ConfigError::Invalid {
            key,
            problem: problem.to_owned(),
        };
        for (i, issuer) in self.issuers.iter().enumerate() {
            let url = Url::parse(&issuer.issuer)
                .map_err(|e| invalid(format!("issuers[{i}].issuer"), &format!("not a URL: {e}")))?;
            if !matches!(url.scheme(), "https" | "http") {
                return Err(invalid(
                    format!("issuers[{i}].issuer"),
                    "must be an https URL",
                ));
            }
            if issuer.audiences.is_empty() || issuer.audiences.iter().any(String::is_empty) {
                return Err(invalid(
                    format!("issuers[{i}].audiences"),
                    "must list at least one non-empty audience",
                ));
            }
            if issuer.algorithms.is_empty() {
                return Err(invalid(
                    format!("issuers[{i}].algorithms"),
                    "must not be empty",
                ));
            }
            if self.issuers[..i]
                .iter()
                .any(|other| other.issuer == issuer.issuer)
            {
                return Err(invalid(
                    format!("issuers[{i}].issuer"),
                    "is configured twice",
                ));
            }
        }
        if self.verify.max_token_bytes < 64 {
            return Err(invalid(
                "verify.max_token_bytes".to_owned(),
                "must be at least 64",
            ));
        }
        if self.jwks.refresh_interval_seconds == 0 {
            return Err(invalid(
                "jwks.refresh_interval_seconds".to_owned(),
                "must be positive",
            ));
        }
        Ok(())
    }
}

impl IssuerConfig {
    /// Where OIDC discovery is read: `{issuer}/.well-known/openid-configuration`
    /// with exactly one slash between.
    pub fn discovery_url(&self) -> Result<Url, url::ParseError> {
        let base = self.issuer.trim_end_matches('/');
        Url::parse(&format!("{base}/.well-known/openid-configuration"))
    }
}

fn env_provider() -> Env {
    // AUTHD_CONFIG names the file itself (see the CLI), so it is not a key.
    Env::prefixed("AUTHD_").ignore(&["CONFIG"]).split("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [[issuers]]
        issuer = "https://tenant.example.auth0.com/"
        audiences = ["https://api.example.com"]
    "#;

    #[test]
    fn minimal_config_takes_documented_defaults() {
        let config = Config::from_toml(MINIMAL).expect("valid");
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(config.verify.max_token_bytes, 8192);
        assert_eq!(config.issuers[0].algorithms, vec![Algorithm::RS256]);
        assert_eq!(config.issuers[0].leeway_seconds, 30);
        assert_eq!(
            config.issuers[0].discovery_url().expect("url").as_str(),
            "https://tenant.example.auth0.com/.well-known/openid-configuration"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n")
            .expect_err("unknown key");
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn missing_issuer_is_named() {
        let err = Config::from_toml("[[issuers]]\naudiences = [\"a\"]\n").expect_err("missing");
        assert!(err.to_string().contains("issuer"), "{err}");
    }

    #[test]
    fn bad_url_is_named() {
        let err = Config::from_toml("[[issuers]]\nissuer = \"not a url\"\naudiences = [\"a\"]\n")
            .expect_err("bad url");
        assert!(err.to_string().contains("issuers[0].issuer"), "{err}");
    }

    #[test]
    fn unsupported_algorithm_is_refused() {
        let text = format!("{MINIMAL}algorithms = [\"HS256\"]\n");
        let err = Config::from_toml(&text).expect_err("HS256 refused");
        assert!(err.to_string().contains("HS256"), "{err}");
    }

    #[test]
    fn empty_audiences_are_refused() {
        let err = Config::from_toml("[[issuers]]\nissuer = \"https://a/\"\naudiences = []\n")
            .expect_err("empty");
        assert!(err.to_string().contains("issuers[0].audiences"), "{err}");
    }
}
