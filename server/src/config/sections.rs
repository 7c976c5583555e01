//! The sections of [`Config`](super::Config), each with its documented
//! defaults.

use std::{net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};
use url::Url;

use crate::jwks::Algorithm;

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
    /// Scopes every device login asks for besides the caller's, so that the
    /// id token fills the profile authd keeps. `openid` and `offline_access`
    /// are always asked for. Defaults to `["profile", "email"]`.
    pub device_login_scopes: Vec<String>,
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
            device_login_scopes: vec!["profile".to_owned(), "email".to_owned()],
        }
    }
}

/// `[watch]`: WatchRevocations, the stream of revocations to callers that
/// cache verification answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchConfig {
    /// How often a watcher hears a heartbeat carrying its cursor while no
    /// revocation comes. Defaults to `2000`.
    pub heartbeat_ms: u64,
    /// The most WatchRevocations streams served at once; one more is
    /// refused `RESOURCE_EXHAUSTED` (`TOO_MANY_WATCHERS`). Each holds one of
    /// `limits.max_calls_in_flight`. Defaults to `256`.
    pub max_watchers: usize,
    /// How many revocations a watcher may fall behind (they are held once
    /// for every watcher, not per watcher); one more ends it with
    /// `RESOURCE_EXHAUSTED` (`WATCHER_TOO_SLOW`). Defaults to `4096`.
    pub buffer: usize,
    /// The permission a service token needs to watch revocations (besides
    /// `[[callers]]` entries granting `WatchRevocations`); `""`: none.
    /// Defaults to `revocations:watch`.
    pub trusted_permission: String,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            heartbeat_ms: 2_000,
            max_watchers: 256,
            buffer: 4_096,
            trusted_permission: "revocations:watch".to_owned(),
        }
    }
}

impl WatchConfig {
    /// [`WatchConfig::heartbeat_ms`], at least 10 ms.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.max(10))
    }
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
    /// Threads serving calls, each with its own connections (thread per
    /// core). Defaults to `0`: one per core authd may run on.
    pub threads: usize,
    /// `[server.tls]`: TLS, and mutual TLS with `client_ca_file`. Defaults
    /// to none: plaintext, which only a loopback `listen` allows unless
    /// `insecure_plaintext` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Serve plaintext on a non-loopback address, for a mesh or proxy that
    /// terminates TLS in front of authd. Logged loudly. Defaults to `false`.
    pub insecure_plaintext: bool,
    /// Serve the Connect protocol on the same port: unary RPCs as `POST
    /// /<service>/<method>` with `application/json` (proto3 JSON) or
    /// `application/proto` bodies over HTTP/1.1 and HTTP/2, and
    /// server-streaming `WatchRevocations` as `application/connect+json` /
    /// `+proto`. Off: such requests are answered 415. Defaults to `true`.
    pub connect: bool,
    /// Serve gRPC-Web (`application/grpc-web`, `+proto`, `-text`) on the
    /// same port. Off: answered 415. Defaults to `true`.
    pub grpc_web: bool,
}

/// `[server.tls]`: the listener's certificate and, for mutual TLS, the CA
/// its clients' certificates chain to. The files are read again when they
/// change (checked every few seconds) and on SIGHUP; a file that does not
/// load is logged and the previous configuration kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM, leaf first.
    pub cert_file: std::path::PathBuf,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: std::path::PathBuf,
    /// CA certificates (PEM) that client certificates must chain to; set:
    /// mutual TLS. Defaults to none: no client certificates asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<std::path::PathBuf>,
    /// `require` (a handshake without a client certificate fails) or
    /// `optional` (callers without one identify with a service token).
    /// Defaults to `require` when `client_ca_file` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
}

/// Whether mutual TLS requires a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// A handshake without a valid client certificate fails.
    Require,
    /// A client may connect without a certificate; one it presents must be
    /// valid.
    Optional,
}

/// `[[callers]]`: who may call which RPCs. With no entry at all every RPC
/// is open to whoever can connect (as before callers existed); the first
/// entry turns the policy on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallerConfig {
    /// Caller identities: a SPIFFE ID (`spiffe://td/ns/x/sa/y`), or a
    /// SPIFFE prefix ending in `/` (`spiffe://td/` for a whole trust
    /// domain, `spiffe://td/ns/x/` for a path), `dns:<name>` and `cn:<name>`
    /// for other certificates, `token:<sub>` for a service token's subject.
    /// Defaults to none.
    pub identities: Vec<String>,
    /// A permission (or scope): a service token carrying it matches this
    /// entry whatever its subject. Defaults to none.
    pub permission: Option<String>,
    /// The RPCs granted, by full gRPC path (`/auth.v1.AuthService/CreateSession`);
    /// `/auth.v1.AuthService/GetProfile:user_id` and
    /// `/auth.v1.AuthService/RevokeSession:user_id` are the by-user-id
    /// variants; `*` is every RPC.
    pub rpcs: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            shutdown_grace_seconds: 10,
            threads: 0,
            tls: None,
            insecure_plaintext: false,
            connect: true,
            grpc_web: true,
        }
    }
}

/// `[limits]`: bounds on everything a client controls, so that no client
/// can exhaust authd's memory, file descriptors or calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Open connections per process. One more is closed as soon as it is
    /// accepted (logged). Defaults to `10000`; start-up raises the process's
    /// file-descriptor limit to fit, or stops if it cannot.
    pub max_connections: usize,
    /// Streams one HTTP/2 connection may have open at once, advertised in
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`; more are refused by HTTP/2.
    /// Defaults to `100`.
    pub max_concurrent_streams: u32,
    /// Calls in flight in the whole process; one more is answered
    /// `RESOURCE_EXHAUSTED` (`OVERLOADED`) at once instead of queueing.
    /// Defaults to `4096`.
    pub max_calls_in_flight: usize,
    /// The largest gRPC request message of VerifyToken (a token of
    /// `verify.max_token_bytes`, a DPoP proof of up to 8192 bytes, a client
    /// certificate and the scopes fit). Larger is `INVALID_ARGUMENT`
    /// (`REQUEST_TOO_LARGE`), refused before it is read. Defaults to
    /// `32768`.
    pub max_verify_message_bytes: usize,
    /// The largest gRPC request message of every other RPC. Defaults to
    /// `65536`.
    pub max_message_bytes: usize,
    /// The largest HTTP/2 header list of a request (all metadata),
    /// advertised in `SETTINGS_MAX_HEADER_LIST_SIZE`. Defaults to `16384`.
    pub max_header_list_bytes: u32,
    /// A connection that has not completed its TLS handshake, or sent the
    /// HTTP/2 preface and its SETTINGS, within this long is closed.
    /// Defaults to `10000`.
    pub handshake_timeout_ms: u64,
    /// A connection quiet for this long gets an HTTP/2 PING. Defaults to
    /// `30`.
    pub keepalive_interval_seconds: u64,
    /// A PING not acknowledged within this long closes the connection.
    /// Defaults to `10`.
    pub keepalive_timeout_seconds: u64,
    /// A connection with no call for this long is closed gracefully
    /// (GOAWAY); clients reconnect when they next call. Defaults to `300`;
    /// `0`: never.
    pub idle_timeout_seconds: u64,
    /// The longest a call may take, from its headers to its answer; a
    /// shorter `grpc-timeout` from the caller wins. Past it the call is
    /// `DEADLINE_EXCEEDED`. Defaults to `30000` (longer than a refresh that
    /// waits out another replica's lease).
    pub request_timeout_ms: u64,
    /// The longest a request message may take to arrive after the call's
    /// headers. Defaults to `5000`.
    pub request_body_timeout_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 10_000,
            max_concurrent_streams: 100,
            max_calls_in_flight: 4096,
            max_verify_message_bytes: 32 * 1024,
            max_message_bytes: 64 * 1024,
            max_header_list_bytes: 16 * 1024,
            handshake_timeout_ms: 10_000,
            keepalive_interval_seconds: 30,
            keepalive_timeout_seconds: 10,
            idle_timeout_seconds: 300,
            request_timeout_ms: 30_000,
            request_body_timeout_ms: 5_000,
        }
    }
}

impl LimitsConfig {
    /// `handshake_timeout_ms`.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    /// `request_timeout_ms`.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// `request_body_timeout_ms`.
    pub fn request_body_timeout(&self) -> Duration {
        Duration::from_millis(self.request_body_timeout_ms)
    }

    /// `idle_timeout_seconds`, `None` for never.
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_seconds > 0).then(|| Duration::from_secs(self.idle_timeout_seconds))
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
    /// The algorithms a DPoP proof presented with this issuer's tokens may be
    /// signed with (asymmetric only). Defaults to `["ES256", "ES384",
    /// "PS256", "RS256", "EdDSA"]`.
    #[serde(default = "default_dpop_algorithms")]
    pub dpop_algorithms: Vec<Algorithm>,
    /// The JOSE `typ` values accepted on this issuer's access tokens,
    /// compared without case and without an `application/` prefix. A token
    /// with no `typ` counts as `JWT`. Defaults to `["JWT", "at+jwt"]`;
    /// `["at+jwt"]` enforces RFC 9068: the `typ` and the claims `iss`, `exp`,
    /// `aud`, `sub`, `client_id`, `iat` and `jti` are required. Whatever this
    /// says, DPoP proofs, logout tokens and security event tokens (and any
    /// token with an `events` claim) are refused.
    #[serde(default = "default_token_types")]
    pub token_types: Vec<String>,
    /// `[issuers.backchannel_logout]`: this issuer's OpenID Connect
    /// back-channel logout tokens are received at `POST
    /// /backchannel-logout` on authd's port. Off when absent.
    #[serde(default)]
    pub backchannel_logout: Option<BackchannelLogoutConfig>,
    /// `[issuers.events]`: this issuer's account events (Auth0 Event
    /// Streams, webhook delivery) are received at `POST /events/auth0`.
    /// Off when absent.
    #[serde(default)]
    pub events: Option<AccountEventsConfig>,
}

/// `[issuers.events]`: Auth0 Event Streams' webhook delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountEventsConfig {
    /// The token the stream sends as `Authorization: Bearer …` (an env or
    /// file secret); it also tells which issuer the events are of.
    pub bearer_token: KeySource,
}

/// `[issuers.backchannel_logout]`: OpenID Connect Back-Channel Logout 1.0.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackchannelLogoutConfig {
    /// The `aud` values accepted: the OAuth clients (applications) whose
    /// back-channel logout URL points at authd. Required, not empty.
    pub client_ids: Vec<String>,
    /// The claim of access tokens holding the issuer's session id, which a
    /// logout's `sid` revokes. Defaults to `sid` (Auth0 access tokens carry
    /// none unless an Action copies the session id into a namespaced claim).
    #[serde(default = "default_session_claim")]
    pub session_claim: String,
    /// A logout token issued longer ago than this (by `iat`) is refused.
    /// Defaults to `120`.
    #[serde(default = "default_logout_max_age")]
    pub max_age_seconds: u64,
    /// Logout tokens taken from this issuer per second, with a burst of as
    /// many; more are answered 503 with `Retry-After` (the issuer retries).
    /// Defaults to `1000` (a storm of 10,000 logouts a minute is 167).
    #[serde(default = "default_logout_rate")]
    pub max_per_second: u32,
}

fn default_logout_rate() -> u32 {
    1000
}

fn default_session_claim() -> String {
    "sid".to_owned()
}

fn default_logout_max_age() -> u64 {
    120
}

fn default_dpop_algorithms() -> Vec<Algorithm> {
    authd_jose::dpop::DEFAULT_ALGORITHMS.to_vec()
}

fn default_token_types() -> Vec<String> {
    vec!["JWT".to_owned(), "at+jwt".to_owned()]
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
    /// The verification of a token that is cached: `2` (the default) caches
    /// a token when it is seen again, so tokens used once cost the cache
    /// nothing but a lookup in a fixed 512 KiB filter; `1` caches every
    /// verified token.
    pub cache_admit_after: u32,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            max_token_bytes: 8192,
            cache_max_entries: 100_000,
            cache_max_bytes: 64 << 20,
            cache_max_ttl_seconds: 300,
            cache_admit_after: 2,
        }
    }
}

/// `[dpop]`: sender-constrained tokens (RFC 9449).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpopConfig {
    /// How old a proof's `iat` may be. Defaults to `60`.
    pub max_age_seconds: u64,
    /// Clock skew allowed on a proof's `iat`, both ways. Defaults to `5`.
    pub leeway_seconds: u64,
    /// Proofs remembered at most per replica, to accept each `jti` once;
    /// each stays `max_age_seconds + 2 × leeway_seconds` at most (about 60
    /// bytes each). When full, new proofs are refused (`OVERLOADED`), never
    /// an entry forgotten early. Defaults to `2000000`.
    pub replay_cache_max_entries: usize,
    /// The share of the replay cache one DPoP key may hold; past it that
    /// key's proofs are refused (`RATE_LIMITED`) until its older ones expire.
    /// Defaults to `200000`.
    pub replay_cache_max_per_key: usize,
    /// Require a server nonce in every proof (RFC 9449 §8): a proof without a
    /// current one is refused with `DPOP_NONCE_REQUIRED` and the nonce to
    /// use. Defaults to `false`.
    pub require_nonce: bool,
    /// The key nonces are derived from, base64 of at least 32 bytes, from
    /// `{ env = "VAR" }`, `{ file = "PATH" }` or `{ value = "..." }`: replicas
    /// that share it accept each other's nonces. Without it each replica
    /// draws its own at start.
    pub nonce_secret: Option<KeySource>,
    /// How long one nonce is current; the previous one is still accepted.
    /// Defaults to `300`.
    pub nonce_window_seconds: u64,
}

impl Default for DpopConfig {
    fn default() -> Self {
        DpopConfig {
            max_age_seconds: 60,
            leeway_seconds: 5,
            replay_cache_max_entries: 2_000_000,
            replay_cache_max_per_key: 200_000,
            require_nonce: false,
            nonce_secret: None,
            nonce_window_seconds: 300,
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

/// The most shards `store.revocation_shards` may name (4 digits in the
/// DynamoDB keys of the revocation log).
pub const MAX_REVOCATION_SHARDS: u32 = 1_000;

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
    /// Embedded: the memory redb may hold as its page cache, in bytes. redb
    /// would otherwise cache up to 1 GiB, so the process grew with the
    /// database file. Defaults to `33554432` (32 MiB).
    pub embedded_cache_bytes: usize,
    /// Embedded: how often expired sessions, revocations and device-login
    /// answers are deleted, in seconds (DynamoDB deletes them itself, by
    /// its TTL). Defaults to `60`.
    pub purge_interval_seconds: u64,
    /// DynamoDB: how many partitions (shards) the revocations of one time
    /// bucket are spread over, each chosen by a hash of the revocation.
    /// More shards take a larger mass revocation (about 1,000 writes a
    /// second each) and cost every replica one more read per poll. May be
    /// changed at any time: readers find the shards a bucket was written
    /// with in the bucket index. Defaults to `16` (README: *The revocation
    /// log on DynamoDB*).
    pub revocation_shards: u32,
    /// DynamoDB: the width of a revocation time bucket, in seconds. Wider
    /// buckets make the first read after start-up (every revocation still
    /// in force) read fewer partitions; a poll reads only what is newer
    /// than its cursor whatever the width. Must divide a day. Defaults to
    /// `3600`.
    pub revocation_bucket_seconds: u64,
    /// DynamoDB: at most this many revocation partitions are read at once.
    /// Defaults to `16`.
    pub revocation_read_concurrency: usize,
    /// DynamoDB: the single partition `REVOCATIONS` of authd versions
    /// before the sharded log. `read`: also read it, so their revocations
    /// keep counting until they expire. `read-write`: also write every new
    /// revocation there, so that replicas not yet upgraded see it — for the
    /// time of a rolling upgrade. `off`: neither, once no replica runs such
    /// a version and `sessions.revocation_ttl_seconds` has passed since; it
    /// saves every replica one read per poll. Defaults to `read`.
    pub legacy_revocations: LegacyRevocations,
}

/// What authd does with the revocation partition of its earlier versions
/// (`store.legacy_revocations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LegacyRevocations {
    /// Neither read nor written.
    Off,
    /// Read with the sharded log.
    Read,
    /// Read, and every new revocation written there too.
    ReadWrite,
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
            embedded_cache_bytes: 32 << 20,
            purge_interval_seconds: 60,
            revocation_shards: 16,
            revocation_bucket_seconds: 3_600,
            revocation_read_concurrency: 16,
            legacy_revocations: LegacyRevocations::Read,
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

/// `[secrets]`: the keys that seal secrets and profiles at rest. With
/// `kms_key_id`, KMS data keys seal (envelope encryption); otherwise the
/// first local key (or `primary_key_id`). Every listed key opens, so a key
/// is rotated by adding the new one first, running `authd store reseal`,
/// and removing the old one when it seals nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// The local key that seals new values. Defaults to the first key.
    pub primary_key_id: Option<String>,
    /// The local keys, each 32 bytes in standard base64.
    pub keys: Vec<SecretKeyConfig>,
    /// A KMS key (ARN, key id or alias) whose data keys seal new values.
    pub kms_key_id: Option<String>,
    /// KMS's region; default: the AWS configuration chain's.
    pub kms_region: Option<String>,
    /// KMS's endpoint, e.g. a KMS-compatible server on loopback.
    pub kms_endpoint_url: Option<String>,
    /// The longest wait for one KMS call (default 2000).
    pub kms_timeout_ms: u64,
    /// How long one data key seals new values (default 300 s).
    pub data_key_seal_seconds: u64,
    /// How many values one data key seals at most (default 100,000).
    pub data_key_max_seals: u64,
    /// How long a data key stays in memory after KMS gave it (default
    /// 3600 s): the KMS outage authd rides out.
    pub data_key_cache_seconds: u64,
    /// Data keys held in memory to open values (default 1000).
    pub data_key_cache_entries: usize,
}

/// A KMS key id as recorded in sealed values: an ARN, key id or alias
/// (letters, digits, `:`, `/`, `_`, `-`; never the `.` values are split on).
pub fn valid_kms_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 2048
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":/_-".contains(&b))
}

impl Default for SecretsConfig {
    fn default() -> Self {
        SecretsConfig {
            primary_key_id: None,
            keys: Vec::new(),
            kms_key_id: None,
            kms_region: None,
            kms_endpoint_url: None,
            kms_timeout_ms: 2000,
            data_key_seal_seconds: 300,
            data_key_max_seals: 100_000,
            data_key_cache_seconds: 3600,
            data_key_cache_entries: 1000,
        }
    }
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
            dpop_algorithms: default_dpop_algorithms(),
            token_types: default_token_types(),
            backchannel_logout: None,
            events: None,
        }
    }

    /// Where OIDC discovery is read: `{issuer}/.well-known/openid-configuration`
    /// with exactly one slash between.
    pub fn discovery_url(&self) -> Result<Url, url::ParseError> {
        let base = self.issuer.trim_end_matches('/');
        Url::parse(&format!("{base}/.well-known/openid-configuration"))
    }
}

/// `[ext_authz]`: Envoy's external authorization (`envoy.service.auth.v3`).
/// Global defaults; a route overrides the policy with `context_extensions`
/// (`required_scopes`, `audience`, `allow_anonymous`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtAuthzConfig {
    /// The `realm` of every `WWW-Authenticate` challenge. Defaults to
    /// `"authd"`.
    pub realm: String,
    /// The header that carries the verified `sub` upstream. Defaults to
    /// `"x-authd-subject"`.
    pub subject_header: String,
    /// The header that carries the verified `iss` upstream. Defaults to
    /// `"x-authd-issuer"`.
    pub issuer_header: String,
    /// The header that carries the token's scopes, space-separated. Defaults
    /// to `"x-authd-scopes"`.
    pub scopes_header: String,
    /// The header that carries the token's `permissions`, space-separated.
    /// Defaults to `"x-authd-permissions"`.
    pub permissions_header: String,
    /// The header that carries the token's session id (`sid`), when it has
    /// one. Defaults to `"x-authd-session-id"`.
    pub session_header: String,
    /// The header that carries every verified claim as one base64url
    /// (unpadded) JSON object, when `forward_claims` is on. Defaults to
    /// `"x-authd-claims"`.
    pub claims_header: String,
    /// Whether to send the verified claims upstream in `claims_header`.
    /// Defaults to `false`.
    pub forward_claims: bool,
    /// Whether to remove the `authorization` header before the request goes
    /// upstream. Defaults to `false`.
    pub strip_authorization: bool,
    /// Scopes (or permissions) every request's token must hold unless the
    /// route sets `required_scopes`. Defaults to none.
    pub required_scopes: Vec<String>,
    /// The audience tokens must carry unless the route sets `audience`; one
    /// of the issuer's configured audiences. Defaults to none (any of the
    /// issuer's audiences).
    pub audience: Option<String>,
    /// Whether a request without a token is let through (without identity
    /// headers) unless the route sets `allow_anonymous`. A token that is
    /// present must still verify. Defaults to `false`.
    pub allow_anonymous: bool,
    /// The hosts (`api.example.com`, or with a port) a DPoP proof's `htu`
    /// may name, unless the route sets `dpop_hosts` (space-separated). The
    /// `htu` is built from the scheme, host and path Envoy reports, never
    /// from `X-Forwarded-*`; a host not listed here refuses the proof, so a
    /// proof made for another service behind the same Envoy is useless
    /// here. Defaults to none: DPoP requests are refused at Check until
    /// hosts are configured.
    pub dpop_hosts: Vec<String>,
}

impl Default for ExtAuthzConfig {
    fn default() -> Self {
        ExtAuthzConfig {
            realm: "authd".to_owned(),
            subject_header: "x-authd-subject".to_owned(),
            issuer_header: "x-authd-issuer".to_owned(),
            scopes_header: "x-authd-scopes".to_owned(),
            permissions_header: "x-authd-permissions".to_owned(),
            session_header: "x-authd-session-id".to_owned(),
            claims_header: "x-authd-claims".to_owned(),
            forward_claims: false,
            strip_authorization: false,
            required_scopes: Vec::new(),
            audience: None,
            allow_anonymous: false,
            dpop_hosts: Vec::new(),
        }
    }
}

impl ExtAuthzConfig {
    /// The first key whose value cannot be used, and why: header names must
    /// be lower-case HTTP tokens (Envoy's keys arrive lower-cased), distinct,
    /// and the realm printable without quotes.
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        let headers = [
            ("subject_header", &self.subject_header),
            ("issuer_header", &self.issuer_header),
            ("scopes_header", &self.scopes_header),
            ("permissions_header", &self.permissions_header),
            ("session_header", &self.session_header),
            ("claims_header", &self.claims_header),
        ];
        let token = |name: &str| {
            !name.is_empty()
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.!#$%&'*+^`|~".contains(&b)
                })
        };
        for (i, (key, name)) in headers.iter().enumerate() {
            if !token(name) {
                return Some((key, "must be a lower-case HTTP header name"));
            }
            if matches!(name.as_str(), "authorization" | "host" | "x-authd-reason")
                || headers[..i].iter().any(|(_, other)| other == name)
            {
                return Some((key, "must differ from the other headers and authorization"));
            }
        }
        if self.realm.is_empty()
            || !self
                .realm
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            return Some((
                "realm",
                "must be printable ASCII without quotes or backslashes",
            ));
        }
        None
    }
}
/// `[metrics]`: an HTTP listener apart from gRPC serving `GET /metrics`
/// (Prometheus text format), `GET /healthz` and `GET /readyz`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where the listener binds, e.g. `127.0.0.1:9464`. Defaults to none:
    /// no listener, and nothing is recorded.
    pub listen: Option<SocketAddr>,
}

/// `[tracing]`: OpenTelemetry spans exported over OTLP/gRPC. A caller's
/// W3C `traceparent` metadata makes authd's span part of its trace.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// Whether spans are exported. Defaults to `false`.
    pub enabled: bool,
    /// The OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`. Defaults to
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` when set, else `http://localhost:4317`.
    pub endpoint: Option<String>,
    /// The `service.name` resource attribute. Defaults to `authd`.
    pub service_name: String,
    /// The share of calls sampled when the caller sent no `traceparent`, 0
    /// to 1; a caller's sampled flag is always followed. Defaults to `0.01`:
    /// at tens of thousands of calls a second per core that is still
    /// hundreds of traces a second, and the unsampled calls cost nothing
    /// (BENCHMARKS.md has the cost of each).
    pub sample_ratio: f64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            enabled: false,
            endpoint: None,
            service_name: "authd".to_owned(),
            sample_ratio: 0.01,
        }
    }
}
