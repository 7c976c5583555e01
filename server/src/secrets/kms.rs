//! Envelope encryption under a KMS key (`[secrets] kms_key_id`).
//!
//! KMS `GenerateDataKey` gives a 256-bit data key and its copy wrapped by
//! the KMS key; authd seals values with the data key (AES-256-GCM, the item
//! key as associated data, as local keys do) and stores the wrapped copy in
//! each value: `v2.<KMS key ARN>.<wrapped data key>.<nonce>.<ciphertext+tag>`.
//! Opening a value asks KMS `Decrypt` for its data key once, then serves it
//! from memory.
//!
//! Bounds: one data key seals for at most `data_key_seal_seconds` and
//! `data_key_max_seals` values, then a new one is generated; a data key stays
//! in memory at most `data_key_cache_seconds` after KMS gave it, and at most
//! `data_key_cache_entries` are held. That last lifetime is the KMS outage
//! authd rides out: values whose data key is held keep opening, and sealing
//! goes on with the current data key; past it, sealing and opening answer
//! [`SealError::Unavailable`] until KMS answers again.
//!
//! The KMS encryption context names authd and this purpose
//! ([`ENCRYPTION_CONTEXT`]): a data key wrapped for anything else does not
//! unwrap here, and each use is audited in CloudTrail with it. The item is
//! bound by the AES-GCM associated data, not by the KMS context: a context
//! per item would cost a KMS call per new session and leave no data key to
//! serve from memory when KMS is down.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aws_config::{BehaviorVersion, Region, retry::RetryConfig, timeout::TimeoutConfig};
use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use aws_sdk_kms::{Client, primitives::Blob, types::DataKeySpec};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use zeroize::Zeroize as _;

use super::{
    SealError, SealedSecret, Secret, fields,
    local::{open_with, seal_with},
};
use crate::config::{SecretsConfig, valid_kms_key_id as valid_key_id};

/// The encryption context of every data key authd asks KMS for.
pub const ENCRYPTION_CONTEXT: [(&str, &str); 2] =
    [("service", "authd"), ("purpose", "secrets-at-rest")];

/// After a failed KMS call, the next waits this long (meanwhile a held data
/// key keeps sealing), so an outage does not add a timeout to every call.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// A data key that seals new values.
struct Generation {
    key: Arc<LessSafeKey>,
    key_arn: String,
    wrapped: String,
    born: Instant,
    seals: AtomicU64,
}

/// A data key held to open values.
struct Held {
    key: Arc<LessSafeKey>,
    obtained: Instant,
}

#[derive(Default)]
struct Health {
    /// The last KMS failure and since when KMS has been failing.
    failing: Option<(String, Instant)>,
    /// No KMS call before this.
    next_attempt: Option<Instant>,
}

/// What `/readyz` says about KMS.
#[derive(Debug, Clone)]
pub struct KmsStatus {
    /// The configured KMS key.
    pub key_id: String,
    /// The last failure and how long KMS has been failing, if it is.
    pub failing: Option<(String, Duration)>,
    /// The age of the data key sealing new values, if one is held.
    pub sealing_key_age: Option<Duration>,
    /// How long a held data key may serve.
    pub keep_for: Duration,
    /// Data keys held to open values.
    pub held: usize,
}

/// Seals under KMS data keys.
pub struct Kms {
    client: Client,
    key_id: String,
    seal_for: Duration,
    max_seals: u64,
    keep_for: Duration,
    max_held: usize,
    sealing: Mutex<Option<Arc<Generation>>>,
    generating: tokio::sync::Mutex<()>,
    held: Mutex<HashMap<String, Held>>,
    health: Mutex<Health>,
}

impl fmt::Debug for Kms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kms")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Kms {
    /// A KMS sealer for `config.kms_key_id` (no KMS call yet).
    pub async fn connect(config: &SecretsConfig, key_id: &str) -> Kms {
        let timeout = Duration::from_millis(config.kms_timeout_ms.max(1));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(timeout)
                    .connect_timeout(timeout.min(Duration::from_secs(1)))
                    .build(),
            );
        if let Some(region) = &config.kms_region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &config.kms_endpoint_url {
            loader = loader.endpoint_url(endpoint.clone());
        }
        let sdk = loader.load().await;
        Kms {
            client: Client::new(&sdk),
            key_id: key_id.to_owned(),
            seal_for: Duration::from_secs(config.data_key_seal_seconds.max(1)),
            max_seals: config.data_key_max_seals.max(1),
            keep_for: Duration::from_secs(config.data_key_cache_seconds.max(1)),
            max_held: config.data_key_cache_entries.max(1),
            sealing: Mutex::new(None),
            generating: tokio::sync::Mutex::new(()),
            held: Mutex::new(HashMap::new()),
            health: Mutex::new(Health::default()),
        }
    }

    /// The ARN of the KMS key new values are sealed under, once KMS named it.
    pub fn sealing_key_arn(&self) -> Option<String> {
        lock(&self.sealing).as_ref().map(|g| g.key_arn.clone())
    }

    /// Encrypts `secret` for `item_key` under the current data key.
    pub async fn seal(&self, secret: &Secret, item_key: &str) -> Result<SealedSecret, SealError> {
        let generation = self.generation().await?;
        let (nonce, data) = seal_with(&generation.key, &aad(&generation.key_arn, item_key), secret);
        Ok(SealedSecret(format!(
            "v2.{}.{}.{}.{}",
            generation.key_arn,
            generation.wrapped,
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(data)
        )))
    }

    /// Decrypts a `v2` value sealed for `item_key`.
    pub async fn open(&self, sealed: &SealedSecret, item_key: &str) -> Result<Secret, SealError> {
        let [key_arn, wrapped, nonce, data] = fields(sealed, "v2")?;
        let key = self.data_key(key_arn, wrapped).await?;
        open_with(&key, &aad(key_arn, item_key), nonce, data)
    }

    /// Makes sure a data key seals (at start-up, and before re-sealing).
    pub async fn warm(&self) -> Result<(), SealError> {
        self.generation().await.map(|_| ())
    }

    /// What `/readyz` and the metrics report.
    pub fn status(&self) -> KmsStatus {
        let failing = lock(&self.health)
            .failing
            .as_ref()
            .map(|(error, since)| (error.clone(), since.elapsed()));
        KmsStatus {
            key_id: self.key_id.clone(),
            failing,
            sealing_key_age: lock(&self.sealing).as_ref().map(|g| g.born.elapsed()),
            keep_for: self.keep_for,
            held: lock(&self.held).len(),
        }
    }

    /// The data key sealing now, generating a new one when it is due.
    async fn generation(&self) -> Result<Arc<Generation>, SealError> {
        if let Some(current) = self.current(true) {
            return Ok(current);
        }
        let _turn = self.generating.lock().await;
        if let Some(current) = self.current(true) {
            return Ok(current);
        }
        let failure = if self.may_call() {
            match self.generate().await {
                Ok(generation) => {
                    let generation = Arc::new(generation);
                    self.hold(&generation.wrapped, Arc::clone(&generation.key));
                    *lock(&self.sealing) = Some(Arc::clone(&generation));
                    return Ok(generation);
                }
                Err(error) => error,
            }
        } else {
            SealError::Unavailable("KMS failed moments ago".to_owned())
        };
        // KMS is down: the current data key keeps sealing while it may be held.
        match self.current(false) {
            Some(current) => {
                tracing::warn!(error = %failure, "KMS unavailable: sealing with the data key held");
                Ok(current)
            }
            None => Err(failure),
        }
    }

    /// The current generation: fresh (`due` checked), or merely still held.
    fn current(&self, fresh: bool) -> Option<Arc<Generation>> {
        let sealing = lock(&self.sealing);
        let current = sealing.as_ref()?;
        let age = current.born.elapsed();
        let usable = if fresh {
            age < self.seal_for && current.seals.load(Ordering::Relaxed) < self.max_seals
        } else {
            age < self.keep_for
        };
        if usable {
            current.seals.fetch_add(1, Ordering::Relaxed);
            Some(Arc::clone(current))
        } else {
            None
        }
    }

    async fn generate(&self) -> Result<Generation, SealError> {
        let mut request = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256);
        for (name, value) in ENCRYPTION_CONTEXT {
            request = request.encryption_context(name, value);
        }
        let answer = request.send().await;
        let answer = self.outcome("generate_data_key", answer)?;
        let (Some(plain), Some(wrapped), Some(key_arn)) = (
            answer.plaintext(),
            answer.ciphertext_blob(),
            answer.key_id(),
        ) else {
            return Err(SealError::Unavailable(
                "GenerateDataKey answered without a key".to_owned(),
            ));
        };
        if !valid_key_id(key_arn) {
            return Err(SealError::Unavailable(format!(
                "KMS named its key {key_arn:?}, which cannot be recorded in a value"
            )));
        }
        Ok(Generation {
            key: Arc::new(data_key(plain.as_ref())?),
            key_arn: key_arn.to_owned(),
            wrapped: URL_SAFE_NO_PAD.encode(wrapped.as_ref()),
            born: Instant::now(),
            seals: AtomicU64::new(0),
        })
    }

    /// The data key of `wrapped`, from memory or from KMS `Decrypt`.
    async fn data_key(&self, key_arn: &str, wrapped: &str) -> Result<Arc<LessSafeKey>, SealError> {
        if let Some(held) = lock(&self.held).get(wrapped)
            && held.obtained.elapsed() < self.keep_for
        {
            return Ok(Arc::clone(&held.key));
        }
        if !valid_key_id(key_arn) {
            return Err(SealError::Corrupt);
        }
        let blob = URL_SAFE_NO_PAD
            .decode(wrapped)
            .map_err(|_| SealError::Corrupt)?;
        if !self.may_call() {
            return Err(SealError::Unavailable("KMS failed moments ago".to_owned()));
        }
        let mut request = self
            .client
            .decrypt()
            .key_id(key_arn)
            .ciphertext_blob(Blob::new(blob));
        for (name, value) in ENCRYPTION_CONTEXT {
            request = request.encryption_context(name, value);
        }
        let answer = request.send().await;
        let answer = self.outcome("decrypt", answer)?;
        let plain = answer
            .plaintext()
            .ok_or_else(|| SealError::Unavailable("Decrypt answered without a key".to_owned()))?;
        let key = Arc::new(data_key(plain.as_ref())?);
        self.hold(wrapped, Arc::clone(&key));
        Ok(key)
    }

    /// Keeps `key` to open values wrapped as `wrapped`, within the bounds.
    fn hold(&self, wrapped: &str, key: Arc<LessSafeKey>) {
        let mut held = lock(&self.held);
        held.retain(|_, h| h.obtained.elapsed() < self.keep_for);
        while held.len() >= self.max_held {
            let Some(oldest) = held
                .iter()
                .min_by_key(|(_, h)| h.obtained)
                .map(|(w, _)| w.clone())
            else {
                break;
            };
            held.remove(&oldest);
        }
        held.insert(
            wrapped.to_owned(),
            Held {
                key,
                obtained: Instant::now(),
            },
        );
        metrics::gauge!("authd_kms_data_keys_held").set(held.len() as f64);
    }

    fn may_call(&self) -> bool {
        lock(&self.health)
            .next_attempt
            .is_none_or(|at| Instant::now() >= at)
    }

    /// Records a KMS call's outcome; a refusal of the value itself is
    /// [`SealError::Corrupt`], anything else [`SealError::Unavailable`].
    fn outcome<T, E>(
        &self,
        operation: &'static str,
        answer: Result<T, aws_sdk_kms::error::SdkError<E>>,
    ) -> Result<T, SealError>
    where
        E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        let mut health = lock(&self.health);
        match answer {
            Ok(answer) => {
                metrics::counter!("authd_kms_requests_total", "operation" => operation, "outcome" => "ok")
                    .increment(1);
                *health = Health::default();
                Ok(answer)
            }
            Err(error) => {
                let code = error
                    .as_service_error()
                    .and_then(|e| e.code())
                    .map(str::to_owned);
                metrics::counter!("authd_kms_requests_total", "operation" => operation, "outcome" => "error")
                    .increment(1);
                if let Some("InvalidCiphertextException" | "IncorrectKeyException") =
                    code.as_deref()
                {
                    // KMS answered: this value is not one of ours.
                    return Err(SealError::Corrupt);
                }
                let detail = code.unwrap_or_else(|| {
                    aws_sdk_kms::error::DisplayErrorContext(&error)
                        .to_string()
                        .chars()
                        .take(200)
                        .collect()
                });
                tracing::warn!(operation, error = %detail, "KMS call failed");
                let since = health
                    .failing
                    .as_ref()
                    .map_or_else(Instant::now, |(_, since)| *since);
                health.failing = Some((detail.clone(), since));
                health.next_attempt = Some(Instant::now() + RETRY_AFTER_FAILURE);
                Err(SealError::Unavailable(detail))
            }
        }
    }
}

fn data_key(plain: &[u8]) -> Result<LessSafeKey, SealError> {
    let mut bytes = plain.to_vec();
    let key = UnboundKey::new(&AES_256_GCM, &bytes)
        .map(LessSafeKey::new)
        .map_err(|_| SealError::Unavailable("KMS gave a data key of the wrong size".to_owned()));
    bytes.zeroize();
    key
}

fn aad(key_arn: &str, item_key: &str) -> Vec<u8> {
    format!("authd/v2|{key_arn}|{item_key}").into_bytes()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
