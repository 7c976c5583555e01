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
    /// Where profiles and sessions are kept.
    #[serde(default)]
    pub store: StoreConfig,
    /// Keys that encrypt secrets at rest.
    #[serde(default)]
    pub secrets: SecretsConfig,
    /// GetProfile.
    #[serde(default)]
    pub profiles: ProfilesConfig,
    /// Sessions and revocation.
    #[serde(default)]
    pub sessions: SessionsConfig,
}

/// `[sessions]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// How long a session lives without being refreshed. Defaults to
    /// `2592000` (30 days).
    pub lifetime_seconds: u64,
    /// A session refreshed this recently (on any replica) answers with its
    /// stored access token instead of spending the refresh token again.
    /// Defaults to `10`.
    pub reuse_access_token_seconds: u64,
    /// How long a replica holds a session while it refreshes it; longer than
    /// the issuer's timeout. Defaults to `20`.
    pub lease_seconds: u64,
    /// How often every replica reads new revocations from the store: the
    /// bound on how long a revoked session's tokens still verify elsewhere.
    /// Defaults to `1000`.
    pub revocation_poll_ms: u64,
    /// How long revocations are kept: at least the longest access token
    /// lifetime. Defaults to `86400`.
    pub revocation_ttl_seconds: u64,
    /// The permission a service token needs to revoke every session of a
    /// user. Defaults to `sessions:revoke`.
    pub trusted_permission: String,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            lifetime_seconds: 30 * 86_400,
            reuse_access_token_seconds: 10,
            lease_seconds: 20,
            revocation_poll_ms: 1_000,
            revocation_ttl_seconds: 86_400,
            trusted_permission: "sessions:revoke".to_owned(),
        }
    }
}

/// The sections of [`Config`], which `AUTHD_*` variables may override.
const SECTIONS: [&str; 8] = [
    "server", "issuers", "verify", "jwks", "log", "store", "secrets", "profiles",
];

/// The most `[server] threads` accepted: a typo must not start a million
/// threads.
const MAX_THREADS: usize = 1024;

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The address the gRPC server listens on. Defaults to `127.0.0.1:50051`.
    pub listen: SocketAddr,
    /// How long in-flight requests may take to finish after SIGTERM.
    /// Defaults to `10`.
    pub shutdown_grace_seconds: u64,
    /// Threads serving calls, each with its own connections (thread per
    /// core). Defaults to `0`: one per core authd may run on.
    pub threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            shutdown_grace_seconds: 10,
            threads: 0,
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
    /// The userinfo endpoint. Defaults to discovery's `userinfo_endpoint`.
    #[serde(default)]
    pub userinfo_uri: Option<Url>,
    /// The OAuth client authd uses for sessions (code exchange, refresh,
    /// revocation, device login). Without it this issuer's tokens are only
    /// verified.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The client's secret, from `{ env = "VAR" }`, `{ file = "PATH" }` or
    /// `{ value = "..." }`. Never logged.
    #[serde(default)]
    pub client_secret: Option<KeySource>,
    /// The token endpoint. Defaults to discovery's `token_endpoint`.
    #[serde(default)]
    pub token_uri: Option<Url>,
    /// The revocation endpoint. Defaults to discovery's
    /// `revocation_endpoint`, else `{issuer}oauth/revoke` (Auth0).
    #[serde(default)]
    pub revocation_uri: Option<Url>,
    /// The device authorization endpoint. Defaults to discovery's
    /// `device_authorization_endpoint`.
    #[serde(default)]
    pub device_authorization_uri: Option<Url>,
    /// Timeout of one call to the token, revocation or device endpoints.
    /// Defaults to `5000`.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
}

fn default_request_timeout() -> u64 {
    5_000
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
    /// Verified tokens cached at most (0 turns the cache off). A hit skips
    /// the signature check only. Defaults to `100000`.
    pub cache_max_entries: usize,
    /// The cache's memory bound, in bytes (estimated). Defaults to
    /// `67108864` (64 MiB).
    pub cache_max_bytes: u64,
    /// The longest a verification is cached, however long the token lives.
    /// Defaults to `300`.
    pub cache_max_ttl_seconds: u64,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            max_token_bytes: 8192,
            cache_max_entries: 100_000,
            cache_max_bytes: 64 << 20,
            cache_max_ttl_seconds: 300,
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

/// `[store]`: one config line (`kind`) switches between the stores.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `embedded` or `dynamodb`. Defaults to `embedded`.
    pub kind: StoreKind,
    /// Embedded: the data directory; the database is `authd.redb` inside.
    /// Defaults to `./data`.
    pub path: std::path::PathBuf,
    /// DynamoDB: the table. Defaults to `authd`.
    pub table: String,
    /// DynamoDB: the region. Defaults to the AWS chain's, else `us-east-1`.
    pub region: Option<String>,
    /// DynamoDB: an endpoint such as `http://127.0.0.1:8000` for a local
    /// server. Defaults to AWS's.
    pub endpoint_url: Option<String>,
    /// DynamoDB: attempts per operation (with exponential back-off) before
    /// answering UNAVAILABLE. Defaults to `3`.
    pub max_attempts: u32,
    /// DynamoDB: the time one operation may take, retries included. Defaults
    /// to `3000`.
    pub operation_timeout_ms: u64,
    /// How often the store is probed for the health status. Defaults to `5`.
    pub health_interval_seconds: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Embedded,
            path: std::path::PathBuf::from("data"),
            table: "authd".to_owned(),
            region: None,
            endpoint_url: None,
            max_attempts: 3,
            operation_timeout_ms: 3_000,
            health_interval_seconds: 5,
        }
    }
}

/// Which store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A single-file embedded database (redb).
    Embedded,
    /// Amazon DynamoDB (or a compatible server).
    Dynamodb,
}

/// `[secrets]`: AES-256 keys for secrets at rest. The first key (or
/// `primary_key_id`) seals; every listed key opens, so a key is rotated by
/// adding the new one first and removing the old one later.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// The key that seals new values. Defaults to the first key.
    pub primary_key_id: Option<String>,
    /// The keys, each 32 bytes in standard base64.
    pub keys: Vec<SecretKeyConfig>,
}

/// One `[[secrets.keys]]` entry: an id and where the key comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyConfig {
    /// Recorded beside every value it seals.
    pub id: String,
    /// Where the key is read from.
    #[serde(flatten)]
    pub source: KeySource,
}

impl KeySource {
    /// Reads the value.
    pub fn read(&self) -> Result<String, String> {
        match self {
            KeySource::Env(var) => {
                std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))
            }
            KeySource::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
            KeySource::Value(value) => Ok(value.clone()),
        }
    }
}

/// Where a key comes from; never from code.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// An environment variable holding the base64 key.
    Env(String),
    /// A file holding the base64 key.
    File(std::path::PathBuf),
    /// The base64 key itself (prefer `env` or `file`).
    Value(String),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Env(var) => write!(f, "Env({var})"),
            KeySource::File(path) => write!(f, "File({})", path.display()),
            KeySource::Value(_) => f.write_str("Value(…)"),
        }
    }
}

/// `[profiles]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfilesConfig {
    /// A stored profile older than this is refreshed from the issuer's
    /// userinfo when the user asks with an access token. Defaults to `3600`.
    pub max_age_seconds: u64,
    /// The permission (or scope) a service token must carry to read any
    /// user's profile by id. Defaults to `profiles:read`.
    pub trusted_permission: String,
    /// Timeout of one userinfo call. Defaults to `5000`.
    pub userinfo_timeout_ms: u64,
}

impl Default for ProfilesConfig {
    fn default() -> Self {
        ProfilesConfig {
            max_age_seconds: 3_600,
            trusted_permission: "profiles:read".to_owned(),
            userinfo_timeout_ms: 5_000,
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
        if self.server.threads > MAX_THREADS {
            return Err(invalid(
                "server.threads".to_owned(),
                &format!("must be at most {MAX_THREADS} (0: one per core)"),
            ));
        }
        if self.verify.max_token_bytes < 64 {
            return Err(invalid(
                "verify.max_token_bytes".to_owned(),
                "must be at least 64",
            ));
        }
        if self.store.kind == StoreKind::Dynamodb && self.store.table.is_empty() {
            return Err(invalid("store.table".to_owned(), "must not be empty"));
        }
        if self.store.max_attempts == 0 {
            return Err(invalid(
                "store.max_attempts".to_owned(),
                "must be at least 1",
            ));
        }
        if let Some(primary) = &self.secrets.primary_key_id
            && !self.secrets.keys.iter().any(|k| &k.id == primary)
        {
            return Err(invalid(
                "secrets.primary_key_id".to_owned(),
                "names no key in secrets.keys",
            ));
        }
        for (i, key) in self.secrets.keys.iter().enumerate() {
            if key.id.is_empty() || key.id.contains('.') {
                return Err(invalid(
                    format!("secrets.keys[{i}].id"),
                    "must be non-empty without '.'",
                ));
            }
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
    /// An issuer with every optional key at its default.
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        IssuerConfig {
            issuer: issuer.into(),
            audiences,
            jwks_uri: None,
            algorithms: default_algorithms(),
            leeway_seconds: default_leeway(),
            userinfo_uri: None,
            client_id: None,
            client_secret: None,
            token_uri: None,
            revocation_uri: None,
            device_authorization_uri: None,
            request_timeout_ms: default_request_timeout(),
        }
    }

    /// Where OIDC discovery is read: `{issuer}/.well-known/openid-configuration`
    /// with exactly one slash between.
    pub fn discovery_url(&self) -> Result<Url, url::ParseError> {
        let base = self.issuer.trim_end_matches('/');
        Url::parse(&format!("{base}/.well-known/openid-configuration"))
    }
}

fn env_provider() -> Env {
    // Only variables naming a section are configuration: AUTHD_CONFIG names
    // the file itself, and secret keys may live in other AUTHD_* variables.
    Env::prefixed("AUTHD_")
        .filter(|key| {
            let section = key.as_str().split("__").next().unwrap_or_default();
            SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(section))
        })
        .split("__")
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
        assert_eq!(config.server.threads, 0);
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
    fn store_and_secrets_parse() {
        let text = format!(
            "{MINIMAL}[store]\nkind = \"dynamodb\"\ntable = \"t\"\nendpoint_url = \"http://127.0.0.1:8000\"\n\
             [[secrets.keys]]\nid = \"k2\"\nenv = \"MY_KEY\"\n[[secrets.keys]]\nid = \"k1\"\nfile = \"/k\"\n"
        );
        let config = Config::from_toml(&text).expect("valid");
        assert_eq!(config.store.kind, StoreKind::Dynamodb);
        assert!(matches!(config.secrets.keys[0].source, KeySource::Env(ref v) if v == "MY_KEY"));
        assert!(matches!(config.secrets.keys[1].source, KeySource::File(_)));
        assert!(!format!("{:?}", KeySource::Value("c2VjcmV0".to_owned())).contains("c2VjcmV0"));
    }

    #[test]
    fn too_many_threads_are_refused() {
        let text = format!("{MINIMAL}[server]\nthreads = 100000\n");
        let err = Config::from_toml(&text).expect_err("too many");
        assert!(err.to_string().contains("server.threads"), "{err}");
        let text = format!("{MINIMAL}[server]\nthreads = 4\n");
        assert_eq!(Config::from_toml(&text).expect("valid").server.threads, 4);
    }

    #[test]
    fn empty_audiences_are_refused() {
        let err = Config::from_toml("[[issuers]]\nissuer = \"https://a/\"\naudiences = []\n")
            .expect_err("empty");
        assert!(err.to_string().contains("issuers[0].audiences"), "{err}");
    }
}
