//! Typed configuration: a TOML file overridden by `AUTHD_*` environment
//! variables (`AUTHD_SERVER__LISTEN=127.0.0.1:6000`; nested keys are joined
//! with `__`). Every default is documented on its field.

use std::path::Path;

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};
use url::Url;

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
    /// DPoP proofs: their window, the replay cache, server nonces.
    #[serde(default)]
    pub dpop: DpopConfig,
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
    /// WatchRevocations: heartbeats, bounds on watchers.
    #[serde(default)]
    pub watch: WatchConfig,
    /// Bounds on what clients control: connections, streams, calls,
    /// message sizes, timeouts.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Envoy's external authorization: header names and default policy.
    #[serde(default)]
    pub ext_authz: ExtAuthzConfig,
    /// The Prometheus and health listener (`[metrics]`); off by default.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// OpenTelemetry traces exported over OTLP (`[tracing]`); off by default.
    #[serde(default)]
    pub tracing: TracingConfig,
    /// Who may call which RPCs; none: every RPC open, as before.
    #[serde(default)]
    pub callers: Vec<CallerConfig>,
}

mod sections;

pub use sections::*;

/// The sections of [`Config`], which `AUTHD_*` variables may override.
const SECTIONS: [&str; 16] = [
    "server",
    "issuers",
    "verify",
    "jwks",
    "dpop",
    "log",
    "store",
    "secrets",
    "profiles",
    "sessions",
    "watch",
    "limits",
    "ext_authz",
    "metrics",
    "tracing",
    "callers",
];

/// The most `[server] threads` accepted: a typo must not start a million
/// threads.
const MAX_THREADS: usize = 1024;

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
        if !(1..=2).contains(&self.verify.cache_admit_after) {
            return Err(invalid(
                "verify.cache_admit_after".to_owned(),
                "must be 1 (cache at the first verification) or 2 (at the second)",
            ));
        }
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
            if issuer.dpop_algorithms.is_empty() {
                return Err(invalid(
                    format!("issuers[{i}].dpop_algorithms"),
                    "must not be empty",
                ));
            }
            if let Some(bad) = issuer
                .token_types
                .iter()
                .find(|typ| authd_jose::typ::never_an_access_token(typ))
            {
                return Err(invalid(
                    format!("issuers[{i}].token_types"),
                    &format!("{bad:?} is never an access token"),
                ));
            }
            if issuer.token_types.is_empty() {
                return Err(invalid(
                    format!("issuers[{i}].token_types"),
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
        let limits = &self.limits;
        let positive = [
            ("limits.max_connections", limits.max_connections as u64),
            (
                "limits.max_concurrent_streams",
                u64::from(limits.max_concurrent_streams),
            ),
            (
                "limits.max_calls_in_flight",
                limits.max_calls_in_flight as u64,
            ),
            ("limits.handshake_timeout_ms", limits.handshake_timeout_ms),
            (
                "limits.keepalive_interval_seconds",
                limits.keepalive_interval_seconds,
            ),
            (
                "limits.keepalive_timeout_seconds",
                limits.keepalive_timeout_seconds,
            ),
            ("limits.request_timeout_ms", limits.request_timeout_ms),
            (
                "limits.request_body_timeout_ms",
                limits.request_body_timeout_ms,
            ),
            (
                "store.purge_interval_seconds",
                self.store.purge_interval_seconds,
            ),
            (
                "store.revocation_read_concurrency",
                self.store.revocation_read_concurrency as u64,
            ),
            ("dpop.max_age_seconds", self.dpop.max_age_seconds),
            (
                "dpop.replay_cache_max_entries",
                self.dpop.replay_cache_max_entries as u64,
            ),
            (
                "dpop.replay_cache_max_per_key",
                self.dpop.replay_cache_max_per_key as u64,
            ),
            ("dpop.nonce_window_seconds", self.dpop.nonce_window_seconds),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(invalid((*key).to_owned(), "must be positive"));
        }
        if limits.max_header_list_bytes < 1024 {
            return Err(invalid(
                "limits.max_header_list_bytes".to_owned(),
                "must be at least 1024",
            ));
        }
        // A token at the verify limit and a DPoP proof at its own must fit
        // in a VerifyToken message.
        if limits.max_verify_message_bytes
            < self.verify.max_token_bytes + authd_jose::dpop::MAX_PROOF_BYTES + 256
        {
            return Err(invalid(
                "limits.max_verify_message_bytes".to_owned(),
                "must exceed verify.max_token_bytes by at least 8448 (a DPoP proof and the rest)",
            ));
        }
        if limits.max_message_bytes < 4096 {
            return Err(invalid(
                "limits.max_message_bytes".to_owned(),
                "must be at least 4096",
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
        if !(1..=MAX_REVOCATION_SHARDS).contains(&self.store.revocation_shards) {
            return Err(invalid(
                "store.revocation_shards".to_owned(),
                &format!("must be 1 to {MAX_REVOCATION_SHARDS}"),
            ));
        }
        let bucket = self.store.revocation_bucket_seconds;
        if bucket == 0 || 86_400 % bucket != 0 {
            return Err(invalid(
                "store.revocation_bucket_seconds".to_owned(),
                "must divide a day (86400)",
            ));
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
        for (i, issuer) in self.issuers.iter().enumerate() {
            if let Some(logout) = &issuer.backchannel_logout {
                let at = |field: &str| format!("issuers[{i}].backchannel_logout.{field}");
                if logout.client_ids.is_empty() || logout.client_ids.iter().any(String::is_empty) {
                    return Err(invalid(
                        at("client_ids"),
                        "must name at least one client id",
                    ));
                }
                if logout.session_claim.is_empty() {
                    return Err(invalid(at("session_claim"), "must not be empty"));
                }
                if logout.max_per_second == 0 {
                    return Err(invalid(at("max_per_second"), "must be at least 1"));
                }
                if logout.max_age_seconds == 0 {
                    return Err(invalid(at("max_age_seconds"), "must be at least 1"));
                }
            }
        }
        if let Some(key) = &self.secrets.kms_key_id
            && !sections::valid_kms_key_id(key)
        {
            return Err(invalid(
                "secrets.kms_key_id".to_owned(),
                "must be a KMS key ARN, key id or alias (letters, digits, ':', '/', '_', '-')",
            ));
        }
        if let Some(tls) = &self.server.tls
            && tls.client_auth.is_some()
            && tls.client_ca_file.is_none()
        {
            return Err(invalid(
                "server.tls.client_auth".to_owned(),
                "needs server.tls.client_ca_file",
            ));
        }
        for (i, caller) in self.callers.iter().enumerate() {
            if caller.identities.is_empty() && caller.permission.is_none() {
                return Err(invalid(
                    format!("callers[{i}]"),
                    "needs identities or a permission",
                ));
            }
            if caller.rpcs.is_empty() {
                return Err(invalid(format!("callers[{i}].rpcs"), "must not be empty"));
            }
        }
        if self.jwks.refresh_interval_seconds == 0 {
            return Err(invalid(
                "jwks.refresh_interval_seconds".to_owned(),
                "must be positive",
            ));
        }
        if let Some((key, problem)) = self.ext_authz.problem() {
            return Err(invalid(format!("ext_authz.{key}"), problem));
        }
        Ok(())
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
    use crate::jwks::Algorithm;

    #[test]
    fn every_section_can_be_set_from_the_environment() {
        let defaults = serde_json::to_value(Config::default()).expect("serializes");
        let mut fields: Vec<&str> = defaults
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        let mut sections = SECTIONS.to_vec();
        sections.sort_unstable();
        assert_eq!(fields, sections);
    }

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
    fn revocation_layout_takes_documented_defaults_and_refuses_bad_values() {
        let store = Config::from_toml(MINIMAL).expect("valid").store;
        assert_eq!(store.revocation_shards, 16);
        assert_eq!(store.revocation_bucket_seconds, 3_600);
        assert_eq!(store.revocation_read_concurrency, 16);
        assert_eq!(store.legacy_revocations, LegacyRevocations::Read);
        for (line, key) in [
            ("revocation_shards = 0", "store.revocation_shards"),
            ("revocation_shards = 1001", "store.revocation_shards"),
            (
                "revocation_bucket_seconds = 0",
                "store.revocation_bucket_seconds",
            ),
            (
                "revocation_bucket_seconds = 7",
                "store.revocation_bucket_seconds",
            ),
            (
                "revocation_read_concurrency = 0",
                "store.revocation_read_concurrency",
            ),
        ] {
            let text = format!("{MINIMAL}[store]\n{line}\n");
            let err = Config::from_toml(&text).expect_err(line);
            assert!(err.to_string().contains(key), "{line}: {err}");
        }
        let text = format!(
            "{MINIMAL}[store]\nrevocation_shards = 1000\nrevocation_bucket_seconds = 86400\nlegacy_revocations = \"read-write\"\n"
        );
        let store = Config::from_toml(&text).expect("valid").store;
        assert_eq!(store.legacy_revocations, LegacyRevocations::ReadWrite);
        let text = format!("{MINIMAL}[store]\nlegacy_revocations = true\n");
        assert!(Config::from_toml(&text).is_err(), "read, read-write or off");
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
    fn limits_take_documented_defaults_and_refuse_zero() {
        let config = Config::from_toml(MINIMAL).expect("valid");
        assert_eq!(config.limits.max_concurrent_streams, 100);
        assert_eq!(config.limits.max_verify_message_bytes, 32768);
        assert_eq!(config.limits.handshake_timeout_ms, 10_000);
        let text = format!("{MINIMAL}[limits]\nmax_calls_in_flight = 0\n");
        let err = Config::from_toml(&text).expect_err("zero");
        assert!(
            err.to_string().contains("limits.max_calls_in_flight"),
            "{err}"
        );
        let text = format!("{MINIMAL}[verify]\nmax_token_bytes = 30000\n");
        let err = Config::from_toml(&text).expect_err("token cannot fit");
        assert!(
            err.to_string().contains("limits.max_verify_message_bytes"),
            "{err}"
        );
    }

    #[test]
    fn empty_audiences_are_refused() {
        let err = Config::from_toml("[[issuers]]\nissuer = \"https://a/\"\naudiences = []\n")
            .expect_err("empty");
        assert!(err.to_string().contains("issuers[0].audiences"), "{err}");
    }
}
